//! Fuzz target bodies: each takes untrusted bytes and asserts the properties its parser promises.
//!
//! A broken property is a panic (that is how libFuzzer and the corpus replay see it), so this
//! crate allows the panicking lints the mesh crates deny. `cargo fuzz` (nightly, `fuzz/`) drives
//! these functions; `tests/corpus.rs` replays every committed corpus on stable.
#![forbid(unsafe_code)]
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

mod config;
mod global;
mod input;
mod keys;
mod matchers;
mod parsers;
mod path;
mod request;
mod telemetry;

pub use input::Input;

/// One target: its name (the cargo-fuzz binary and the corpus folder) and its body.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target; `fuzz/fuzz_targets/<name>.rs` exists for each (the corpus test checks it).
pub const TARGETS: &[Target] = &[
    Target {
        name: "config_canary",
        run: config::canary,
    },
    Target {
        name: "config_ratelimit",
        run: config::ratelimit,
    },
    Target {
        name: "config_intentions",
        run: config::intentions,
    },
    Target {
        name: "config_telemetry",
        run: config::telemetry,
    },
    Target {
        name: "config_suite",
        run: config::suite,
    },
    Target {
        name: "path_normalize",
        run: path::normalize,
    },
    Target {
        name: "spiffe",
        run: parsers::spiffe,
    },
    Target {
        name: "matchers",
        run: matchers::matchers,
    },
    Target {
        name: "cookie",
        run: parsers::cookie,
    },
    Target {
        name: "traceparent",
        run: parsers::traceparent,
    },
    Target {
        name: "peer_metadata",
        run: parsers::peer_metadata,
    },
    Target {
        name: "authority",
        run: parsers::authority,
    },
    Target {
        name: "ratelimit_key",
        run: keys::ratelimit_key,
    },
    Target {
        name: "header_pairs",
        run: parsers::header_pairs,
    },
    Target {
        name: "prometheus_labels",
        run: telemetry::labels,
    },
    Target {
        name: "access_log",
        run: telemetry::access_log,
    },
    Target {
        name: "suite_request",
        run: request::suite_request,
    },
    Target {
        name: "rls_response",
        run: global::rls_response,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
