//! The rate-limiting capability in the proxy: its [`Capability`] steps and the per-request
//! filter. A refused request gets a 429 from the proxy (the upstream never sees it); the
//! verdict is published under [`DECISION_KEY`] for telemetry and access logs.

use crate::{Config, Decision, Limiter};
use mesh_core::decision;
use mesh_core::{Capability, CapabilityRoot, ConfigError, SetupError};
use sdk_shim::{
    host_log, Action, Callbacks, ConfigHost, HeaderMap, HttpFilter, LogLevel, StreamHost,
};
use std::sync::Arc;

/// Where the verdict is published: `allowed`, `limited:<rule>` or `shadow_limited:<rule>`.
pub const DECISION_KEY: &str = decision::RATELIMIT;

/// The rate-limiting capability.
#[derive(Debug)]
pub struct RateLimit;

/// The proxy's root filter for rate limiting.
pub type RateLimitRoot = CapabilityRoot<RateLimit>;

// === impl RateLimit ===

impl Capability for RateLimit {
    const NAME: &'static str = "ratelimit";
    const DECISION_KEY: Option<&'static str> = Some(DECISION_KEY);
    type Compiled = Config;
    type Bound = Limiter;
    type Filter = RateLimitFilter;

    fn compile(config: &[u8]) -> Result<Config, ConfigError> {
        Config::parse(config)
    }

    /// Defines the metrics, reads (or draws) the table's secret and seeds the table.
    fn bind<H: ConfigHost>(host: &H, config: Config) -> Result<Limiter, SetupError> {
        Limiter::new(host, config)
            .map_err(SetupError::of("the bucket table, its secret or metrics"))
    }

    fn filter(bound: Option<&Arc<Limiter>>) -> RateLimitFilter {
        RateLimitFilter::new(bound.cloned())
    }
}

/// The per-request filter.
#[derive(Debug)]
pub struct RateLimitFilter {
    limiter: Option<Arc<Limiter>>,
    /// `ratelimit` and `ratelimit-policy` to add to the response, if configured.
    response_fields: Option<(String, String)>,
}

// === impl RateLimitFilter ===

impl RateLimitFilter {
    /// A filter for one request; without a limiter it lets everything through.
    pub fn new(limiter: Option<Arc<Limiter>>) -> Self {
        Self {
            limiter,
            response_fields: None,
        }
    }
}

impl HttpFilter for RateLimitFilter {
    const CALLBACKS: Callbacks = Callbacks::REQUEST_HEADERS.union(Callbacks::RESPONSE_HEADERS);

    fn on_request_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        let Some(limiter) = &self.limiter else {
            return Action::Continue;
        };
        let verdict = limiter.check(host);
        if let Some(label) = verdict.decision.label(limiter.config()) {
            // Telemetry missing a label must not change the verdict.
            let _ = decision::publish(host, DECISION_KEY, &label);
        }
        if let Decision::Limited {
            rule,
            retry_after_s,
            ..
        } = verdict.decision
        {
            if let Some(reply) = limiter.limited_reply(rule, retry_after_s) {
                match host.send_local_reply(
                    crate::LimitedReply::STATUS,
                    &reply.headers(),
                    reply.body.as_bytes(),
                ) {
                    Ok(()) => return Action::Pause,
                    Err(e) => host_log!(host, LogLevel::Error, "ratelimit: cannot send 429: {e}"),
                }
            }
            return Action::Continue;
        }
        self.response_fields = verdict.response_fields;
        Action::Continue
    }

    fn on_response_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some((ratelimit, policy)) = self.response_fields.take() {
            // Appended: structured-field lists may span several fields, so an upstream's own
            // policies stay valid next to ours.
            let _ = host.add_header(HeaderMap::Response, "ratelimit-policy", policy.as_bytes());
            let _ = host.add_header(HeaderMap::Response, "ratelimit", ratelimit.as_bytes());
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests;
