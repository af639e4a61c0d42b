//! Canary routing for the mesh: weighted splits, overrides, sticky users, the rollback guard
//! and the capability's filter ([`filter`]), all against sdk-shim's host traits.
#![forbid(unsafe_code)]

pub mod canary;
pub mod config;
pub mod cookie;
pub mod filter;
pub mod guard;
pub mod hash;
pub mod host;
pub mod route;
pub mod split;

pub use canary::{Canary, Guard, Service};
pub use config::CanarySpec;
pub use filter::{CanaryCapability, CanaryConfig, CanaryFilter, CanaryRoot, DECISION};
pub use guard::Observation;
pub use route::{Decision, Reason};
