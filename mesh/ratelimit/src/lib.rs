//! Mesh ratelimit logic, independent of proxy-wasm (skeleton: filled in by the ratelimit issue).
#![forbid(unsafe_code)]
