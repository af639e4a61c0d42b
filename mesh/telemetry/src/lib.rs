//! Mesh telemetry logic, independent of proxy-wasm (skeleton: filled in by the telemetry issue).
#![forbid(unsafe_code)]
