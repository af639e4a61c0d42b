//! The intentions proxy-wasm module: exports `mesh-intentions`' capability root.

pub use mesh_intentions::filter::{
    Compiled, Intentions, IntentionsFilter, IntentionsRoot, Outcome, Verdict, DECISION_KEY,
};

// The suite links this crate as a library and exports its own entry point instead.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
sdk_shim::export_root_filter!(mesh_intentions::filter::IntentionsRoot);
