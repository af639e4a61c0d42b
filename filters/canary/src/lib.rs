//! The canary proxy-wasm filter: thin glue over mesh-canary (skeleton: filled in by the canary issue).
