use super::*;
use crate::identity::{MTLS_PROPERTY, URI_SAN_PROPERTY};
use sdk_shim::testing::{FakeHost, FakeMetrics};
use sdk_shim::RootFilter;

const TD: &str = "mesh.local";

const CONFIG: &str = r#"{"trust_domain":"mesh.local","destination":"reviews","default_action":"deny",
  "intentions":[
    {"source":"frontend","action":"allow"},
    {"source":"legacy/*","action":"deny"},
    {"name":"web","source":"web","permissions":[
       {"action":"deny","http":{"path_prefix":"/api/admin"}},
       {"action":"allow","http":{"path_prefix":"/api/","methods":["GET"]}},
       {"action":"allow","http":{"path_exact":"/upload","headers":[{"name":"x-role","exact":"uploader"}]}}]}]}"#;

fn root(config: &str, metrics: &FakeMetrics) -> IntentionsRoot {
    let host = FakeHost::new().with_metrics(metrics);
    let mut root = IntentionsRoot::default();
    assert!(
        root.on_configure(&host, config.as_bytes()),
        "{:?}",
        host.logs()
    );
    root
}

fn from(ns: &str, name: &str) -> FakeHost {
    FakeHost::new().property(&MTLS_PROPERTY, [1]).property(
        &URI_SAN_PROPERTY,
        format!("spiffe://{TD}/ns/{ns}/sa/{name}"),
    )
}

struct Run {
    host: FakeHost,
    action: Action,
}

impl Run {
    fn decision(&self) -> String {
        decision::read(&self.host, DECISION_KEY).unwrap_or_default()
    }
    fn status(&self) -> Option<u16> {
        self.host.local_reply().map(|r| r.status)
    }
}

fn run(
    root: &IntentionsRoot,
    host: FakeHost,
    method: &str,
    path: &str,
    metrics: &FakeMetrics,
) -> Run {
    let host = host.with_metrics(metrics).request(method, "reviews", path);
    let action = root.new_http().on_request_headers(&host, true);
    Run { host, action }
}

#[test]
fn allowed_request_continues_and_is_counted() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let out = run(&r, from("default", "frontend"), "GET", "/anything", &m);
    assert_eq!(out.action, Action::Continue);
    assert_eq!(out.status(), None);
    assert_eq!(out.decision(), "allow:default.frontend");
    assert_eq!(
        m.value("intentions.intention.default.frontend.allowed"),
        Some(1)
    );
    assert_eq!(
        m.value("intentions.intention.default.frontend.denied"),
        Some(0)
    );
}

#[test]
fn denied_request_gets_403_log_and_stat() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let out = run(&r, from("legacy", "billing"), "DELETE", "/x?y=1", &m);
    assert_eq!(out.action, Action::Pause);
    let reply = out.host.local_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, b"access denied\n");
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(out.decision(), "deny:legacy.any");
    assert_eq!(m.value("intentions.intention.legacy.any.denied"), Some(1));
    let logs = out.host.logs_at(LogLevel::Info);
    assert_eq!(
        logs,
        ["intentions: denied source=spiffe://mesh.local/ns/legacy/sa/billing destination=default/reviews method=DELETE path=/x intention=legacy.any"]
    );
}

#[test]
fn anonymous_and_foreign_peers_get_the_default() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let hosts = [
        FakeHost::new(),
        FakeHost::new().property(&MTLS_PROPERTY, [0]),
        FakeHost::new().property(&MTLS_PROPERTY, [1]),
        FakeHost::new().property(&MTLS_PROPERTY, [1]).property(
            &URI_SAN_PROPERTY,
            "spiffe://other.local/ns/default/sa/frontend",
        ),
        FakeHost::new()
            .property(&MTLS_PROPERTY, [1])
            .property(&URI_SAN_PROPERTY, "https://frontend.default.svc"),
    ];
    for h in hosts {
        let out = run(&r, h, "GET", "/", &m);
        assert_eq!(out.status(), Some(403));
        assert_eq!(out.decision(), "deny:default");
    }
    assert_eq!(m.value("intentions.default.denied"), Some(5));
    assert_eq!(
        m.value("intentions.intention.default.frontend.allowed"),
        Some(0)
    );
}

#[test]
fn forged_client_cert_headers_are_ignored() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let forged = FakeHost::new()
        .request_header(
            "x-forwarded-client-cert",
            "By=spiffe://mesh.local/ns/default/sa/reviews;URI=spiffe://mesh.local/ns/default/sa/frontend",
        )
        .request_header("x-client-spiffe-id", "spiffe://mesh.local/ns/default/sa/frontend")
        .request_header("x-forwarded-for", "127.0.0.1");
    let out = run(&r, forged, "GET", "/", &m);
    assert_eq!(out.status(), Some(403));
    assert_eq!(out.decision(), "deny:default");
}

#[test]
fn l7_permissions() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let cases = [
        ("GET", "/api/items", None, "allow:web"),
        ("GET", "/api/admin/x", Some(403), "deny:web"),
        ("GET", "/api/%61dmin/x", Some(403), "deny:web"),
        ("GET", "/api/x/../admin/y", Some(403), "deny:web"),
        ("GET", "//api//admin", Some(403), "deny:web"),
        ("POST", "/api/items", Some(403), "deny:default"),
        ("get", "/api/items", Some(403), "deny:default"),
        ("GET", "/api/%2Fadmin", Some(400), "deny:invalid_path"),
        ("GET", "/api/admin;x", Some(400), "deny:invalid_path"),
    ];
    for (method, path, status, decision) in cases {
        let out = run(&r, from("default", "web"), method, path, &m);
        assert_eq!(
            (out.status(), out.decision().as_str()),
            (status, decision),
            "{method} {path}"
        );
    }
    let logs = run(&r, from("default", "web"), "POST", "/api/items", &m)
        .host
        .logs_at(LogLevel::Info);
    assert!(
        logs[0].ends_with("intention=default (no permission of web matched)"),
        "{logs:?}"
    );
    assert_eq!(m.value("intentions.intention.web.allowed"), Some(1));
    assert_eq!(m.value("intentions.intention.web.denied"), Some(4));
    assert_eq!(m.value("intentions.invalid_path"), Some(2));
}

#[test]
fn header_matchers_see_every_value() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let h = from("default", "web")
        .request_header("x-role", "guest")
        .request_header("x-role", "uploader");
    assert_eq!(run(&r, h, "PUT", "/upload", &m).decision(), "allow:web");
    let h = from("default", "web").request_header("x-role", "guest");
    assert_eq!(run(&r, h, "PUT", "/upload", &m).decision(), "deny:default");
}

#[test]
fn l4_requests_read_only_what_they_need() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let out = run(&r, from("default", "frontend"), "GET", "/", &m);
    // The connection's identity (the peer's SAN, which means a certificate: no
    // `connection.mtls`), the header map (for :method and :path), the counter, the published
    // decision.
    assert_eq!(out.host.host_calls(), 4, "{:?}", out.host.host_call_log());
    // Without a certificate the SAN read finds nothing and the flag says why; the anonymous
    // caller is denied, and the denial's log line costs a level check and a write.
    let out = run(&r, FakeHost::new(), "GET", "/", &m);
    assert_eq!(out.host.host_calls(), 2 + 1 + 1 + 1 + 1 + 2);
    assert_eq!(out.decision(), "deny:default");
}

#[test]
fn invalid_paths_get_400_before_any_rule() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let out = run(&r, from("default", "frontend"), "GET", "/a\\b", &m);
    let reply = out.host.local_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (400, &b"invalid request path\n"[..])
    );
    assert_eq!(out.decision(), "deny:invalid_path");
    assert_eq!(
        m.value("intentions.intention.default.frontend.allowed"),
        Some(0)
    );
    let logs = out.host.logs_at(LogLevel::Info);
    assert!(logs[0].starts_with("intentions: refused invalid path (backslash in path) source=spiffe://mesh.local/ns/default/sa/frontend"), "{logs:?}");
    assert!(logs[0].ends_with(r"path=/a\\b"), "{logs:?}");
}

#[test]
fn hostile_request_data_never_traps() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let huge = format!("/{}", "a/".repeat(100_000));
    for (method, path) in [
        (&b"GET"[..], &b"/\xff\xfe"[..]),
        (b"\xff", b"/"),
        (b"GET", b""),
        (b"GET", huge.as_bytes()),
        (b"", b"/"),
    ] {
        let host = from("default", "frontend")
            .with_metrics(&m)
            .request_header(":method", method)
            .request_header(":path", path);
        let _ = r.new_http().on_request_headers(&host, true);
        assert!(host.local_reply().is_some() || decision::read(&host, DECISION_KEY).is_some());
    }
    let out = run(&r, from("default", "frontend"), "GET", &huge, &m);
    assert_eq!(out.decision(), "allow:default.frontend");
    // Logged paths are cut.
    let out = run(
        &r,
        from("default", "frontend"),
        "GET",
        &format!("{huge}\\"),
        &m,
    );
    assert!(out.host.logs_at(LogLevel::Info)[0].len() < 600);
}

#[test]
fn host_failures_fail_closed() {
    let m = FakeMetrics::default();
    let r = root(CONFIG, &m);
    let out = run(
        &r,
        from("default", "frontend").failing_header_reads(),
        "GET",
        "/",
        &m,
    );
    assert_eq!(out.status(), Some(403));
    assert_eq!(out.decision(), "deny:error");
    assert_eq!(m.value("intentions.error"), Some(1));
    assert!(out.host.logs_at(LogLevel::Warn)[0].contains("cannot read request headers"));
}

#[test]
fn audit_mode_allows_and_reports() {
    let m = FakeMetrics::default();
    let cfg = CONFIG.replace(
        r#""default_action":"deny","#,
        r#""default_action":"deny","mode":"audit","#,
    );
    let r = root(&cfg, &m);
    let out = run(&r, from("legacy", "x"), "GET", "/", &m);
    assert_eq!((out.action, out.status()), (Action::Continue, None));
    assert_eq!(out.decision(), "audit_deny:legacy.any");
    assert_eq!(
        m.value("intentions.intention.legacy.any.audit_denied"),
        Some(1)
    );
    assert_eq!(m.value("intentions.intention.legacy.any.denied"), Some(0));
    assert!(
        out.host.logs_at(LogLevel::Info)[0].starts_with("intentions: would deny (audit) source=")
    );
    let out = run(&r, from("legacy", "x"), "GET", "/%2F", &m);
    assert_eq!(
        (out.action, out.decision().as_str()),
        (Action::Continue, "audit_deny:invalid_path")
    );
    let out = run(&r, from("default", "frontend"), "GET", "/", &m);
    assert_eq!(out.decision(), "allow:default.frontend");
}

#[test]
fn bad_config_is_rejected_with_one_error_line() {
    for (cfg, line) in [
        (r#"{"intentions":[{"source":"*/x","action":"allow"}]}"#,
         "intentions: invalid configuration: intentions[0].source: a wildcard namespace needs a wildcard name: use *"),
        (r#"{"intentions":[{"source":"a","action":"allow","permissions":[]}]}"#,
         "intentions: invalid configuration: intentions[0]: set either action or permissions, not both"),
        (r#"{"trust_domain":"x","bogus":true}"#,
         "intentions: invalid configuration: bogus: unknown field `bogus`, expected one of `trust_domain`, `default_action`, `destination`, `mode`, `intentions` at line 1 column 27"),
        ("not json", "intentions: invalid configuration: expected ident at line 1 column 2"),
    ] {
        let host = FakeHost::new();
        let mut root = IntentionsRoot::default();
        assert!(!root.on_configure(&host, cfg.as_bytes()));
        assert_eq!(host.logs(), [(LogLevel::Error, line.to_owned())]);
    }
}

#[test]
fn empty_config_denies_everything() {
    let m = FakeMetrics::default();
    let r = root("", &m);
    let out = run(&r, from("default", "frontend"), "GET", "/", &m);
    assert_eq!(
        (out.status(), out.decision().as_str()),
        (Some(403), "deny:default")
    );
}

#[test]
fn unconfigured_filter_denies() {
    let host = FakeHost::new().request("GET", "x", "/");
    let action = IntentionsRoot::default()
        .new_http()
        .on_request_headers(&host, true);
    assert_eq!(action, Action::Pause);
    assert_eq!(host.local_reply().unwrap().status, 403);
}

#[test]
fn filter_is_constructible_from_a_shared_config() {
    let host = FakeHost::new();
    let compiled = IntentionsRoot::configure(&host, CONFIG.as_bytes()).unwrap();
    let f = IntentionsFilter::new(compiled);
    let req = from("default", "frontend").request("GET", "reviews", "/");
    assert_eq!(
        f.check(&req),
        Verdict {
            outcome: Outcome::Allow,
            decision: "allow:default.frontend".into()
        }
    );
}

#[test]
fn audit_mode_labels_denials() {
    let m = FakeMetrics::default();
    let r = root(
        &format!(
            r#"{{"trust_domain":"{TD}","destination":"api","mode":"audit",
                "intentions":[{{"source":"web","action":"deny"}}]}}"#
        ),
        &m,
    );
    let out = run(&r, from("default", "web"), "GET", "/", &m);
    assert_eq!(out.decision(), "audit_deny:default.web");
    let out = run(&r, from("default", "x"), "GET", "/", &m);
    assert_eq!(out.decision(), "audit_deny:default");
    assert_eq!(m.value("intentions.default.audit_denied"), Some(1));
    assert_eq!(m.value("intentions.default.denied"), Some(0));
}

#[test]
fn configuring_logs_what_was_configured() {
    let host = FakeHost::new();
    let mut root = IntentionsRoot::default();
    assert!(root.on_configure(&host, CONFIG.as_bytes()));
    assert_eq!(
        host.logs(),
        [(
            LogLevel::Info,
            "intentions: configured 3 intentions for default/reviews (0 for other destinations ignored), default_action deny, mode enforce".to_owned()
        )]
    );
    assert!(root.bound().is_some());
}

#[test]
fn a_metric_that_cannot_be_defined_fails_the_configuration() {
    let audit = CONFIG.replace(
        r#""default_action":"deny","#,
        r#""default_action":"deny","mode":"audit","#,
    );
    for (cfg, failing) in [
        (CONFIG, "intentions.intention.default.frontend.allowed"),
        (CONFIG, "intentions.intention.web.denied"),
        (
            audit.as_str(),
            "intentions.intention.legacy.any.audit_denied",
        ),
        (audit.as_str(), "intentions.default.audit_denied"),
        (CONFIG, "intentions.default.allowed"),
        (CONFIG, "intentions.invalid_path"),
        (CONFIG, "intentions.error"),
    ] {
        // A configuring host that cannot define the metric `failing`.
        let host = FakeHost::new().refusing_metrics(move |name| name == failing);
        let mut root = IntentionsRoot::default();
        assert!(!root.on_configure(&host, cfg.as_bytes()), "{failing}");
        assert_eq!(
            host.logs(),
            [(
                LogLevel::Error,
                "intentions: cannot set up metrics: bad argument".to_owned()
            )],
            "{failing}"
        );
        assert!(root.bound().is_none());
    }
}
