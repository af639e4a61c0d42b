//! Capability traits between mesh filters and their host: the seam other hosts plug into.
//!
//! Filter code is written against these traits only. A host implements the traits it can
//! offer; by lifecycle, [`ConfigHost`] bundles what a configuration needs and [`StreamHost`]
//! what a filter needs during a request. Feature `proxy-wasm` provides [`proxy::ProxyWasmHost`], the one
//! adapter over the proxy-wasm SDK; feature `testing` provides [`testing::FakeHost`].
//!
//! Every fallible call returns [`HostError`]; no method panics.

pub mod batch;
pub mod compose;
pub mod decision;
pub mod entropy;
mod error;
mod filter;
pub mod headers;
mod host;
pub mod namespace;

pub use batch::{PropertySet, PropertyValues};
pub use error::HostError;
pub use filter::{Action, Callbacks, HttpFilter, RootFilter};
pub use headers::{utf8_lossy, HeaderSnapshot, HeaderValue};
pub use host::*;
pub use namespace::Namespace;

#[cfg(feature = "proxy-wasm")]
pub mod proxy;
#[cfg(feature = "testing")]
pub mod testing;
