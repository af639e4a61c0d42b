//! The ratelimit proxy-wasm filter: thin glue over mesh-ratelimit (skeleton: filled in by the ratelimit issue).
