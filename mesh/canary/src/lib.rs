//! Mesh canary logic, independent of proxy-wasm (skeleton: filled in by the canary issue).
#![forbid(unsafe_code)]
