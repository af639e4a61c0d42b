//! Mesh intentions logic, independent of proxy-wasm (skeleton: filled in by the intentions issue).
#![forbid(unsafe_code)]
