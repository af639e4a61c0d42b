//! Canary routing logic independent of any proxy: weighted splits, overrides, sticky users and the rollback guard.
#![forbid(unsafe_code)]

pub mod canary;
pub mod config;
pub mod cookie;
pub mod guard;
pub mod hash;
pub mod host;
pub mod route;
pub mod split;

pub use canary::{Canary, Guard, Service};
pub use config::CanarySpec;
pub use guard::Observation;
pub use route::{Decision, Reason};
