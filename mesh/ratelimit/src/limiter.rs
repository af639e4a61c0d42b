//! Per-request evaluation: rules in order, keys, buckets, stats and the verdict.
//!
//! Every matching rule with a key consumes from its own bucket. In `enforce` mode the first
//! rule whose bucket is empty limits the request and later rules are not consulted (earlier
//! rules keep what they consumed: a refund would be a second CAS that can race). In `shadow`
//! mode every matching rule is consulted and consumes, and would-be limits are counted and
//! logged.

use crate::config::{Config, FailureMode, KeySource, Mode, Rule};
use crate::gcra::Outcome;
use crate::global::{self, Answer, Global};
use crate::headers::{ceil_secs, push_policy, push_service_limit, LimitedReply};
use crate::key::{self, Fingerprint, PeerAddress};
use crate::select::RuleIndex;
use crate::table::{self, Failure, TableKeys};
use mesh_core::request::RequestHead;
use sdk_shim::{
    host_log, ConfigHost, GrpcStatus, HeaderMap, HostError, LogLevel, MetricId, MetricKind,
    Namespace, StreamHost,
};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

/// The metric ids of one rule: `ratelimit.<rule>.<stat>`.
#[derive(Debug, Clone, Copy)]
pub struct RuleStats {
    pub allowed: MetricId,
    pub limited: MetricId,
    pub shadow_limited: MetricId,
    pub cas_retries: MetricId,
    pub slot_collisions: MetricId,
    /// Store failures and exhausted CAS retries (decided by `failure_mode`).
    pub failures: MetricId,
    /// Address keys of requests whose connection carries no peer stamp (they share one
    /// bucket per rule).
    pub peer_unknown: MetricId,
    /// Rules with a `global` block: `ratelimit.<rule>.global_<stat>`.
    pub global: Option<GlobalStats>,
}

/// The metric ids of a rule's global checks.
#[derive(Debug, Clone, Copy)]
pub struct GlobalStats {
    /// The service admitted the request.
    pub allowed: MetricId,
    /// The service said over limit (counted in shadow mode too).
    pub limited: MetricId,
    /// Calls that failed: not started, a non-OK gRPC status, an answer that did not decode.
    pub failures: MetricId,
    /// The failures at or after the deadline (or with gRPC status 4).
    pub timeouts: MetricId,
}

/// The names of the global stats, in [`GlobalStats`] order.
pub const GLOBAL_STAT_NAMES: [&str; 4] = [
    "global_allowed",
    "global_limited",
    "global_failures",
    "global_timeouts",
];

/// The names of the per-rule stats, in [`RuleStats`] order.
pub const STAT_NAMES: [&str; 7] = [
    "allowed",
    "limited",
    "shadow_limited",
    "cas_retries",
    "slot_collisions",
    "failures",
    "peer_unknown",
];

/// A compiled configuration with its metrics: what each request is checked against. Built
/// once per configuration, shared by `Arc`.
#[derive(Debug)]
pub struct Limiter {
    config: Config,
    stats: Vec<RuleStats>,
    /// Per rule, the fingerprint state after the table's secret and the rule's name: a
    /// request copies it and adds its key, with no host call and no allocation.
    fingerprints: Vec<Fingerprint>,
    /// The rules by path, so that a request visits only those it can match.
    index: RuleIndex,
    /// This plugin's keys in shared data.
    keys: TableKeys,
    /// Whether this worker already warned that a connection had no peer stamp.
    warned_unstamped: AtomicBool,
    /// Whether the last global call on this worker failed (failures are logged at warn on
    /// the way in and out of that state, at debug within it).
    global_degraded: AtomicBool,
}

/// What the filter does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No rule applied (none matched, or every matching rule lacked its key).
    Unmatched,
    Allowed,
    /// Refused by rule `rule`; `failure` when the bucket could not be read and
    /// `failure_mode` is `deny`.
    Limited {
        rule: usize,
        retry_after_s: u64,
        failure: bool,
    },
    /// `shadow` mode: rule `rule` (the first) would have refused it.
    ShadowLimited {
        rule: usize,
    },
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    /// `ratelimit` and `ratelimit-policy` values to add to an admitted response, when
    /// `headers_on_allowed` is set and some rule applied.
    pub response_fields: Option<(String, String)>,
    /// Rules whose local bucket admitted the request and that ask the rate limit service
    /// next (empty when the request is limited locally).
    pub global: Vec<GlobalCheck>,
}

/// A global check to make for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalCheck {
    pub rule: usize,
    /// The rule's key value for the descriptor; `None` for a rule without a key.
    pub value: Option<String>,
}

/// What a global answer (or failure) means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalVerdict {
    /// Go on: admitted, shadow mode, or failed with `failure_mode: allow`.
    Admit {
        request_headers: Vec<(String, String)>,
        response_headers: Vec<(String, String)>,
    },
    /// Answer with this reply.
    Refuse(LimitedReply),
}

/// Why a global check gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalFailure {
    /// The host refused to start the call.
    Dispatch(HostError),
    /// The call ended with this non-OK gRPC status.
    Status(GrpcStatus),
    /// The call ended with this status at its deadline (Envoy reports a passed
    /// deadline as UNAVAILABLE).
    Deadline(GrpcStatus),
    /// The answer was not a `RateLimitResponse`.
    Undecodable,
}

// === impl GlobalCheck ===

impl GlobalCheck {
    /// The check rule `i` makes, if it has a `global` block and, when keyed, a key value (a
    /// key that could not be read sends nothing rather than a descriptor without it).
    fn of(rule: &Rule, i: usize, value: Option<String>) -> Option<Self> {
        rule.global.as_ref()?;
        if value.is_none() && rule.key != KeySource::Rule {
            return None;
        }
        Some(Self { rule: i, value })
    }
}

// === impl Decision ===

impl Decision {
    /// The string published under `mesh_core::decision::RATELIMIT`: `allowed`,
    /// `limited:<rule>` or `shadow_limited:<rule>`; `None` when no rule applied.
    pub fn label(&self, config: &Config) -> Option<Cow<'static, str>> {
        let name = |i: &usize| config.rules.get(*i).map_or("", |r| r.name.as_str());
        match self {
            Decision::Unmatched => None,
            Decision::Allowed => Some(Cow::Borrowed("allowed")),
            Decision::Limited { rule, .. } => Some(format!("limited:{}", name(rule)).into()),
            Decision::ShadowLimited { rule } => {
                Some(format!("shadow_limited:{}", name(rule)).into())
            }
        }
    }
}

// === impl Limiter ===

/// Request properties read at most once per request, shared by rules that key on them.
#[derive(Default)]
struct Props {
    peer: Option<Result<Option<Vec<u8>>, HostError>>,
    forwarded_for: Option<Result<Vec<Vec<u8>>, HostError>>,
    principal: Option<Result<Option<Vec<u8>>, HostError>>,
}

enum KeyRead {
    Fingerprint(u64),
    /// An address key on a connection without the peer stamp: the rule's one shared bucket.
    Unstamped(u64),
    Missing,
    Failed(HostError),
}

impl Limiter {
    /// Defines the metrics, reads (or, first of all, generates) the table's hash secret and
    /// seeds the bucket table, before any request (see [`crate::table`]).
    /// Request headers a request reads at most: `:method` and `:path` for matchers (or the
    /// whole map), a header per header-keyed rule, and every `x-forwarded-for` value (the
    /// whole map) behind trusted proxies.
    pub fn request_header_reads(&self) -> usize {
        let rules = &self.config.rules;
        let head = if self.config.needs_head() { 2 } else { 0 };
        let keys: usize = rules
            .iter()
            .map(|r| match r.key {
                KeySource::Header(_) => 1,
                KeySource::Address { trusted_hops } if trusted_hops > 0 => 2,
                _ => 0,
            })
            .sum();
        head + keys
    }

    pub fn new<H: ConfigHost>(host: &H, config: Config) -> Result<Self, HostError> {
        let mut stats = Vec::with_capacity(config.rules.len());
        for rule in &config.rules {
            let mut ids = [MetricId(0); STAT_NAMES.len()];
            for (id, stat) in ids.iter_mut().zip(STAT_NAMES) {
                let name = format!("ratelimit.{}.{stat}", rule.name);
                *id = host.define_metric(MetricKind::Counter, &name)?;
            }
            let [allowed, limited, shadow_limited, cas_retries, slot_collisions, failures, peer_unknown] =
                ids;
            let global = match rule.global {
                None => None,
                Some(_) => {
                    let mut g = [MetricId(0); GLOBAL_STAT_NAMES.len()];
                    for (id, stat) in g.iter_mut().zip(GLOBAL_STAT_NAMES) {
                        let name = format!("ratelimit.{}.{stat}", rule.name);
                        *id = host.define_metric(MetricKind::Counter, &name)?;
                    }
                    let [allowed, limited, failures, timeouts] = g;
                    Some(GlobalStats {
                        allowed,
                        limited,
                        failures,
                        timeouts,
                    })
                }
            };
            stats.push(RuleStats {
                global,
                allowed,
                limited,
                shadow_limited,
                cas_retries,
                slot_collisions,
                failures,
                peer_unknown,
            });
        }
        let mut fingerprints = Vec::with_capacity(config.rules.len());
        let keys = TableKeys::new(Namespace::of_plugin(host, config.namespace.as_deref()));
        if !config.rules.is_empty() {
            let secret = table::load_or_create_secret(host, &keys)?;
            if secret.created {
                host_log!(
                    host,
                    LogLevel::Info,
                    "ratelimit: generated the bucket table's hash secret"
                );
            }
            fingerprints.extend(
                config
                    .rules
                    .iter()
                    .map(|r| Fingerprint::for_rule(secret.key, &r.name)),
            );
            let created = table::seed(host, &keys, config.max_keys)?;
            if created > 0 {
                host_log!(
                    host,
                    LogLevel::Info,
                    "ratelimit: seeded {created} bucket slots (max_keys {})",
                    config.max_keys
                );
            }
        }
        Ok(Self {
            index: RuleIndex::new(&config),
            config,
            stats,
            fingerprints,
            keys,
            warned_unstamped: AtomicBool::new(false),
            global_degraded: AtomicBool::new(false),
        })
    }

    /// This plugin's shared-data keys.
    pub fn keys(&self) -> &TableKeys {
        &self.keys
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The fingerprint a header key `value` gets under rule `rule` (the slot is
    /// [`table::slot_of`] of it). Only meaningful inside this proxy: it depends on the secret.
    pub fn header_fingerprint(&self, rule: usize, value: &[u8]) -> Option<u64> {
        self.fingerprints
            .get(rule)
            .map(|fp| header_fingerprint(*fp, value))
    }

    /// The 429 answer for a [`Decision::Limited`].
    pub fn limited_reply(&self, rule: usize, retry_after_s: u64) -> Option<LimitedReply> {
        self.config
            .rules
            .get(rule)
            .map(|r| LimitedReply::new(r, retry_after_s))
    }

    fn count<H: ConfigHost>(
        &self,
        host: &H,
        rule: usize,
        pick: fn(&RuleStats) -> MetricId,
        n: u32,
    ) {
        if n == 0 {
            return;
        }
        if let Some(s) = self.stats.get(rule) {
            // A metric that cannot be updated must not change the verdict.
            let _ = host.increment_metric(pick(s), i64::from(n));
        }
    }

    /// Counts an address key of rule `i` read on a connection without the peer stamp, and
    /// warns once per worker.
    fn unstamped<H: ConfigHost>(&self, host: &H, i: usize, rule: &Rule) {
        self.count(host, i, |s| s.peer_unknown, 1);
        if !self.warned_unstamped.swap(true, Ordering::Relaxed) {
            host_log!(
                host,
                LogLevel::Warn,
                "ratelimit: rule {}: the connection carries no {} filter state, so every such request shares one bucket; add envoy.filters.network.set_filter_state to the listener (see the ratelimit README)",
                rule.name,
                key::PEER_STAMP
            );
        }
    }

    /// The global check `check` as a call: the rule's `global` block and the serialized
    /// `RateLimitRequest`.
    pub fn global_call(&self, check: &GlobalCheck) -> Option<(&Global, Vec<u8>)> {
        let g = self.config.rules.get(check.rule)?.global.as_ref()?;
        Some((g, g.request(check.value.as_deref())))
    }

    /// What the service's answer to rule `rule`'s check (or the failure to get one) means for
    /// the request, counted in the rule's global stats.
    pub fn global_verdict<H: StreamHost>(
        &self,
        host: &H,
        rule: usize,
        answer: Result<&[u8], GlobalFailure>,
    ) -> GlobalVerdict {
        let admit = || GlobalVerdict::Admit {
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        let (Some(r), Some(stats)) = (
            self.config.rules.get(rule),
            self.stats.get(rule).and_then(|s| s.global),
        ) else {
            return admit();
        };
        let Some(g) = &r.global else {
            return admit();
        };
        let count = |id: MetricId| {
            let _ = host.increment_metric(id, 1);
        };
        let decoded =
            answer.and_then(|m| global::answer(m).map_err(|_| GlobalFailure::Undecodable));
        let failure = match decoded {
            Ok(answer) => {
                if self.global_degraded.swap(false, Ordering::Relaxed) {
                    host_log!(
                        host,
                        LogLevel::Info,
                        "ratelimit: rule {}: the rate limit service answers again",
                        r.name
                    );
                }
                return match answer {
                    Answer::Ok {
                        request_headers,
                        response_headers,
                    } => {
                        count(stats.allowed);
                        GlobalVerdict::Admit {
                            request_headers,
                            response_headers,
                        }
                    }
                    Answer::OverLimit {
                        retry_after_s,
                        policy,
                        response_headers,
                        ..
                    } => {
                        count(stats.limited);
                        if self.config.mode == Mode::Shadow {
                            self.count(host, rule, |s| s.shadow_limited, 1);
                            host_log!(
                                host,
                                LogLevel::Info,
                                "ratelimit: shadow mode: request would be limited by the rate limit service under rule {}",
                                r.name
                            );
                            return admit();
                        }
                        GlobalVerdict::Refuse(LimitedReply::global(
                            r,
                            retry_after_s,
                            policy,
                            response_headers,
                        ))
                    }
                };
            }
            Err(f) => f,
        };
        count(stats.failures);
        if matches!(
            failure,
            GlobalFailure::Deadline(_) | GlobalFailure::Status(GrpcStatus::DEADLINE_EXCEEDED)
        ) {
            count(stats.timeouts);
        }
        let why = match failure {
            GlobalFailure::Dispatch(e) => format!("the call could not start ({e})"),
            GlobalFailure::Status(s) => format!("gRPC status {} ({})", s.0, s.name()),
            GlobalFailure::Deadline(s) => {
                format!(
                    "no answer by the deadline (gRPC status {}, {})",
                    s.0,
                    s.name()
                )
            }
            GlobalFailure::Undecodable => "its answer is not a RateLimitResponse".to_owned(),
        };
        // Warn when the service stops answering; while it stays down, debug only.
        let level = if self.global_degraded.swap(true, Ordering::Relaxed) {
            LogLevel::Debug
        } else {
            LogLevel::Warn
        };
        host_log!(
            host,
            level,
            "ratelimit: rule {}: rate limit service failed: {why}; failure_mode {:?}",
            r.name,
            g.failure_mode
        );
        if self.config.mode == Mode::Enforce && g.failure_mode == FailureMode::Deny {
            return GlobalVerdict::Refuse(LimitedReply::unavailable(r));
        }
        admit()
    }

    /// Checks one request against every rule, consuming from matching buckets.
    pub fn check<H: StreamHost>(&self, host: &H) -> Verdict {
        let config = &self.config;
        let mut verdict = Verdict {
            decision: Decision::Unmatched,
            response_fields: None,
            global: Vec::new(),
        };
        if config.rules.is_empty() {
            return verdict;
        }
        let head = if self.index.needs_head() {
            Some(RequestHead::read(host, self.index.needs_headers()))
        } else {
            None
        };
        let path = match &head {
            Some(Ok(h)) => h.path_lossy(),
            _ => Cow::Borrowed(""),
        };
        let candidates = self
            .index
            .candidates(matches!(head, Some(Ok(_))).then_some(path.as_ref()));
        let now = host.now_nanos();
        let mut props = Props::default();
        let mut fields = config
            .headers_on_allowed
            .then(|| (String::new(), String::new()));

        for &i in candidates.iter() {
            let (Some(rule), Some(fp)) = (config.rules.get(i), self.fingerprints.get(i)) else {
                continue;
            };
            let failed = |e: HostError| (i, Failure::Store(e));
            let result = if let Some(m) = &rule.matcher {
                match &head {
                    Some(Ok(h)) if m.matches(&h.input(&path)) => Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(failed(*e)),
                    None => continue,
                }
            } else {
                Ok(())
            };
            let mut value = None;
            let acquired = result.and_then(|()| {
                let (read, v) = self.key(host, rule, *fp, &head, &mut props);
                value = v;
                let fp = match read {
                    KeyRead::Fingerprint(fp) => fp,
                    KeyRead::Unstamped(fp) => {
                        self.unstamped(host, i, rule);
                        fp
                    }
                    KeyRead::Missing => return Ok(None),
                    KeyRead::Failed(e) => return Err(failed(e)),
                };
                let Some(limit) = &rule.limit else {
                    return Ok(Some(None));
                };
                table::acquire(host, &self.keys, limit, fp, config.max_keys, now)
                    .map(|a| Some(Some(a)))
                    .map_err(|f| (i, f))
            });
            match acquired {
                Ok(None) => continue,
                Ok(Some(None)) => {
                    // Only the rate limit service counts this rule.
                    if verdict.decision == Decision::Unmatched {
                        verdict.decision = Decision::Allowed;
                    }
                    verdict
                        .global
                        .extend(GlobalCheck::of(rule, i, value.take()));
                }
                Ok(Some(Some(a))) => {
                    self.count(host, i, |s| s.cas_retries, a.cas_retries);
                    self.count(host, i, |s| s.slot_collisions, u32::from(a.collision));
                    match a.outcome {
                        Outcome::Allow {
                            remaining,
                            full_in_ns,
                            ..
                        } => {
                            self.count(host, i, |s| s.allowed, 1);
                            if verdict.decision == Decision::Unmatched {
                                verdict.decision = Decision::Allowed;
                            }
                            verdict
                                .global
                                .extend(GlobalCheck::of(rule, i, value.take()));
                            if let Some((rl, policy)) = &mut fields {
                                push_service_limit(rl, rule, remaining, ceil_secs(full_in_ns));
                                push_policy(policy, rule);
                            }
                        }
                        Outcome::Deny { retry_in_ns } => {
                            let retry_after_s = ceil_secs(retry_in_ns).max(1);
                            if config.mode == Mode::Enforce {
                                self.count(host, i, |s| s.limited, 1);
                                verdict.decision = Decision::Limited {
                                    rule: i,
                                    retry_after_s,
                                    failure: false,
                                };
                                verdict.global.clear();
                                return verdict;
                            }
                            self.count(host, i, |s| s.shadow_limited, 1);
                            host_log!(
                                host,
                                LogLevel::Info,
                                "ratelimit: shadow mode: request would be limited by rule {}",
                                rule.name
                            );
                            if !matches!(verdict.decision, Decision::ShadowLimited { .. }) {
                                verdict.decision = Decision::ShadowLimited { rule: i };
                            }
                            verdict
                                .global
                                .extend(GlobalCheck::of(rule, i, value.take()));
                            if let Some((rl, policy)) = &mut fields {
                                push_service_limit(rl, rule, 0, retry_after_s);
                                push_policy(policy, rule);
                            }
                        }
                    }
                }
                Err((i, failure)) => {
                    self.count(host, i, |s| s.failures, 1);
                    if let Failure::CasExhausted { retries } = failure {
                        self.count(host, i, |s| s.cas_retries, retries);
                    }
                    host_log!(
                        host,
                        LogLevel::Warn,
                        "ratelimit: rule {}: bucket unavailable ({failure:?}); failure_mode {:?}",
                        rule.name,
                        config.failure_mode
                    );
                    if config.mode == Mode::Enforce && config.failure_mode == FailureMode::Deny {
                        verdict.decision = Decision::Limited {
                            rule: i,
                            retry_after_s: 1,
                            failure: true,
                        };
                        verdict.global.clear();
                        return verdict;
                    }
                    verdict
                        .global
                        .extend(GlobalCheck::of(rule, i, value.take()));
                }
            }
        }
        if verdict.decision != Decision::Unmatched {
            verdict.response_fields = fields;
        }
        verdict
    }

    /// The fingerprint of `rule`'s key for this request; `fp` is the rule's prepared state.
    /// With a `global` block, also the key's value for the service's descriptor.
    fn key<H: StreamHost>(
        &self,
        host: &H,
        rule: &Rule,
        fp: Fingerprint,
        head: &Option<Result<RequestHead, HostError>>,
        props: &mut Props,
    ) -> (KeyRead, Option<String>) {
        let want = rule.global.is_some();
        let text = |v: &[u8]| want.then(|| String::from_utf8_lossy(v).into_owned());
        match &rule.key {
            KeySource::Rule => (KeyRead::Fingerprint(fp.byte(b'r').finish()), None),
            KeySource::Header(name) => {
                // Reuse the whole map when matchers already read it; else one host call.
                let hash = |v: &[u8]| (KeyRead::Fingerprint(header_fingerprint(fp, v)), text(v));
                match head {
                    Some(Ok(h)) if !h.headers.is_empty() => {
                        h.headers.get(name).map_or((KeyRead::Missing, None), hash)
                    }
                    _ => match host.header(HeaderMap::Request, name) {
                        Ok(Some(v)) => hash(&v),
                        Ok(None) | Err(HostError::NotFound) => (KeyRead::Missing, None),
                        Err(e) => (KeyRead::Failed(e), None),
                    },
                }
            }
            KeySource::Address { trusted_hops } => {
                let peer = props
                    .peer
                    .get_or_insert_with(|| host.property(&key::PEER_PROPERTY));
                let peer = match peer {
                    Ok(Some(v)) if !v.is_empty() => v,
                    Ok(_) | Err(HostError::NotFound) => {
                        let shared = want.then(|| key::UNSTAMPED_VALUE.to_owned());
                        return (KeyRead::Unstamped(fp.byte(b'u').finish()), shared);
                    }
                    Err(e) => return (KeyRead::Failed(*e), None),
                };
                let client = if *trusted_hops == 0 {
                    peer.as_slice()
                } else {
                    let xff = props.forwarded_for.get_or_insert_with(|| match head {
                        Some(Ok(h)) if !h.headers.is_empty() => Ok(h
                            .headers
                            .values(key::FORWARDED_FOR)
                            .map(<[u8]>::to_vec)
                            .collect()),
                        _ => match host.header_values(HeaderMap::Request, key::FORWARDED_FOR) {
                            Err(HostError::NotFound) => Ok(Vec::new()),
                            other => other,
                        },
                    });
                    match xff {
                        Ok(values) => key::client_behind(peer, values, *trusted_hops),
                        Err(e) => return (KeyRead::Failed(*e), None),
                    }
                };
                match PeerAddress::parse(client) {
                    Some(addr) => (
                        KeyRead::Fingerprint(addr.hash_into(fp.byte(b'a')).finish()),
                        want.then(|| addr.to_string()),
                    ),
                    None => (KeyRead::Missing, None),
                }
            }
            KeySource::Principal => {
                // The peer certificate's SAN, read as the intentions filter reads it.
                let principal = props
                    .principal
                    .get_or_insert_with(|| host.peer_uri_san_with(|san| san.map(<[u8]>::to_vec)));
                match principal {
                    Ok(Some(v)) => match key::principal(v) {
                        Some(p) => (
                            KeyRead::Fingerprint(fp.byte(b'p').bytes(p).finish()),
                            text(p),
                        ),
                        None => (KeyRead::Missing, None),
                    },
                    Ok(None) | Err(HostError::NotFound) => (KeyRead::Missing, None),
                    Err(e) => (KeyRead::Failed(*e), None),
                }
            }
        }
    }
}

fn header_fingerprint(fp: Fingerprint, value: &[u8]) -> u64 {
    fp.byte(b'h').bytes(value).finish()
}

#[cfg(test)]
mod tests;
