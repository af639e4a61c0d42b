//! Rate limiting for the mesh: GCRA buckets in a bounded shared table, exact across workers.
//!
//! Configuration (JSON, unknown fields rejected; `{}` or empty = no rules, nothing limited):
//!
//! ```json
//! { "rules": [ { "name": "api", "match": {"path_prefix": "/api", "methods": ["GET"]},
//!       "key": {"header": "x-api-key"},
//!       "limit": {"requests": 100, "per": "1s", "burst": 100} } ],
//!   "max_keys": 10000, "mode": "enforce", "failure_mode": "deny", "headers_on_allowed": false }
//! ```
//!
//! - `rules` are tried in order; `match` (optional) uses the shared matchers of `mesh_core`.
//!   `name`: 1-64 of `[A-Za-z0-9_-]`, unique (it names metrics and the policy in headers).
//! - `key`: `{"header": NAME}` (first value), `{"source": "address"}` (the TCP peer as the
//!   listener stamped it, or with `"trusted_hops": N` the client N trusted proxies back),
//!   `{"source": "principal"}` (peer SPIFFE ID), or absent for one bucket per rule. A request
//!   lacking the key's input is not limited by that rule (see [`key`]).
//! - `limit`: `requests` (>= 1) per `per` (`Nms`, `Ns`, `Nm`, `Nh`), `burst` (>= 1, default
//!   `requests`): at most `burst + elapsed * requests / per` admitted over any span.
//! - `max_keys` (default 10000, 1..=1000000): slots in the bucket table (see [`table`]).
//! - `mode`: `enforce` (429) or `shadow` (count and log only).
//! - `failure_mode`: `deny` (default) or `allow`, when a bucket cannot be read or updated.
//! - `headers_on_allowed`: add `ratelimit` and `ratelimit-policy` to admitted responses.
//! - A rule's `global` block (see [`global`]) also asks a rate limit service after the local
//!   bucket admits; with it, `limit` is optional (the service alone counts).
#![forbid(unsafe_code)]

pub mod config;
pub mod filter;
pub mod gcra;
pub mod global;
pub mod headers;
pub mod key;
pub mod limiter;
pub mod select;
pub mod table;

pub use config::{Config, FailureMode, KeySource, Mode, Rule};
pub use filter::{RateLimit, RateLimitFilter, RateLimitRoot, DECISION_KEY};
pub use gcra::{Limit, Outcome};
pub use headers::LimitedReply;
pub use limiter::{Decision, GlobalCheck, GlobalFailure, GlobalVerdict, Limiter, Verdict};
