//! The compiled, validated canary configuration.

use crate::config::{
    valid_header_name, valid_subset_name, CanarySpec, OverrideSpec, RollbackSpec, ServiceSpec,
    StickySpec, DEFAULT_ROUTE_HEADER, MAX_WEIGHT, MAX_WINDOW_S,
};
use crate::cookie::{valid_cookie_name, CookieCodec};
use crate::guard::{self, guard_key, GuardPolicy};
use crate::hash::siphash24;
use crate::host::{HostPattern, HostTable};
use crate::split::Split;
use mesh_core::{ConfigError, HeaderMatchSpec, HttpMatch, HttpMatchSpec};
use rustc_hash::{FxHashMap, FxHashSet};
use sdk_shim::{HostError, Namespace, SharedStore};
use std::sync::atomic::{AtomicBool, Ordering};

/// A validated configuration, ready to route requests; share it with `Arc`.
#[derive(Debug)]
pub struct Canary {
    pub(crate) route_header: String,
    pub(crate) expose_subset: bool,
    pub(crate) services: Vec<Service>,
    pub(crate) hosts: HostTable,
    /// The configured shared-state namespace, if any.
    pub(crate) namespace: Option<String>,
}

/// One service: its subsets and how requests are spread over them.
#[derive(Debug)]
pub struct Service {
    host: String,
    stat_label: String,
    pub(crate) subsets: Vec<String>,
    pub(crate) split: Split,
    pub(crate) overrides: Vec<Override>,
    pub(crate) sticky: Sticky,
    pub(crate) guard: Option<Guard>,
}

#[derive(Debug)]
pub(crate) struct Override {
    pub(crate) matcher: HttpMatch,
    pub(crate) subset: usize,
}

#[derive(Debug)]
pub(crate) enum Sticky {
    None,
    Header(String),
    Cookie(CookieSticky),
}

#[derive(Debug)]
pub(crate) struct CookieSticky {
    pub(crate) name: String,
    pub(crate) codec: CookieCodec,
    pub(crate) max_age_s: Option<u64>,
    pub(crate) secure: bool,
}

/// A service's rollback guard.
#[derive(Debug)]
pub struct Guard {
    pub(crate) subset: usize,
    pub(crate) policy: GuardPolicy,
    /// Identifies the service's configuration; the key adds the plugin's namespace.
    fingerprint: u64,
    key: String,
    /// This worker has seen the guard tripped; it stays so for this configuration, so the
    /// shared record need not be read again.
    tripped_seen: AtomicBool,
}

// === impl Canary ===

impl Canary {
    /// Request headers a request reads at most: `:authority`, then its service's.
    pub(crate) fn request_header_reads(&self) -> usize {
        let service = self
            .services
            .iter()
            .map(Service::request_header_reads)
            .max();
        1 + service.unwrap_or(0)
    }

    /// Parses (unknown fields are errors) and validates a JSON configuration; empty means
    /// the defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::compile(&mesh_core::parse_json::<CanarySpec>(bytes)?)
    }

    pub fn compile(spec: &CanarySpec) -> Result<Self, ConfigError> {
        let route_header = match &spec.route_header {
            None => DEFAULT_ROUTE_HEADER.to_owned(),
            Some(h) => header_name(h, "route_header")?,
        };
        let mut services = Vec::with_capacity(spec.services.len());
        let mut patterns: Vec<HostPattern> = Vec::with_capacity(spec.services.len());
        // Seen patterns and stats labels, so that checking stays linear in the services.
        let mut seen: FxHashSet<HostPattern> = FxHashSet::default();
        let mut labels: FxHashMap<String, usize> = FxHashMap::default();
        for (i, s) in spec.services.iter().enumerate() {
            let field = format!("services[{i}]");
            let pattern = HostPattern::parse(&s.host)
                .map_err(|r| ConfigError::new(format!("{field}.host"), r))?;
            if !seen.insert(pattern.clone()) {
                return Err(ConfigError::new(
                    format!("{field}.host"),
                    format!("duplicate host {:?}", s.host),
                ));
            }
            let service = Service::compile(s, &pattern, &field)?;
            // Two hosts with one stats label would silently share counters.
            if let Some(j) = labels.get(&service.stat_label) {
                return Err(ConfigError::new(
                    format!("{field}.host"),
                    format!(
                        "its stats label {:?} is already that of services[{j}].host",
                        service.stat_label
                    ),
                ));
            }
            labels.insert(service.stat_label.clone(), i);
            services.push(service);
            patterns.push(pattern);
        }
        if let Some(ns) = &spec.namespace {
            if !sdk_shim::namespace::valid_name(ns) {
                return Err(ConfigError::new(
                    "namespace",
                    "must be 1 to 64 characters from a-z, A-Z, 0-9, ., _ and -",
                ));
            }
        }
        let mut canary = Self {
            route_header,
            expose_subset: spec.expose_subset,
            services,
            hosts: HostTable::new(patterns),
            namespace: spec.namespace.clone(),
        };
        canary.bind_namespace(Namespace::from_identity(&[]));
        Ok(canary)
    }

    /// The configured namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Puts the guards' shared records in plugin namespace `ns` (see
    /// [`Namespace::of_plugin`]); until then they are in the empty identity's.
    pub fn bind_namespace(&mut self, ns: Namespace) {
        for g in self.services.iter_mut().filter_map(|s| s.guard.as_mut()) {
            g.key = guard_key(&ns, g.fingerprint);
        }
    }

    /// The request header that carries the chosen subset.
    pub fn route_header(&self) -> &str {
        &self.route_header
    }

    pub fn expose_subset(&self) -> bool {
        self.expose_subset
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Seeds every guard's shared record if missing; call when the configuration is applied.
    /// Returns how many records were written fresh.
    pub fn arm_guards<S: SharedStore>(&self, store: &S, now: u64) -> Result<usize, HostError> {
        let mut fresh = 0;
        for g in self.services.iter().filter_map(|s| s.guard.as_ref()) {
            fresh += usize::from(guard::arm(store, &g.key, now)?);
        }
        Ok(fresh)
    }
}

fn header_name(name: &str, field: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    if valid_header_name(&lower) {
        Ok(lower)
    } else {
        Err(ConfigError::new(field, "must be a header name"))
    }
}

/// The label used for a host in stat names: `reviews.default` -> `reviews_default`,
/// `*.example.com` -> `wildcard_example_com`, `*` -> `any`.
pub fn stat_label(pattern: &HostPattern) -> String {
    match pattern {
        HostPattern::Exact(h) => h.replace('.', "_"),
        HostPattern::Suffix(s) => format!("wildcard{}", s.replace('.', "_")),
        HostPattern::Any => "any".to_owned(),
    }
}

// === impl Service ===

impl Service {
    fn compile(s: &ServiceSpec, pattern: &HostPattern, field: &str) -> Result<Self, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        if s.subsets.is_empty() {
            return Err(ConfigError::new(f("subsets"), "must not be empty"));
        }
        let mut subsets: Vec<String> = Vec::with_capacity(s.subsets.len());
        let mut weights = Vec::with_capacity(s.subsets.len());
        for (j, sub) in s.subsets.iter().enumerate() {
            let sf = format!("{field}.subsets[{j}]");
            if !valid_subset_name(&sub.name) {
                return Err(ConfigError::new(
                    format!("{sf}.name"),
                    "must be 1 to 63 letters, digits, '-' or '_'",
                ));
            }
            if subsets.contains(&sub.name) {
                return Err(ConfigError::new(
                    format!("{sf}.name"),
                    format!("duplicate subset {:?}", sub.name),
                ));
            }
            if sub.weight < 0 {
                return Err(ConfigError::new(format!("{sf}.weight"), "must be >= 0"));
            }
            if sub.weight > MAX_WEIGHT {
                return Err(ConfigError::new(
                    format!("{sf}.weight"),
                    format!("must be <= {MAX_WEIGHT}"),
                ));
            }
            subsets.push(sub.name.clone());
            weights.push(sub.weight.unsigned_abs());
        }
        let split = Split::new(weights)
            .ok_or_else(|| ConfigError::new(f("subsets"), "total weight must be > 0"))?;
        let find = |name: &str, at: String| {
            subsets
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| ConfigError::new(at, format!("unknown subset {name:?}")))
        };
        let overrides = s
            .overrides
            .iter()
            .enumerate()
            .map(|(k, o)| {
                let of = format!("{field}.overrides[{k}]");
                Ok(Override {
                    subset: find(&o.subset, format!("{of}.subset"))?,
                    matcher: compile_override(o, &of)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let sticky = match &s.sticky {
            None => Sticky::None,
            Some(st) => compile_sticky(st, &f("sticky"))?,
        };
        let guard = match &s.rollback {
            None => None,
            Some(r) => {
                let subset = find(&r.subset, f("rollback.subset"))?;
                if subsets.len() < 2 {
                    return Err(ConfigError::new(
                        f("rollback.subset"),
                        "needs another subset to take its traffic",
                    ));
                }
                Some(Guard {
                    subset,
                    policy: compile_policy(r, &f("rollback"))?,
                    fingerprint: fingerprint(s),
                    key: String::new(),
                    tripped_seen: AtomicBool::new(false),
                })
            }
        };
        Ok(Self {
            host: s.host.clone(),
            stat_label: stat_label(pattern),
            subsets,
            split,
            overrides,
            sticky,
            guard,
        })
    }

    /// The `host` as configured.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host as it appears in stat names.
    pub fn stat_label(&self) -> &str {
        &self.stat_label
    }

    /// Subset names, in configuration order.
    pub fn subsets(&self) -> &[String] {
        &self.subsets
    }

    pub fn weights(&self) -> &[u64] {
        self.split.weights()
    }

    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// Whether deciding needs every request header pair (one whole-map read): header
    /// overrides look at every value of a repeated header, and cookies may come in several
    /// `cookie` headers.
    /// Request headers this service's decision reads after `:authority`: `:method` and
    /// `:path` (or the whole map) for overrides, the sticky header.
    pub(crate) fn request_header_reads(&self) -> usize {
        let head = if self.needs_pairs() || !self.overrides.is_empty() {
            2
        } else {
            0
        };
        head + usize::from(matches!(self.sticky, Sticky::Header(_)))
    }

    pub(crate) fn needs_pairs(&self) -> bool {
        self.overrides.iter().any(|o| o.matcher.needs_headers())
            || matches!(self.sticky, Sticky::Cookie(_))
    }
}

fn compile_override(o: &OverrideSpec, field: &str) -> Result<HttpMatch, ConfigError> {
    match (&o.header, &o.matches) {
        (Some(name), None) => {
            let spec = HeaderMatchSpec {
                name: header_name(name, &format!("{field}.header"))?,
                present: o.value.is_none().then_some(true),
                exact: o.value.clone(),
                ..HeaderMatchSpec::default()
            };
            HttpMatchSpec {
                headers: vec![spec],
                ..HttpMatchSpec::default()
            }
            .compile(field)
        }
        (None, Some(m)) => {
            if o.value.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.value"),
                    "only applies with header",
                ));
            }
            let compiled = m.compile(&format!("{field}.match"))?;
            if compiled.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.match"),
                    "must not be empty (it would match every request)",
                ));
            }
            Ok(compiled)
        }
        _ => Err(ConfigError::new(
            field,
            "exactly one of header and match must be set",
        )),
    }
}

fn compile_sticky(st: &StickySpec, field: &str) -> Result<Sticky, ConfigError> {
    let f = |name: &str| format!("{field}.{name}");
    match (&st.header, &st.cookie) {
        (Some(h), None) => {
            let cookie_only = [
                ("max_age_s", st.max_age_s.is_some()),
                ("secure", st.secure),
                ("secret", st.secret.is_some()),
            ];
            if let Some((name, _)) = cookie_only.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(f(name), "only applies with cookie"));
            }
            Ok(Sticky::Header(header_name(h, &f("header"))?))
        }
        (None, Some(c)) => {
            if !valid_cookie_name(c) {
                return Err(ConfigError::new(f("cookie"), "must be a cookie name"));
            }
            if st.secret.as_deref() == Some("") {
                return Err(ConfigError::new(f("secret"), "must not be empty"));
            }
            Ok(Sticky::Cookie(CookieSticky {
                name: c.clone(),
                codec: CookieCodec::new(st.secret.as_deref()),
                max_age_s: st.max_age_s,
                secure: st.secure,
            }))
        }
        _ => Err(ConfigError::new(
            field,
            "exactly one of header and cookie must be set",
        )),
    }
}

fn compile_policy(r: &RollbackSpec, field: &str) -> Result<GuardPolicy, ConfigError> {
    let f = |name: &str| format!("{field}.{name}");
    if !(0.0..=1.0).contains(&r.max_error_rate) {
        return Err(ConfigError::new(
            f("max_error_rate"),
            "must be between 0 and 1",
        ));
    }
    if r.min_requests == 0 {
        return Err(ConfigError::new(f("min_requests"), "must be >= 1"));
    }
    if r.window_s == 0 || r.window_s > MAX_WINDOW_S {
        return Err(ConfigError::new(
            f("window_s"),
            format!("must be between 1 and {MAX_WINDOW_S}"),
        ));
    }
    Ok(GuardPolicy {
        // In [0, 1e9] after the check above.
        max_error_ppb: (r.max_error_rate * 1e9).round() as u64,
        min_requests: r.min_requests,
        window_nanos: r.window_s * 1_000_000_000,
    })
}

/// Identifies a guard: its service's host, the guarded subset and the rollback policy. A
/// live update that only moves weights, overrides or stickiness keeps the guard's counts and
/// a tripped guard stays tripped (a rollout must not re-admit a canary the guard stopped);
/// a changed policy or subset gets a fresh guard.
fn fingerprint(s: &ServiceSpec) -> u64 {
    let identity = format!("{:?}/{:?}", s.host, s.rollback);
    siphash24(0x6775_6172_642d_6670, 0, identity.as_bytes())
}

// === impl Guard ===

impl Guard {
    /// Index of the guarded subset.
    pub fn subset(&self) -> usize {
        self.subset
    }

    pub fn policy(&self) -> &GuardPolicy {
        &self.policy
    }

    /// The shared-store key of its record.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the guard has tripped; reads the shared record until this worker sees it so.
    pub fn tripped<S: SharedStore>(&self, store: &S) -> bool {
        if self.tripped_seen.load(Ordering::Relaxed) {
            return true;
        }
        let tripped = guard::is_tripped(store, &self.key);
        if tripped {
            self.mark_tripped();
        }
        tripped
    }

    pub(crate) fn seen_tripped(&self) -> bool {
        self.tripped_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_tripped(&self) {
        self.tripped_seen.store(true, Ordering::Relaxed);
    }
}
