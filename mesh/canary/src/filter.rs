//! The canary capability in the proxy: its [`Capability`] steps and the per-request filter,
//! which routes each request, publishes the chosen subset under [`DECISION`] and counts it.

use crate::guard::{self, Observation};
use crate::{Canary, CanarySpec, Decision, Reason, Service};
use mesh_core::decision;
use mesh_core::{Capability, CapabilityRoot, ConfigError, SetupError};
use sdk_shim::{
    host_log, Action, Callbacks, ConfigHost, HttpFilter, LogLevel, MetricId, MetricKind, Metrics,
    Namespace, StreamHost,
};
use std::sync::Arc;

/// The key this filter publishes its verdict under (the chosen subset).
pub const DECISION: &str = decision::CANARY;

/// The canary routing capability.
#[derive(Debug)]
pub struct CanaryCapability;

/// The proxy's root filter for canary routing: one per configuration and worker.
pub type CanaryRoot = CapabilityRoot<CanaryCapability>;

// === impl CanaryCapability ===

impl Capability for CanaryCapability {
    const NAME: &'static str = "canary";
    const DECISION_KEY: Option<&'static str> = Some(DECISION);
    type Compiled = Canary;
    type Bound = CanaryConfig;
    type Filter = CanaryFilter;

    fn compile(config: &[u8]) -> Result<Canary, ConfigError> {
        Canary::from_json(config)
    }

    /// Binds the namespace, defines the stats and arms the rollback guards.
    fn bind<H: ConfigHost>(host: &H, canary: Canary) -> Result<CanaryConfig, SetupError> {
        let config = CanaryConfig::bind(host, canary)?;
        host_log!(
            host,
            LogLevel::Info,
            "canary: configured {} service(s), route header {}",
            config.canary.services().len(),
            config.canary.route_header()
        );
        Ok(config)
    }
    fn request_header_reads(config: &CanaryConfig) -> usize {
        config.canary.request_header_reads()
    }

    fn filter(bound: Option<&Arc<CanaryConfig>>) -> CanaryFilter {
        CanaryFilter {
            config: bound.cloned(),
            decision: None,
        }
    }
}

/// Stat ids of one service, defined once per configuration.
#[derive(Debug)]
struct ServiceStats {
    /// Per subset: requests routed to it.
    decisions: Vec<MetricId>,
    /// Per subset: requests an override sent to it.
    overrides: Vec<MetricId>,
    /// Times the guard tripped (guarded services only).
    rollbacks: Option<MetricId>,
}

// === impl ServiceStats ===

impl ServiceStats {
    /// Defines the counters of service `s`; any that cannot be defined fails the configuration.
    fn define<H: Metrics>(host: &H, s: &Service) -> Result<Self, SetupError> {
        let define = |name: String| {
            host.define_metric(MetricKind::Counter, &name)
                .map_err(SetupError::of("metrics"))
        };
        let per_subset = |what: &str| {
            s.subsets()
                .iter()
                .map(|sub| define(format!("canary.{}.{sub}.{what}", s.stat_label())))
                .collect::<Result<Vec<_>, _>>()
        };
        let decisions = per_subset("decisions")?;
        let overrides = per_subset("overrides")?;
        let rollbacks = s
            .guard()
            .and_then(|g| s.subsets().get(g.subset()))
            .map(|sub| define(format!("canary.{}.{sub}.rollbacks", s.stat_label())))
            .transpose()?;
        Ok(Self {
            decisions,
            overrides,
            rollbacks,
        })
    }
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
    /// Parses, validates and binds a JSON configuration; the error is the one line to log.
    pub fn from_json<H: ConfigHost>(host: &H, bytes: &[u8]) -> Result<Arc<Self>, String> {
        Self::bind_line(host, CanaryCapability::compile(bytes))
    }

    /// The same from an already parsed spec (as the suite filter holds it).
    pub fn from_spec<H: ConfigHost>(host: &H, spec: &CanarySpec) -> Result<Arc<Self>, String> {
        Self::bind_line(host, Canary::compile(spec))
    }

    /// Binds a compiled configuration, with [`CapabilityRoot`]'s error lines.
    fn bind_line<H: ConfigHost>(
        host: &H,
        compiled: Result<Canary, ConfigError>,
    ) -> Result<Arc<Self>, String> {
        let name = CanaryCapability::NAME;
        let canary = compiled.map_err(|e| format!("{name}: invalid configuration: {e}"))?;
        Self::bind(host, canary)
            .map(Arc::new)
            .map_err(|e| format!("{name}: {e}"))
    }

    /// Binds the guards to the plugin's namespace, defines the stats and arms the guards.
    fn bind<H: ConfigHost>(host: &H, mut canary: Canary) -> Result<Self, SetupError> {
        canary.bind_namespace(Namespace::of_plugin(host, canary.namespace()));
        // Stats first: a configuration refused for its stats must not seed guard records.
        let stats = canary
            .services()
            .iter()
            .map(|s| ServiceStats::define(host, s))
            .collect::<Result<Vec<_>, _>>()?;
        // A request that finds its guard unseeded seeds it itself, so this only warns.
        if let Err(e) = canary.arm_guards(host, host.now_nanos()) {
            host_log!(
                host,
                LogLevel::Warn,
                "canary: could not seed the rollback guard: {e}"
            );
        }
        Ok(Self { canary, stats })
    }

    pub fn canary(&self) -> &Canary {
        &self.canary
    }

    fn bump<H: Metrics>(host: &H, id: Option<&MetricId>) {
        if let Some(id) = id {
            // A lost count must not change the route.
            let _ = host.increment_metric(*id, 1);
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

    fn on_request_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
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

    fn on_response_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        let (Some(config), Some(d)) = (&self.config, &self.decision) else {
            return Action::Continue;
        };
        if config.canary.respond(host, d) == Some(Observation::Tripped) {
            // Exactly one worker sees the trip, so this logs and counts once.
            let canary = &config.canary;
            if let Some(s) = canary.services().get(d.service) {
                if let Some(stats) = config.stats.get(d.service) {
                    CanaryConfig::bump(host, stats.rollbacks.as_ref());
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

#[cfg(test)]
mod tests;
