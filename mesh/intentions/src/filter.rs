//! The intentions capability in the proxy: its [`Capability`] steps and the per-request
//! filter, which reads the peer identity and request head through sdk-shim and lets the
//! [`Policy`] decide.
//!
//! Per request: the peer certificate's URI SAN (and `connection.mtls` only for a log line
//! about a peer without one), then `:method` and `:path` (or the whole header map once, only
//! when the deciding intention matches headers). Failures to read fail closed (403, decision
//! `deny:error`).
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
//! `intentions.invalid_path` and `intentions.error`. A stat that cannot be defined fails the
//! configuration.
//!
//! Audit mode is carried out here, whole (`Enforcement`, and the labels and counters picked
//! at bind time); the [`Policy`] only decides.

use crate::{normalize_path, Action as Verb, DecidedBy, IntentionsConfig, Mode, Peer, Policy};
use mesh_core::decision;
use mesh_core::request::RequestHead;
use mesh_core::{Capability, CapabilityRoot, ConfigError, SetupError};
use sdk_shim::{
    host_log, Action, Callbacks, ConfigHost, HostError, HttpFilter, LogLevel, MetricId, MetricKind,
    StreamHost,
};
use std::sync::Arc;

/// Where the decision is published for telemetry and access logs.
pub const DECISION_KEY: &str = decision::INTENTIONS;

const DENIED_BODY: &[u8] = b"access denied\n";
const BAD_PATH_BODY: &[u8] = b"invalid request path\n";
/// Longest raw path written to a log line.
const LOG_PATH_MAX: usize = 256;

/// The intentions (authorization) capability.
#[derive(Debug)]
pub struct Intentions;

/// The proxy's root filter for intentions.
pub type IntentionsRoot = CapabilityRoot<Intentions>;

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
    /// The string published under [`DECISION_KEY`]; shared with the configuration's labels,
    /// so a request copies none.
    pub decision: Arc<str>,
}

/// Everything audit mode changes: a refusal (a rule's deny, a refused path, a host error)
/// lets the request through, is published as `audit_deny:<why>`, counted under
/// `.audit_denied` and logged as what enforcing would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Enforcement {
    audit: bool,
}

/// An intention's or the default's labels and counters, made once per configuration so a
/// request formats no label.
#[derive(Debug)]
struct Decider {
    /// `allow:<name>`.
    allow: Arc<str>,
    /// `deny:<name>`, or `audit_deny:<name>` in audit mode.
    deny: Arc<str>,
    allowed: MetricId,
    /// What a denial bumps: `.denied`, or `.audit_denied` in audit mode (`.denied` is still
    /// defined there, and stays at zero).
    denied: MetricId,
}

/// How decisions are carried out and counted.
#[derive(Debug)]
struct Stats {
    enforcement: Enforcement,
    /// One per intention of the policy, in its order.
    intentions: Vec<Decider>,
    default: Decider,
    invalid_path: MetricId,
    error: MetricId,
}

/// A validated configuration bound to the host (its metrics defined); shared by every
/// request through `Arc`.
#[derive(Debug)]
pub struct Compiled {
    pub policy: Policy,
    stats: Stats,
    /// `NS/NAME` of this workload, or `-`, for log lines.
    destination: String,
}

/// The per-request filter.
#[derive(Debug)]
pub struct IntentionsFilter {
    config: Option<Arc<Compiled>>,
}

// === impl Intentions ===

impl Capability for Intentions {
    const NAME: &'static str = "intentions";
    const DECISION_KEY: Option<&'static str> = Some(DECISION_KEY);
    type Compiled = Policy;
    type Bound = Compiled;
    type Filter = IntentionsFilter;

    fn compile(config: &[u8]) -> Result<Policy, ConfigError> {
        IntentionsConfig::parse(config)
    }

    /// Defines the metrics, then logs what was configured.
    fn bind<H: ConfigHost>(host: &H, policy: Policy) -> Result<Compiled, SetupError> {
        let c = Compiled::from_policy(host, policy)?;
        let p = &c.policy;
        host_log!(
            host,
            LogLevel::Info,
            "intentions: configured {} intentions for {} ({} for other destinations ignored), default_action {}, mode {}",
            p.intentions().len(),
            p.destination.as_ref().map_or_else(|| "this workload".to_owned(), ToString::to_string),
            p.ignored(),
            p.default_action.as_str(),
            c.stats.enforcement.as_str(),
        );
        Ok(c)
    }
    /// `:method` and `:path` on every request (or the whole map for header matchers).
    fn request_header_reads(_: &Compiled) -> usize {
        2
    }

    fn filter(bound: Option<&Arc<Compiled>>) -> IntentionsFilter {
        IntentionsFilter {
            config: bound.cloned(),
        }
    }
}

// === impl Enforcement ===

impl Enforcement {
    /// `audit` in audit mode, `enforce` otherwise.
    fn pick(self, audit: &'static str, enforce: &'static str) -> &'static str {
        if self.audit {
            audit
        } else {
            enforce
        }
    }

    fn of(mode: Mode) -> Self {
        Self {
            audit: mode == Mode::Audit,
        }
    }

    /// The mode's name in the configuration.
    fn as_str(self) -> &'static str {
        self.pick("audit", "enforce")
    }

    /// The published decision of a refusal, before `:<why>`.
    fn deny_label(self) -> &'static str {
        self.pick("audit_deny", "deny")
    }

    /// What the proxy does with a request it would refuse with `refusal`.
    fn outcome(self, refusal: Outcome) -> Outcome {
        if self.audit {
            Outcome::Allow
        } else {
            refusal
        }
    }

    /// How a log line tells a rule's deny.
    fn denied(self) -> &'static str {
        self.pick("would deny (audit)", "denied")
    }

    /// How a log line tells a refused path.
    fn refused(self) -> &'static str {
        self.pick("would refuse (audit)", "refused")
    }

    /// A refusal that is not a rule's decision (bad path, host error).
    fn refuse(self, refusal: Outcome, why: &str) -> Verdict {
        Verdict {
            outcome: self.outcome(refusal),
            decision: format!("{}:{why}", self.deny_label()).into(),
        }
    }
}

// === impl Stats ===

fn define<H: ConfigHost>(host: &H, name: &str) -> Result<MetricId, SetupError> {
    host.define_metric(MetricKind::Counter, name)
        .map_err(SetupError::of("metrics"))
}

fn bump<H: ConfigHost>(host: &H, id: MetricId) {
    // A lost count must not change the verdict.
    let _ = host.increment_metric(id, 1);
}

impl Stats {
    fn define<H: ConfigHost>(host: &H, policy: &Policy) -> Result<Self, SetupError> {
        let enforcement = Enforcement::of(policy.mode);
        let decider = |name: &str, prefix: &str| -> Result<Decider, SetupError> {
            let allowed = define(host, &format!("{prefix}.allowed"))?;
            let denied = define(host, &format!("{prefix}.denied"))?;
            let denied = if enforcement.audit {
                define(host, &format!("{prefix}.audit_denied"))?
            } else {
                denied
            };
            Ok(Decider {
                allow: format!("allow:{name}").into(),
                deny: format!("{}:{name}", enforcement.deny_label()).into(),
                allowed,
                denied,
            })
        };
        let intentions = policy
            .intentions()
            .iter()
            .map(|i| decider(&i.name, &format!("intentions.intention.{}", i.name)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            enforcement,
            intentions,
            default: decider("default", "intentions.default")?,
            invalid_path: define(host, "intentions.invalid_path")?,
            error: define(host, "intentions.error")?,
        })
    }

    /// `None` only for an index the policy does not have.
    fn of(&self, by: DecidedBy) -> Option<&Decider> {
        match by {
            DecidedBy::Intention { index, .. } => self.intentions.get(index),
            DecidedBy::Default { .. } => Some(&self.default),
        }
    }
}

// === impl Compiled ===

impl Compiled {
    /// Defines the metrics of `policy` (see [`Intentions::bind`], which also logs it).
    pub fn from_policy<H: ConfigHost>(host: &H, policy: Policy) -> Result<Self, SetupError> {
        let stats = Stats::define(host, &policy)?;
        let destination = policy
            .destination
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        Ok(Self {
            policy,
            stats,
            destination,
        })
    }
}

// === impl IntentionsFilter ===

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
    pub fn check<H: StreamHost>(&self, host: &H) -> Verdict {
        let Some(c) = &self.config else {
            host_log!(
                host,
                LogLevel::Error,
                "intentions: no configuration; denying"
            );
            return Verdict {
                outcome: Outcome::Deny,
                decision: "deny:error".into(),
            };
        };
        // The decision is made while the SAN is lent (by the pass, or from the one read), so
        // the identity borrows it: no copy. The SAN alone decides; why a peer has none is
        // read only for a log line.
        let decided = host.peer_uri_san_with(|san| {
            let peer = Peer::from_peer_uri_san(san, &c.policy.trust_domain);
            Self::decide(host, c, &peer)
        });
        decided.unwrap_or_else(|e| Self::host_failed(host, c, "peer identity", e))
    }

    /// Denies (fails closed) when the host cannot give what the decision needs.
    fn host_failed<H: StreamHost>(host: &H, c: &Compiled, what: &str, e: HostError) -> Verdict {
        bump(host, c.stats.error);
        host_log!(
            host,
            LogLevel::Warn,
            "intentions: cannot read {what}: {e}; denying"
        );
        c.stats.enforcement.refuse(Outcome::Deny, "error")
    }

    /// [`Self::check`] once the peer is known.
    fn decide<H: StreamHost>(host: &H, c: &Compiled, peer: &Peer<'_>) -> Verdict {
        let policy = &c.policy;
        let enforcement = c.stats.enforcement;
        let selection = policy.select(peer);
        let head = match RequestHead::read(host, selection.needs_headers()) {
            Ok(h) => h,
            Err(e) => return Self::host_failed(host, c, "request headers", e),
        };
        let dest = &c.destination;
        let path = match normalize_path(&head.path) {
            Ok(p) => p,
            Err(e) => {
                bump(host, c.stats.invalid_path);
                host_log!(
                    host,
                    LogLevel::Info,
                    "intentions: {} invalid path ({e}) source={} destination={dest} method={} path={}",
                    enforcement.refused(),
                    peer.resolved(host),
                    printable(&head.method),
                    printable(&head.path),
                );
                return enforcement.refuse(Outcome::BadRequest, "invalid_path");
            }
        };
        let d = selection.decide(&head.input(&path));
        let (decision, counter) = match (d.action, c.stats.of(d.by)) {
            (Verb::Allow, Some(by)) => (Arc::clone(&by.allow), Some(by.allowed)),
            (Verb::Deny, Some(by)) => (Arc::clone(&by.deny), Some(by.denied)),
            // Not reached: the policy decides only by its own intentions.
            (_, None) => (Arc::from("unknown"), None),
        };
        if let Some(id) = counter {
            bump(host, id);
        }
        match d.action {
            // Allows are not logged (the published decision shows them): no log-level host
            // call on the common path.
            Verb::Allow => Verdict {
                outcome: Outcome::Allow,
                decision,
            },
            Verb::Deny => {
                let name = policy.decider_name(d.by);
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
                    "intentions: {} source={} destination={dest} method={} path={path} intention={name}{after}",
                    enforcement.denied(),
                    peer.resolved(host),
                    printable(&head.method),
                );
                Verdict {
                    outcome: enforcement.outcome(Outcome::Deny),
                    decision,
                }
            }
        }
    }

    /// Sends the local reply a verdict calls for; the returned action pauses a refused request
    /// even if the reply could not be sent (fail closed).
    pub fn enforce<H: StreamHost>(host: &H, verdict: &Verdict) -> Action {
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

impl HttpFilter for IntentionsFilter {
    // The verdict is made on the request headers; nothing after them.
    const CALLBACKS: Callbacks = Callbacks::REQUEST_HEADERS;

    fn on_request_headers<H: StreamHost>(&mut self, host: &H, _end_of_stream: bool) -> Action {
        let verdict = self.check(host);
        // Telemetry reads it; failing to publish must not change the verdict.
        let _ = decision::publish(host, DECISION_KEY, &verdict.decision);
        Self::enforce(host, &verdict)
    }
}

#[cfg(test)]
mod tests;
