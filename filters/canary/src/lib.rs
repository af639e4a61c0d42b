//! The canary proxy-wasm module: exports `mesh-canary`'s capability root.

pub use mesh_canary::filter::{CanaryCapability, CanaryConfig, CanaryFilter, CanaryRoot, DECISION};

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(mesh_canary::filter::CanaryRoot);
