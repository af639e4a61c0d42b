//! The ratelimit proxy-wasm filter: thin glue that parses the configuration, builds a shared
//! [`Limiter`] and delegates each request to `mesh-ratelimit`.
//!
//! The configuration is documented in [`mesh_ratelimit`]. A refused request gets a 429 from
//! the proxy (the upstream never sees it); the verdict is published under
//! [`DECISION_KEY`] for telemetry and access logs.

use mesh_ratelimit::{Config, Decision, Limiter};
use sdk_shim::{
    decision, host_log, Action, Callbacks, HeaderMap, Host, HttpFilter, HttpHost, LogLevel,
    RootFilter,
};
use std::sync::Arc;

/// Where the verdict is published: `allowed`, `limited:<rule>` or `shadow_limited:<rule>`.
pub const DECISION_KEY: &str = decision::RATELIMIT;

/// Parses, validates and sets up (metrics, the bucket table and its hash secret) a
/// configuration; the error is the one log line to write.
pub fn compile<H: Host>(host: &H, config: &[u8]) -> Result<Arc<Limiter>, String> {
    let config =
        Config::parse(config).map_err(|e| format!("ratelimit: invalid configuration: {e}"))?;
    Limiter::new(host, config).map(Arc::new).map_err(|e| {
        format!("ratelimit: cannot set up the bucket table, its secret or metrics: {e}")
    })
}

/// The root context: one compiled configuration.
#[derive(Debug, Default)]
pub struct RateLimitRoot {
    limiter: Option<Arc<Limiter>>,
}

// === impl RateLimitRoot ===

impl RateLimitRoot {
    /// The compiled configuration, once configured.
    pub fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.limiter.as_ref()
    }
}

impl RootFilter for RateLimitRoot {
    type Http = RateLimitFilter;

    fn on_configure<H: Host>(&mut self, host: &H, config: &[u8]) -> bool {
        match compile(host, config) {
            Ok(limiter) => {
                self.limiter = Some(limiter);
                true
            }
            Err(line) => {
                host_log!(host, LogLevel::Error, "{line}");
                false
            }
        }
    }

    fn new_http(&self) -> RateLimitFilter {
        RateLimitFilter::new(self.limiter.clone())
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

    fn on_request_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
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
                    mesh_ratelimit::LimitedReply::STATUS,
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

    fn on_response_headers<H: HttpHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some((ratelimit, policy)) = self.response_fields.take() {
            // Appended: structured-field lists may span several fields, so an upstream's own
            // policies stay valid next to ours.
            let _ = host.add_header(HeaderMap::Response, "ratelimit-policy", policy.as_bytes());
            let _ = host.add_header(HeaderMap::Response, "ratelimit", ratelimit.as_bytes());
        }
        Action::Continue
    }
}

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(RateLimitRoot);

#[cfg(test)]
mod tests;
