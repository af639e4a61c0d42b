//! Where each capability publishes its verdict on a request, so telemetry and access logs can
//! read it ([`publish`] and [`read`] are sdk-shim's; the keys are the capabilities' own).
//! Every key is one segment, `mesh.<capability>`.

pub use sdk_shim::decision::{publish, read, text, with};

/// Canary: the chosen subset, e.g. `v2`.
pub const CANARY: &str = "mesh.canary";
/// Rate limit: `allowed`, `limited:<rule>` or `shadow_limited:<rule>`.
pub const RATELIMIT: &str = "mesh.ratelimit";
/// Intentions: `allow:<name>`, `deny:<name>` or `audit_deny:<name>`, where `<name>` is an
/// intention's name, `default` (the default action decided), `invalid_path` (refused with 400)
/// or `error` (the peer identity could not be read; fails closed).
pub const INTENTIONS: &str = "mesh.intentions";
