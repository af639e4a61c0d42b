//! The canary proxy-wasm filter: thin glue that routes each request with mesh-canary and counts its decisions.

use mesh_canary::guard::{self, Observation};
use mesh_canary::{Canary, CanarySpec, Decision, Reason};
use mesh_core::ConfigError;
use sdk_shim::{
    decision, host_log, Action, Callbacks, Host, HttpFilter, HttpHost, LogLevel, MetricId,
    MetricKind, Metrics, Namespace, RootFilter,
};
use std::sync::Arc;

/// The key this filter publishes its verdict under (the chosen subset).
pub const DECISION: &str = decision::CANARY;

/// Stat ids of one service, defined once per configuration.
#[derive(Debug, Default)]
struct ServiceStats {
    /// Per subset: requests routed to it.
    decisions: Vec<Option<MetricId>>,
    /// Per subset: requests an override sent to it.
    overrides: Vec<Option<MetricId>>,
    /// Times the guard tripped (guarded services only).
    rollbacks: Option<MetricId>,
}

/// A validated configuration with its stats defined: what every request of one
/// configuration shares.
#[derive(Debug)]
pub struct CanaryConfig {
    canary: Canary,
    stats: Vec<ServiceStats>,
}

// === impl CanaryConfig ===

impl CanaryConfig {
    /// Parses, validates, defines stats and arms rollback guards.
    pub fn from_json<H: Host>(host: &H, bytes: &[u8]) -> Result<Arc<Self>, ConfigError> {
        Ok(Self::new(host, Canary::from_json(bytes)?))
    }

    /// The same from an already parsed spec (as the suite filter holds it).
    pub fn from_spec<H: Host>(host: &H, spec: &CanarySpec) -> Result<Arc<Self>, ConfigError> {
        Ok(Self::new(host, Canary::compile(spec)?))
    }

    fn new<H: Host>(host: &H, mut canary: Canary) -> Arc<Self> {
        canary.bind_namespace(Namespace::of_plugin(host, canary.namespace()));
        let define = |name: String| host.define_metric(MetricKind::Counter, &name).ok();
        let stats = canary
            .services()
            .iter()
            .map(|s| {
                let per_subset = |what: &str| {
                    s.subsets()
                        .iter()
                        .map(|sub| define(format!("canary.{}.{sub}.{what}", s.stat_label())))
                        .collect()
                };
                ServiceStats {
                    decisions: per_subset("decisions"),
                    overrides: per_subset("overrides"),
                    rollbacks: s.guard().and_then(|g| {
                        let sub = s.subsets().get(g.subset())?;
                        define(format!("canary.{}.{sub}.rollbacks", s.stat_label()))
                    }),
                }
            })
            .collect();
        if let Err(e) = canary.arm_guards(host, host.now_nanos()) {
            host_log!(
                host,
                LogLevel::Warn,
                "canary: could not seed the rollback guard: {e}"
            );
        }
        Arc::new(Self { canary, stats })
    }

    pub fn canary(&self) -> &Canary {
        &self.canary
    }

    fn bump<H: Metrics>(host: &H, id: Option<&Option<MetricId>>) {
        if let Some(Some(id)) = id {
            let _ = host.increment_metric(*id, 1);
        }
    }
}

/// The root filter: one per configuration and worker.
#[derive(Debug, Default)]
pub struct CanaryRoot {
    config: Option<Arc<CanaryConfig>>,
}

impl RootFilter for CanaryRoot {
    type Http = CanaryFilter;

    fn on_configure<H: Host>(&mut self, host: &H, config: &[u8]) -> bool {
        match CanaryConfig::from_json(host, config) {
            Ok(c) => {
                host_log!(
                    host,
                    LogLevel::Info,
                    "canary: configured {} service(s), route header {}",
                    c.canary.services().len(),
                    c.canary.route_header()
                );
                self.config = Some(c);
                true
            }
            Err(e) => {
                host_log!(host, LogLevel::Error, "canary: invalid configuration: {e}");
                false
            }
        }
    }

    fn new_http(&self) -> CanaryFilter {
        CanaryFilter {
            config: self.config.clone(),
            decision: None,
        }
    }
}

/// The per-request filter.
#[derive(Debug)]
pub struct CanaryFilter {
    config: Option<Arc<CanaryConfig>>,
    decision: Option<Decision>,
}

// === impl CanaryFilter ===

impl CanaryFilter {
    pub fn new(config: Arc<CanaryConfig>) -> Self {
        Self {
            config: Some(config),
            decision: None,
        }
    }

    /// The decision taken on this request, once the request headers were seen.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }
}

impl HttpFilter for CanaryFilter {
    const CALLBACKS: Callbacks = Callbacks::REQUEST_HEADERS.union(Callbacks::RESPONSE_HEADERS);

    fn on_request_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        let Some(config) = &self.config else {
            return Action::Continue;
        };
        let Some(d) = config.canary.route(host) else {
            return Action::Continue;
        };
        let _ = decision::publish(host, DECISION, config.canary.subset_name(&d));
        if let Some(stats) = config.stats.get(d.service) {
            CanaryConfig::bump(host, stats.decisions.get(d.subset));
            if matches!(d.reason, Reason::Override(_)) {
                CanaryConfig::bump(host, stats.overrides.get(d.subset));
            }
        }
        self.decision = Some(d);
        Action::Continue
    }

    fn on_response_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        let (Some(config), Some(d)) = (&self.config, &self.decision) else {
            return Action::Continue;
        };
        if config.canary.respond(host, d) == Some(Observation::Tripped) {
            // Exactly one worker sees the trip, so this logs and counts once.
            let canary = &config.canary;
            if let Some(s) = canary.services().get(d.service) {
                if let Some(stats) = config.stats.get(d.service) {
                    CanaryConfig::bump(host, Some(&stats.rollbacks));
                }
                let (requests, failures) = s
                    .guard()
                    .and_then(|g| guard::read(host, g.key()))
                    .map_or((0, 0), |r| (r.requests, r.failures));
                let rate = s
                    .guard()
                    .map_or(0.0, |g| g.policy().max_error_ppb as f64 / 1e9);
                host_log!(
                    host,
                    LogLevel::Warn,
                    "canary: rollback guard tripped for {} subset {}: {failures} of {requests} responses failed in the window (max error rate {rate}); sending its traffic to the other subsets until the configuration changes",
                    s.host(),
                    canary.subset_name(d)
                );
            }
        }
        Action::Continue
    }
}

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(CanaryRoot);
