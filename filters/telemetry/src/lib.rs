//! The telemetry proxy-wasm filter: thin glue over mesh-telemetry (skeleton: filled in by the telemetry issue).
