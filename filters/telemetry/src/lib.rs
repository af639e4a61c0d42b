//! The telemetry proxy-wasm module: exports `mesh-telemetry`'s capability root.

pub use mesh_telemetry::filter::{TelemetryCapability, TelemetryFilter, TelemetryRoot};

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(mesh_telemetry::filter::TelemetryRoot);
