//! The ratelimit proxy-wasm module: exports `mesh-ratelimit`'s capability root.

pub use mesh_ratelimit::filter::{RateLimit, RateLimitFilter, RateLimitRoot, DECISION_KEY};

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(mesh_ratelimit::filter::RateLimitRoot);
