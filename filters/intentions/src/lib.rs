//! The intentions proxy-wasm filter: thin glue over mesh-intentions (skeleton: filled in by the intentions issue).
