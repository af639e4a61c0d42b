//! `mfctl`: checks the mesh filters' configurations wherever they sit (plugin configs, Envoy
//! bootstraps and ECDS files, Istio, Envoy Gateway and Consul resources) with the filters'
//! own validation code, applies ECDS files atomically, and prints the JSON Schemas.
#![forbid(unsafe_code)]

pub mod apply;
pub mod check;
pub mod find;
pub mod rollout;
pub mod schema;
