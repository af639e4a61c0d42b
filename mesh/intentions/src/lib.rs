//! Consul-style service intentions: identity from the peer certificate, Consul's precedence, L4/L7 permissions and a path normalization that does not trust the proxy.
//!
//! # Configuration
//!
//! ```json
//! { "trust_domain": "mesh.local", "default_action": "deny", "destination": "reviews",
//!   "mode": "enforce",
//!   "intentions": [
//!     {"source": "frontend", "action": "allow"},
//!     {"source": "legacy/*", "action": "deny"},
//!     {"name": "web-api", "source": "web", "permissions": [
//!         {"action": "allow", "http": {"path_prefix": "/api/", "methods": ["GET", "HEAD"]}} ]} ] }
//! ```
//!
//! Defaults (an empty configuration): `trust_domain` `cluster.local`, `default_action` `deny`,
//! `mode` `enforce`, no intentions, no `destination` — so everything is denied.
//!
//! - `destination` is this workload's service, `NAME` (namespace `default`) or `NS/NAME`.
//!   An intention's own `destination` defaults to it; an intention naming another service is
//!   validated and then ignored, so one configuration can be shared by several services. When
//!   `destination` is absent, intentions may only leave theirs out or use `*`.
//! - `source` and an intention's `destination` are `NAME`, `NS/NAME`, `NS/*` or `*`. A wildcard
//!   never matches an anonymous peer. `*/NAME` does not exist (as in Consul).
//! - Each intention has exactly one of `action` (`allow` / `deny`: L4) or `permissions` (L7):
//!   a non-empty ordered list of `{"action", "http": HttpMatchSpec}` (see `mesh_core`), where
//!   the first matching permission decides and a request matching none gets `default_action`.
//!   As in Consul, permissions are refused on a wildcard destination (`*` or `NS/*`).
//! - `name` (optional, `[A-Za-z0-9_.-]`, at most 64 bytes) names the intention in stats, logs
//!   and decisions; the default is derived from the pair: `NS.NAME`, `NS.any`, `any`, followed
//!   by `.to.NS.NAME` (`.to.NS.any`, `.to.any`) when the intention names its destination.
//! - Refused: unknown fields, both or neither of `action` and `permissions`, unparsable names,
//!   two intentions for the same source/destination pair (after defaults are applied), two
//!   intentions with one name, regexes that do not compile or are too large, methods that are
//!   not uppercase tokens, `path_exact` / `path_prefix` not already in normalized form (they
//!   could never match), and header matchers on `:path` or `:method` (they would see the raw
//!   values; use the path and `methods` fields).
//!
//! # Identity
//!
//! Only the verified peer certificate establishes identity: Envoy's
//! `connection.uri_san_peer_certificate` (the first URI SAN of the certificate the peer
//! presented on this connection, so `connection.mtls` is true whenever it exists; the flag is
//! read only to log why a peer without a SAN is anonymous) must be a SPIFFE ID in
//! Istio form `spiffe://TD/ns/NS/sa/NAME` or Consul form `spiffe://TD/ns/NS/dc/DC/svc/NAME`
//! whose trust domain is `trust_domain`. Anything else is an anonymous peer: no certificate, no
//! URI SAN (a SPIFFE ID in a DNS SAN does not count), a URI that is not a workload SPIFFE ID,
//! another trust domain, or a Consul ID in an admin partition other than `default` (intentions
//! here name no partition). Headers such as `x-forwarded-client-cert` are never read. The
//! listener must require and verify client certificates against the mesh CA: the property says
//! which certificate was presented, the listener's validation says it can be trusted.
//!
//! # Precedence
//!
//! Consul's nine-level table, from the most specific pair:
//!
//! | level | source namespace | source name | destination namespace | destination name |
//! |-------|------------------|-------------|-----------------------|------------------|
//! | 9     | exact            | exact       | exact                 | exact            |
//! | 8     | exact            | `*`         | exact                 | exact            |
//! | 7     | `*`              | `*`         | exact                 | exact            |
//! | 6     | exact            | exact       | exact                 | `*`              |
//! | 5     | exact            | `*`         | exact                 | `*`              |
//! | 4     | `*`              | `*`         | exact                 | `*`              |
//! | 3     | exact            | exact       | `*`                   | `*`              |
//! | 2     | exact            | `*`         | `*`                   | `*`              |
//! | 1     | `*`              | `*`         | `*`                   | `*`              |
//!
//! Only intentions at the highest matching level decide; if several do, deny wins (an L7
//! intention counts as deny when its outcome for the request is deny). No match: `default_action`.
//!
//! # Paths
//!
//! Matching never depends on the proxy's own normalization settings. From `:path`:
//! 1. Everything from the first `?` or `#` is removed.
//! 2. The rest must start with `/` (origin form); otherwise the request is refused.
//! 3. Refused: raw bytes below 0x21 (controls, NUL, space), 0x7F, 0x80 and above (raw non-ASCII),
//!    `\`, and `;` raw or encoded as `%3B`: servers disagree on path parameters (Tomcat reads
//!    `/x/..;/admin` as `/admin`, some frameworks strip `;...` after decoding), so no single
//!    reading is safe, and a deny must not be evaded by `/admin;x` nor an allow stretched by it.
//! 4. Percent-escapes: `%` must be followed by two hex digits. An escape of an unreserved
//!    character (`A-Z a-z 0-9 - . _ ~`) is decoded, exactly once; an escape that would
//!    decode to another escape is double encoding and refused (below). A `.` or `..` segment
//!    spelled with an escaped dot (`%2e%2e`, `.%2E`, `%2e`) is refused: servers that decode
//!    first resolve it, servers that resolve first (or route on the raw path) do not, so
//!    `/admin/%2e%2e/x` is `/x` to some and under `/admin` to others.
//!    Escapes of `/`, `\` or `;` (`%2F`, `%5C`, `%3B`), of control bytes (`%00`-`%1F`, `%7F`) are refused,
//!    as are escapes of non-ASCII bytes that do not decode to valid UTF-8 (overlong forms such
//!    as `%C0%AF`), and double encoding: `%25` followed by two hex digits (`%252F`), which a
//!    server that decodes twice would read as another character. Every other escape stays
//!    encoded, with uppercase hex digits (`%25` alone is a literal `%`).
//! 5. Repeated slashes are merged and `.` / `..` segments resolved (`..` never climbs above
//!    `/`); a trailing slash is kept. A path with both an empty segment (`//`) and a `..`
//!    segment is refused, since servers disagree on whether `/a//../b` means `/a/b` or `/b`.
//!
//! The result is idempotent. Refused requests get 400 before any intention is tried. Paths are
//! case-sensitive (use a `(?i)` regex for a case-insensitive upstream).
//!
//! # Methods, and why denies are lenient
//!
//! Methods are case-sensitive: an allow for `GET` does not match `get`. Allows are matched
//! strictly; a deny permission is tried on every reading an upstream might make, so that
//! nothing slips past it:
//! - its `methods` also catch any case variant (`delete` is denied by a deny on `DELETE`);
//! - it is also tried on the path without its trailing slash (many servers serve `/x/` as `/x`);
//! - its header matchers also see each comma-separated element of a value (`x-tenant: guest,
//!   admin` is denied by a deny on `x-tenant` exact `admin`, as two `x-tenant` lines are),
//!   and a value that is not UTF-8 with invalid bytes replaced by U+FFFD (a regex never
//!   matches raw bytes, so `curl\xff` is denied by a deny on `curl.*`).
//!
//! # Audit mode
//!
//! `mode: audit` evaluates, counts and logs every decision, and lets would-be denials (and
//! refused paths) through; the decision reads `audit_deny:<name>`. The policy decides alike in
//! both modes; [`filter`], the capability in the proxy, carries audit mode out.
#![forbid(unsafe_code)]

pub mod config;
pub mod filter;
pub mod identity;
pub mod path;
pub mod pattern;
pub mod policy;

pub use config::IntentionsConfig;
pub use filter::{Intentions, IntentionsFilter, IntentionsRoot, DECISION_KEY};
pub use identity::{Anonymous, Peer};
pub use path::{normalize_path, PathError};
pub use pattern::{precedence, NamePattern, ServiceName, ServiceRef};
pub use policy::{Action, DecidedBy, Decision, Intention, Mode, Permission, Policy, Rule};
