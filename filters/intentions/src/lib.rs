//! The intentions proxy-wasm filter: thin glue that reads the peer identity and request head through sdk-shim and lets mesh-intentions decide.
//!
//! Per request: two property reads (`connection.mtls`, `connection.uri_san_peer_certificate`),
//! then `:method` and `:path` (or the whole header map once, only when the deciding intention
//! matches headers). Failures to read fail closed (403, decision `deny:error`).
//!
//! Decisions published under [`DECISION_KEY`]: `allow:<name>`, `deny:<name>`,
//! `audit_deny:<name>`, with `<name>` an intention's name, `default`, `invalid_path` (400) or
//! `error`.
//!
//! Denials and refused paths are logged at info (source, destination, method, path, deciding
//! intention); allows are not logged, the published decision shows them.
//!
//! Stats (Envoy shows them under `wasmcustom.`): `intentions.intention.<name>.allowed`,
//! `.denied` (and `.audit_denied` in audit mode), the same under `intentions.default.`, plus
//! `intentions.invalid_path` and `intentions.error`.

use mesh_core::request::RequestHead;
use mesh_core::ConfigError;
use mesh_intentions::identity::{MTLS_PROPERTY, URI_SAN_PROPERTY};
use mesh_intentions::{
    normalize_path, Action as Verb, DecidedBy, IntentionsConfig, Mode, Peer, Policy,
};
use sdk_shim::{
    decision, host_log, Action, Callbacks, Host, HostError, HttpFilter, HttpHost, LogLevel,
    MetricId, MetricKind, RootFilter,
};
use std::sync::Arc;

/// Where the decision is published for telemetry and access logs.
pub const DECISION_KEY: &str = decision::INTENTIONS;

const DENIED_BODY: &[u8] = b"access denied\n";
const BAD_PATH_BODY: &[u8] = b"invalid request path\n";
/// Longest raw path written to a log line.
const LOG_PATH_MAX: usize = 256;

/// What the proxy should do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// 403.
    Deny,
    /// 400: the path cannot be matched safely.
    BadRequest,
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The string published under [`DECISION_KEY`].
    pub decision: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    allowed: Option<MetricId>,
    denied: Option<MetricId>,
    audit_denied: Option<MetricId>,
}

#[derive(Debug, Clone, Default)]
struct Stats {
    intentions: Vec<Counters>,
    default: Counters,
    invalid_path: Option<MetricId>,
    error: Option<MetricId>,
}

/// A validated configuration with its metrics; shared by every request through `Arc`.
#[derive(Debug)]
pub struct Compiled {
    pub policy: Policy,
    stats: Stats,
    /// `NS/NAME` of this workload, or `-`, for log lines.
    destination: String,
}

/// The root context: one per plugin configuration.
#[derive(Debug, Default)]
pub struct IntentionsRoot {
    config: Option<Arc<Compiled>>,
}

/// The per-request filter.
#[derive(Debug)]
pub struct IntentionsFilter {
    config: Option<Arc<Compiled>>,
}

// === impl Stats ===

fn define<H: Host>(host: &H, name: &str) -> Option<MetricId> {
    match host.define_metric(MetricKind::Counter, name) {
        Ok(id) => Some(id),
        Err(e) => {
            host_log!(
                host,
                LogLevel::Warn,
                "intentions: cannot define metric {name}: {e}"
            );
            None
        }
    }
}

fn counters<H: Host>(host: &H, prefix: &str, audit: bool) -> Counters {
    Counters {
        allowed: define(host, &format!("{prefix}.allowed")),
        denied: define(host, &format!("{prefix}.denied")),
        audit_denied: audit
            .then(|| define(host, &format!("{prefix}.audit_denied")))
            .flatten(),
    }
}

fn bump<H: Host>(host: &H, id: Option<MetricId>) {
    if let Some(id) = id {
        // A lost count must not change the verdict.
        let _ = host.increment_metric(id, 1);
    }
}

impl Stats {
    fn define<H: Host>(host: &H, policy: &Policy) -> Self {
        let audit = policy.mode == Mode::Audit;
        Self {
            intentions: policy
                .intentions()
                .iter()
                .map(|i| counters(host, &format!("intentions.intention.{}", i.name), audit))
                .collect(),
            default: counters(host, "intentions.default", audit),
            invalid_path: define(host, "intentions.invalid_path"),
            error: define(host, "intentions.error"),
        }
    }

    fn of(&self, by: DecidedBy) -> Counters {
        match by {
            DecidedBy::Intention { index, .. } => {
                self.intentions.get(index).copied().unwrap_or_default()
            }
            DecidedBy::Default { .. } => self.default,
        }
    }
}

// === impl Compiled ===

impl Compiled {
    /// Parses and validates `config`, then defines the metrics.
    pub fn configure<H: Host>(host: &H, config: &[u8]) -> Result<Self, ConfigError> {
        let policy = IntentionsConfig::parse(config)?;
        Ok(Self::from_policy(host, policy))
    }

    pub fn from_policy<H: Host>(host: &H, policy: Policy) -> Self {
        let stats = Stats::define(host, &policy);
        let destination = policy
            .destination
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        Self {
            policy,
            stats,
            destination,
        }
    }
}

// === impl IntentionsRoot ===

impl RootFilter for IntentionsRoot {
    type Http = IntentionsFilter;

    fn on_configure<H: Host>(&mut self, host: &H, config: &[u8]) -> bool {
        match Compiled::configure(host, config) {
            Ok(c) => {
                let p = &c.policy;
                host_log!(
                    host,
                    LogLevel::Info,
                    "intentions: configured {} intentions for {} ({} for other destinations ignored), default_action {}, mode {}",
                    p.intentions().len(),
                    p.destination.as_ref().map_or_else(|| "this workload".to_owned(), ToString::to_string),
                    p.ignored(),
                    p.default_action.as_str(),
                    if p.mode == Mode::Audit { "audit" } else { "enforce" },
                );
                self.config = Some(Arc::new(c));
                true
            }
            Err(e) => {
                host_log!(
                    host,
                    LogLevel::Error,
                    "intentions: invalid configuration: {e}"
                );
                false
            }
        }
    }

    fn new_http(&self) -> IntentionsFilter {
        IntentionsFilter {
            config: self.config.clone(),
        }
    }
}

// === impl IntentionsFilter ===

fn read_peer<H: HttpHost>(host: &H, trust_domain: &str) -> Result<Peer, HostError> {
    let absent = |r: Result<Option<Vec<u8>>, HostError>| match r {
        Err(HostError::NotFound) => Ok(None),
        other => other,
    };
    let mtls = absent(host.property(&MTLS_PROPERTY))?;
    if mtls.as_deref() != Some(&[1]) {
        return Ok(Peer::from_properties(mtls.as_deref(), None, trust_domain));
    }
    let san = absent(host.property(&URI_SAN_PROPERTY))?;
    Ok(Peer::from_properties(
        mtls.as_deref(),
        san.as_deref(),
        trust_domain,
    ))
}

/// A raw request value made safe for one log line.
fn printable(raw: &[u8]) -> String {
    let cut = raw.get(..LOG_PATH_MAX).unwrap_or(raw);
    let mut s: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if cut.len() < raw.len() {
        s.push_str("...");
    }
    s
}

impl IntentionsFilter {
    pub fn new(config: Arc<Compiled>) -> Self {
        Self {
            config: Some(config),
        }
    }

    /// Decides the request, counts and logs the decision; sends nothing.
    pub fn check<H: HttpHost>(&self, host: &H) -> Verdict {
        let Some(c) = &self.config else {
            host_log!(
                host,
                LogLevel::Error,
                "intentions: no configuration; denying"
            );
            return Verdict {
                outcome: Outcome::Deny,
                decision: "deny:error".to_owned(),
            };
        };
        let policy = &c.policy;
        let audit = policy.mode == Mode::Audit;
        let fail = |what: &str, e: HostError| {
            bump(host, c.stats.error);
            host_log!(
                host,
                LogLevel::Warn,
                "intentions: cannot read {what}: {e}; denying"
            );
            refuse(audit, Outcome::Deny, "error")
        };
        let peer = match read_peer(host, &policy.trust_domain) {
            Ok(p) => p,
            Err(e) => return fail("peer identity", e),
        };
        let selection = policy.select(&peer);
        let head = match RequestHead::read(host, selection.needs_headers()) {
            Ok(h) => h,
            Err(e) => return fail("request headers", e),
        };
        let dest = &c.destination;
        let path = match normalize_path(&head.path) {
            Ok(p) => p,
            Err(e) => {
                bump(host, c.stats.invalid_path);
                host_log!(
                    host,
                    LogLevel::Info,
                    "intentions: {} invalid path ({e}) source={peer} destination={dest} method={} path={}",
                    if audit { "would refuse (audit)" } else { "refused" },
                    printable(&head.method),
                    printable(&head.path),
                );
                return refuse(audit, Outcome::BadRequest, "invalid_path");
            }
        };
        let d = selection.decide(&head.input(&path));
        let counters = c.stats.of(d.by);
        let decision = policy.label(d).to_owned();
        let name = policy.decider_name(d.by);
        match d.action {
            Verb::Allow => {
                // Allows are not logged (the published decision shows them): no log-level
                // host call on the common path.
                bump(host, counters.allowed);
                Verdict {
                    outcome: Outcome::Allow,
                    decision,
                }
            }
            Verb::Deny => {
                bump(
                    host,
                    if audit {
                        counters.audit_denied
                    } else {
                        counters.denied
                    },
                );
                let after = match d.by {
                    DecidedBy::Default { after: Some(i) } => format!(
                        " (no permission of {} matched)",
                        policy.decider_name(DecidedBy::Intention {
                            index: i,
                            permission: None
                        })
                    ),
                    _ => String::new(),
                };
                host_log!(
                    host,
                    LogLevel::Info,
                    "intentions: {} source={peer} destination={dest} method={} path={path} intention={name}{after}",
                    if audit { "would deny (audit)" } else { "denied" },
                    printable(&head.method),
                );
                Verdict {
                    outcome: if audit { Outcome::Allow } else { Outcome::Deny },
                    decision,
                }
            }
        }
    }

    /// Sends the local reply a verdict calls for; the returned action pauses a refused request
    /// even if the reply could not be sent (fail closed).
    pub fn enforce<H: HttpHost>(host: &H, verdict: &Verdict) -> Action {
        let (status, body) = match verdict.outcome {
            Outcome::Allow => return Action::Continue,
            Outcome::Deny => (403, DENIED_BODY),
            Outcome::BadRequest => (400, BAD_PATH_BODY),
        };
        if let Err(e) = host.send_local_reply(status, &[("content-type", "text/plain")], body) {
            host_log!(
                host,
                LogLevel::Error,
                "intentions: cannot send {status}: {e}"
            );
        }
        Action::Pause
    }
}

/// A refusal that is not a rule's decision (bad path, host error).
fn refuse(audit: bool, outcome: Outcome, why: &str) -> Verdict {
    if audit {
        Verdict {
            outcome: Outcome::Allow,
            decision: format!("audit_deny:{why}"),
        }
    } else {
        Verdict {
            outcome,
            decision: format!("deny:{why}"),
        }
    }
}

impl HttpFilter for IntentionsFilter {
    // The verdict is made on the request headers; nothing after them.
    const CALLBACKS: Callbacks = Callbacks::REQUEST_HEADERS;

    fn on_request_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        let verdict = self.check(host);
        // Telemetry reads it; failing to publish must not change the verdict.
        let _ = decision::publish(host, DECISION_KEY, &verdict.decision);
        Self::enforce(host, &verdict)
    }
}

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(IntentionsRoot);

#[cfg(test)]
mod tests;
