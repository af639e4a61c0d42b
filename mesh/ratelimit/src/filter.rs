//! The rate-limiting capability in the proxy: its [`Capability`] steps and the per-request
//! filter. A refused request gets a 429 from the proxy (the upstream never sees it); the
//! verdict is published under [`DECISION_KEY`] for telemetry and access logs.

use crate::global::{METHOD, SERVICE};
use crate::{Config, Decision, GlobalFailure, GlobalVerdict, LimitedReply, Limiter};
use mesh_core::decision;
use mesh_core::{Capability, CapabilityRoot, ConfigError, SetupError};
use sdk_shim::{
    host_log, Action, Callbacks, ConfigHost, GrpcCall, GrpcResponse, HeaderMap, HttpFilter,
    LogLevel, StreamHost,
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
    fn request_header_reads(limiter: &Limiter) -> usize {
        limiter.request_header_reads()
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
    /// Global checks in flight: call token, rule, and from when (ns) a failure counts as the
    /// deadline passing.
    pending: Vec<(u32, usize, u64)>,
    /// Headers rate limit services asked to add to the upstream's response.
    service_headers: Vec<(String, String)>,
}

/// Sends `reply`; `Pause` when sent (the request is answered), else `Continue`: a refusal
/// that cannot be sent lets the request through rather than stall it.
fn send<H: StreamHost>(host: &H, reply: &LimitedReply) -> Action {
    match host.send_local_reply(reply.status, &reply.headers(), reply.body.as_bytes()) {
        Ok(()) => Action::Pause,
        Err(e) => {
            host_log!(
                host,
                LogLevel::Error,
                "ratelimit: cannot send {}: {e}",
                reply.status
            );
            Action::Continue
        }
    }
}

// === impl RateLimitFilter ===

impl RateLimitFilter {
    /// A filter for one request; without a limiter it lets everything through.
    pub fn new(limiter: Option<Arc<Limiter>>) -> Self {
        Self {
            limiter,
            response_fields: None,
            pending: Vec::new(),
            service_headers: Vec::new(),
        }
    }

    /// Sends `reply`; `Pause` when sent (the request is answered), else `Continue`, as when a
    /// local 429 cannot be sent.
    fn refuse<H: StreamHost>(&mut self, host: &H, rule: usize, reply: &LimitedReply) -> Action {
        self.pending.clear();
        if let Some(limiter) = &self.limiter {
            let label = Decision::Limited {
                rule,
                retry_after_s: 0,
                failure: false,
            }
            .label(limiter.config());
            if let Some(label) = label {
                let _ = decision::publish(host, DECISION_KEY, &label);
            }
        }
        send(host, reply)
    }

    /// Applies a global verdict for rule `rule`: `Some` when it decided the request.
    fn apply<H: StreamHost>(
        &mut self,
        host: &H,
        rule: usize,
        verdict: GlobalVerdict,
    ) -> Option<Action> {
        match verdict {
            GlobalVerdict::Admit {
                request_headers,
                response_headers,
            } => {
                for (name, value) in &request_headers {
                    // Replaced, not appended: a client must not pre-empt what the service sets.
                    let _ = host.set_header(HeaderMap::Request, name, value.as_bytes());
                }
                self.service_headers.extend(response_headers);
                None
            }
            GlobalVerdict::Refuse(reply) => Some(self.refuse(host, rule, &reply)),
        }
    }

    /// Starts the global checks of an admitted request; `Pause` while any is in flight.
    fn start_global<H: StreamHost>(
        &mut self,
        host: &H,
        limiter: &Limiter,
        checks: &[crate::GlobalCheck],
    ) -> Action {
        for check in checks {
            let Some((global, message)) = limiter.global_call(check) else {
                continue;
            };
            let call = GrpcCall {
                service: &global.service,
                service_name: SERVICE,
                method: METHOD,
                metadata: &[],
                message: &message,
                timeout_ms: global.timeout_ms,
            };
            // Envoy ends a call past its deadline with UNAVAILABLE, as a refused connection: the
            // time it took tells them apart. Its timer starts a little after this clock read,
            // so 90% of the deadline counts as reaching it.
            let late_at = host
                .now_nanos()
                .saturating_add(u64::from(global.timeout_ms) * 900_000);
            match host.grpc_call(&call) {
                Ok(token) => self.pending.push((token, check.rule, late_at)),
                Err(e) => {
                    let verdict =
                        limiter.global_verdict(host, check.rule, Err(GlobalFailure::Dispatch(e)));
                    if let Some(action) = self.apply(host, check.rule, verdict) {
                        return action;
                    }
                }
            }
        }
        if self.pending.is_empty() {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl HttpFilter for RateLimitFilter {
    const CALLBACKS: Callbacks = Callbacks::REQUEST_HEADERS
        .union(Callbacks::RESPONSE_HEADERS)
        .union(Callbacks::GRPC_RESPONSE);

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
            return limiter
                .limited_reply(rule, retry_after_s)
                .map_or(Action::Continue, |reply| send(host, &reply));
        }
        self.response_fields = verdict.response_fields;
        if verdict.global.is_empty() {
            return Action::Continue;
        }
        let limiter = Arc::clone(limiter);
        self.start_global(host, &limiter, &verdict.global)
    }

    fn on_grpc_response<H: StreamHost>(
        &mut self,
        host: &H,
        token: u32,
        response: GrpcResponse,
    ) -> Action {
        let Some(at) = self.pending.iter().position(|(t, ..)| *t == token) else {
            // Not ours, or the request was already answered.
            return Action::Pause;
        };
        let (_, rule, late_at) = self.pending.swap_remove(at);
        let Some(limiter) = self.limiter.clone() else {
            return Action::Continue;
        };
        let late = host.now_nanos() >= late_at;
        let answer = response.as_deref().map_err(|status| {
            if late {
                GlobalFailure::Deadline(*status)
            } else {
                GlobalFailure::Status(*status)
            }
        });
        let verdict = limiter.global_verdict(host, rule, answer);
        if let Some(action) = self.apply(host, rule, verdict) {
            return action;
        }
        if self.pending.is_empty() {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_response_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        if let Some((ratelimit, policy)) = self.response_fields.take() {
            // Appended: structured-field lists may span several fields, so an upstream's own
            // policies stay valid next to ours.
            let _ = host.add_header(HeaderMap::Response, "ratelimit-policy", policy.as_bytes());
            let _ = host.add_header(HeaderMap::Response, "ratelimit", ratelimit.as_bytes());
        }
        for (name, value) in std::mem::take(&mut self.service_headers) {
            let _ = host.add_header(HeaderMap::Response, &name, value.as_bytes());
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests;
