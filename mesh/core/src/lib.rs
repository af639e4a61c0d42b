//! What every mesh filter shares: config errors with field paths, durations, keyed hashing, request matchers and SPIFFE identities.
#![forbid(unsafe_code)]

pub mod capability;
pub mod config;
pub mod decision;
pub mod duration;
pub mod hash;
pub mod matchers;
pub mod request;
pub mod spiffe;

pub use capability::{Capability, CapabilityRoot, SetupError};
pub use config::{parse_json, ConfigError};
pub use duration::parse_duration;
pub use hash::{SipHasher13, SipHasher24, SipKey};
pub use matchers::{HeaderMatch, HeaderMatchSpec, HttpMatch, HttpMatchSpec, PathMatch};
pub use request::MatchInput;
pub use spiffe::{SpiffeId, SpiffeKind, SpiffeRef};
