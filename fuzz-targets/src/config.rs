//! Each capability's configuration, parsed, compiled and bound from untrusted bytes.
//!
//! Properties: a refused configuration yields one error line (no line break or other control
//! character, so the log line Envoy prints is the whole story) whose reason is non-empty,
//! lowercase and without a trailing period; compiling is deterministic; a configuration that
//! compiles also binds on a healthy host (the same verdict `on_configure` gives), and a
//! request through the configured filter never panics.

use mesh_canary::CanaryCapability;
use mesh_core::{Capability, CapabilityRoot, ConfigError};
use mesh_intentions::Intentions;
use mesh_ratelimit::RateLimit;
use mesh_telemetry::TelemetryCapability;
use sdk_shim::testing::{FakeHost, FakeProxy};
use sdk_shim::{LogLevel, RootFilter};

/// Checks the standards every configuration error line must meet.
pub fn check_error_line(line: &str) {
    assert!(
        !line.chars().any(char::is_control),
        "error line has a control character: {line:?}"
    );
    assert!(
        !line.ends_with('.'),
        "error line ends with a period: {line:?}"
    );
}

fn check_error(e: &ConfigError) {
    assert!(!e.reason.is_empty(), "empty reason for {:?}", e.field);
    assert!(
        !e.reason.starts_with(|c: char| c.is_ascii_uppercase()),
        "reason not lowercase: {e:?}"
    );
    check_error_line(&e.to_string());
}

fn capability<C: Capability>(data: &[u8]) {
    let first = C::compile(data);
    let second = C::compile(data);
    match (&first, &second) {
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "compile is not deterministic");
            check_error(a);
        }
        (Ok(_), Ok(_)) => {}
        _ => panic!("compile is not deterministic"),
    }
    let proxy = FakeProxy::new();
    let host = proxy.host();
    let mut root = CapabilityRoot::<C>::default();
    let ok = root.on_configure(&host, data);
    assert_eq!(
        ok,
        first.is_ok(),
        "on_configure disagrees with compile: {:?}",
        host.logs()
    );
    let errors = host.logs_at(LogLevel::Error);
    if ok {
        let req = proxy
            .get("reviews", "/api/x")
            .request_header("x-api-key", "k")
            .request_header("x-user-id", "u");
        FakeProxy::exchange(&root, &req, 200);
    } else {
        assert_eq!(errors.len(), 1, "one error line expected: {errors:?}");
        let line = &errors[0];
        check_error_line(line);
        assert!(
            line.starts_with(&format!("{}: invalid configuration: ", C::NAME)),
            "{line:?}"
        );
    }
}

pub fn canary(data: &[u8]) {
    capability::<CanaryCapability>(data);
}

pub fn ratelimit(data: &[u8]) {
    capability::<RateLimit>(data);
}

pub fn intentions(data: &[u8]) {
    capability::<Intentions>(data);
}

pub fn telemetry(data: &[u8]) {
    capability::<TelemetryCapability>(data);
}

/// The suite's configuration: every refusal is logged on lines without control characters
/// and ends in one `suite: invalid configuration:` line.
pub fn suite(data: &[u8]) {
    let proxy = FakeProxy::new();
    let host: FakeHost = proxy.host();
    let mut root = filter_suite::SuiteRoot::default();
    let ok = root.on_configure(&host, data);
    let errors = host.logs_at(LogLevel::Error);
    if ok {
        assert!(errors.is_empty(), "accepted with errors: {errors:?}");
        let req = proxy.get("reviews", "/");
        FakeProxy::exchange(&root, &req, 200);
    } else {
        assert!(!errors.is_empty(), "refused without a line");
        for line in &errors {
            check_error_line(line);
        }
        let last = errors.last().map(String::as_str).unwrap_or_default();
        assert!(
            last.starts_with("suite: invalid configuration: "),
            "{errors:?}"
        );
    }
}
