//! End-to-end: the intentions filter in the real Envoy behind an mTLS listener, with a CA and
//! workload certificates made at test time, raw HTTP/1.1 and HTTP/2 clients presenting each
//! identity (or none), and a bypass suite drawn from public advisories against Istio, Envoy
//! RBAC and Consul.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "intentions/bypass.rs"]
mod bypass;

use mesh_e2e::tls::{self, Ca, Identity, Proto, RawResponse, San};
use mesh_e2e::{Envoy, Stub};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const BOOTSTRAP: &str = "envoy-config/intentions/envoy.yaml";
const TD: &str = "mesh.local";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The main policy: exact, namespace-wildcard and L7 intentions, no `*`.
fn main_policy() -> Value {
    json!({
        "trust_domain": TD, "destination": "reviews", "default_action": "deny",
        "intentions": [
            {"source": "frontend", "action": "allow"},
            {"source": "legacy/*", "action": "deny"},
            {"source": "legacy/reporter", "action": "allow"},
            {"source": "ops/*", "action": "allow"},
            {"source": "ops/intern", "action": "deny"},
            {"name": "web", "source": "web", "permissions": [
                {"action": "deny", "http": {"path_prefix": "/api/admin"}},
                {"action": "deny", "http": {"path_exact": "/api/secret"}},
                {"action": "deny", "http": {"methods": ["DELETE"]}},
                {"action": "deny", "http": {"headers": [{"name": "x-tenant", "exact": "admin"}]}},
                {"action": "allow", "http": {"path_prefix": "/api/", "methods": ["GET", "HEAD", "POST"]}},
                {"action": "allow", "http": {"path_exact": "/upload", "methods": ["PUT"],
                    "headers": [{"name": "x-role", "exact": "uploader"}]}}
            ]}
        ]
    })
}

/// Test-time PKI: one CA for the mesh, another that Envoy does not trust.
struct Pki {
    ca: Ca,
    other_ca: Ca,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("mesh test CA").unwrap();
        let dir = mesh_e2e::repo_root().join("target/e2e").join(format!(
            "intentions-certs-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        ca.write_server_files(&dir).unwrap();
        Pki {
            ca,
            other_ca: Ca::new("untrusted CA").unwrap(),
            dir,
        }
    }

    fn istio(&self, ns: &str, sa: &str) -> Identity {
        self.ca
            .workload(&format!("spiffe://{TD}/ns/{ns}/sa/{sa}"))
            .unwrap()
    }

    fn config(&self, id: Option<&Identity>, proto: Proto) -> Arc<rustls::ClientConfig> {
        tls::client_config(&self.ca, id, proto).unwrap()
    }
}

fn walk(v: &mut Yaml, f: &mut dyn FnMut(&mut serde_yaml::Mapping)) {
    match v {
        Yaml::Mapping(m) => {
            f(m);
            for (_, c) in m.iter_mut() {
                walk(c, f);
            }
        }
        Yaml::Sequence(s) => s.iter_mut().for_each(|c| walk(c, f)),
        _ => {}
    }
}

fn set_all(doc: &mut Yaml, field: &str, value: Yaml) {
    walk(doc, &mut |m| {
        if m.contains_key(field) {
            m.insert(Yaml::from(field), value.clone());
        }
    });
}

/// Points the bootstrap's certificate files at `dir`.
fn use_certs(doc: &mut Yaml, dir: &Path) {
    walk(doc, &mut |m| {
        if let Some(Yaml::String(f)) = m.get_mut("filename") {
            if let Some(name) = f.strip_prefix(
                &mesh_e2e::repo_root()
                    .join("envoy-config/intentions/certs/")
                    .display()
                    .to_string(),
            ) {
                *f = dir.join(name).display().to_string();
            }
        }
    });
}

/// Adds an access log with the published decision to every connection manager.
fn access_log(doc: &mut Yaml, path: &Path) {
    let log: Yaml = serde_yaml::from_str(&format!(
        r#"- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: {}
    log_format: {{text_format_source: {{inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %FILTER_STATE(wasm.mesh.intentions:PLAIN)%\n"}}}}"#,
        path.display()
    ))
    .unwrap();
    walk(doc, &mut |m| {
        if m.contains_key("stat_prefix") {
            m.insert(Yaml::from("access_log"), log.clone());
        }
    });
}

struct Setup {
    policy: Value,
    optional_client_cert: bool,
    forward_xfcc: bool,
}

fn start(pki: &Pki, stub: &Stub, setup: Setup) -> anyhow::Result<Envoy> {
    let dir = pki.dir.clone();
    let log_path = pki
        .dir
        .join(format!("access-{}.log", SEQ.fetch_add(1, Ordering::SeqCst)));
    Envoy::builder(BOOTSTRAP)
        .cluster("reviews", stub)
        .plugin_config("intentions", setup.policy)
        .edit(move |doc| {
            use_certs(doc, &dir);
            access_log(doc, &log_path);
            if setup.optional_client_cert {
                set_all(doc, "require_client_certificate", Yaml::Bool(false));
            }
            if setup.forward_xfcc {
                set_all(
                    doc,
                    "forward_client_cert_details",
                    Yaml::from("ALWAYS_FORWARD_ONLY"),
                );
            }
        })
        .start()
}

/// The access log once it holds every line of `want` (Envoy flushes it about once a second).
fn access_log_with(envoy: &Envoy, want: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = access_log_of(envoy);
        if want.iter().all(|w| log.contains(w)) || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn access_log_of(envoy: &Envoy) -> String {
    let text = std::fs::read_to_string(envoy.dir().join("envoy.yaml")).unwrap_or_default();
    let doc: Yaml = serde_yaml::from_str(&text).unwrap();
    let mut path = None;
    let mut doc = doc;
    walk(&mut doc, &mut |m| {
        if let Some(Yaml::String(p)) = m.get("path") {
            path = Some(p.clone());
        }
    });
    path.map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default()
}

fn get(pki: &Pki, envoy: &Envoy, id: Option<&Identity>, proto: Proto, path: &str) -> RawResponse {
    let cfg = pki.config(id, proto);
    let port = envoy.listener_port("mtls").unwrap();
    match proto {
        Proto::H1 => tls::h1(&cfg, port, b"GET", path.as_bytes(), &[]),
        Proto::H2 => tls::h2(&cfg, port, b"GET", path.as_bytes(), &[]),
    }
    .unwrap()
}

fn assert_upstream(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert!(r.echo().is_some(), "{what}: not from the upstream: {r:?}");
}

fn assert_denied(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 403, "{what}: {r:?}");
    assert_eq!(r.body_str(), "access denied\n", "{what}");
}

#[test]
fn identities_precedence_and_l7_over_both_protocols() {
    let pki = Pki::new();
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(
        &pki,
        &stub,
        Setup {
            policy: main_policy(),
            optional_client_cert: false,
            forward_xfcc: false,
        },
    )
    .unwrap();
    let frontend = pki.istio("default", "frontend");
    let consul_frontend = pki
        .ca
        .workload(&format!("spiffe://{TD}/ns/default/dc/dc1/svc/frontend"))
        .unwrap();
    let billing = pki.istio("legacy", "billing");
    let reporter = pki.istio("legacy", "reporter");
    let deployer = pki.istio("ops", "deployer");
    let intern = pki.istio("ops", "intern");
    let stranger = pki.istio("default", "stranger");
    let web = pki.istio("default", "web");
    let foreign = pki
        .ca
        .workload("spiffe://evil.local/ns/default/sa/frontend")
        .unwrap();
    let dns_only = pki
        .ca
        .client(
            "frontend",
            &[San::Dns(format!("spiffe://{TD}/ns/default/sa/frontend"))],
        )
        .unwrap();
    let not_spiffe = pki
        .ca
        .client(
            "frontend",
            &[San::Uri("https://frontend.default.svc".into())],
        )
        .unwrap();

    for proto in [Proto::H1, Proto::H2] {
        let p = |what: &str| format!("{proto:?} {what}");
        // Exact allow, in both SPIFFE forms.
        assert_upstream(
            &get(&pki, &envoy, Some(&frontend), proto, "/x"),
            &p("frontend"),
        );
        assert_upstream(
            &get(&pki, &envoy, Some(&consul_frontend), proto, "/x"),
            &p("consul-form frontend"),
        );
        // Namespace wildcard deny, and the exact allow that outranks it.
        assert_denied(
            &get(&pki, &envoy, Some(&billing), proto, "/x"),
            &p("legacy/billing"),
        );
        assert_upstream(
            &get(&pki, &envoy, Some(&reporter), proto, "/x"),
            &p("legacy/reporter"),
        );
        // Namespace wildcard allow, and the exact deny that outranks it.
        assert_upstream(
            &get(&pki, &envoy, Some(&deployer), proto, "/x"),
            &p("ops/deployer"),
        );
        assert_denied(
            &get(&pki, &envoy, Some(&intern), proto, "/x"),
            &p("ops/intern"),
        );
        // No intention: default deny.
        assert_denied(
            &get(&pki, &envoy, Some(&stranger), proto, "/x"),
            &p("stranger"),
        );
        // Identities that are not ours are anonymous: default deny.
        for (id, what) in [
            (&foreign, "foreign trust domain"),
            (&dns_only, "spiffe id only in a dns san"),
            (&not_spiffe, "uri san that is not spiffe"),
        ] {
            assert_denied(&get(&pki, &envoy, Some(id), proto, "/x"), &p(what));
        }
        // L7.
        assert_upstream(
            &get(&pki, &envoy, Some(&web), proto, "/api/items"),
            &p("web GET /api/items"),
        );
        assert_denied(
            &get(&pki, &envoy, Some(&web), proto, "/api/admin/users"),
            &p("web admin"),
        );
        assert_denied(
            &get(&pki, &envoy, Some(&web), proto, "/api/secret"),
            &p("web secret"),
        );
        assert_denied(
            &get(&pki, &envoy, Some(&web), proto, "/other"),
            &p("web default"),
        );
        let cfg = pki.config(Some(&web), proto);
        let port = envoy.listener_port("mtls").unwrap();
        let send = |m: &[u8], path: &[u8], h: &[(&str, &[u8])]| match proto {
            Proto::H1 => tls::h1(&cfg, port, m, path, h).unwrap(),
            Proto::H2 => tls::h2(&cfg, port, m, path, h).unwrap(),
        };
        assert_upstream(&send(b"POST", b"/api/items", &[]), &p("web POST"));
        assert_denied(&send(b"DELETE", b"/api/items", &[]), &p("web DELETE"));
        assert_denied(
            &send(b"PATCH", b"/api/items", &[]),
            &p("web PATCH falls to default"),
        );
        assert_upstream(
            &send(b"PUT", b"/upload", &[("x-role", b"uploader")]),
            &p("uploader"),
        );
        assert_denied(
            &send(b"PUT", b"/upload", &[("x-role", b"guest")]),
            &p("guest upload"),
        );
        assert_denied(&send(b"PUT", b"/upload", &[]), &p("upload without role"));
    }

    // A certificate from a CA Envoy does not trust never gets a request through.
    let outsider = pki
        .other_ca
        .workload(&format!("spiffe://{TD}/ns/default/sa/frontend"))
        .unwrap();
    let untrusted = tls::client_config(&pki.ca, Some(&outsider), Proto::H1).unwrap();
    let port = envoy.listener_port("mtls").unwrap();
    match tls::h1(&untrusted, port, b"GET", b"/x", &[]) {
        Ok(r) => assert!(r.status == 0 && r.echo().is_none(), "{r:?}"),
        // Envoy's TLS alert arrives as the read error.
        Err(e) => assert!(format!("{e:#}").contains("alert"), "{e:#}"),
    }
    // Nor does a client without a certificate: the listener requires one.
    let none = pki.config(None, Proto::H1);
    if let Ok(r) = tls::h1(&none, port, b"GET", b"/x", &[]) {
        assert!(r.status == 0 && r.echo().is_none(), "{r:?}");
    }

    // Stats per intention, in /stats (wasmcustom.) and Prometheus.
    let stats = envoy
        .wait_for_stats(std::time::Duration::from_secs(5), |s| {
            s.get("wasmcustom.intentions.intention.default.frontend.allowed") == Some(&4)
        })
        .unwrap();
    assert_eq!(
        stats["wasmcustom.intentions.intention.default.frontend.allowed"],
        4
    );
    assert_eq!(
        stats["wasmcustom.intentions.intention.legacy.any.denied"],
        2
    );
    assert_eq!(
        stats["wasmcustom.intentions.intention.legacy.reporter.allowed"],
        2
    );
    assert_eq!(
        stats["wasmcustom.intentions.intention.ops.intern.denied"],
        2
    );
    assert_eq!(stats["wasmcustom.intentions.intention.web.allowed"], 6);
    assert_eq!(stats["wasmcustom.intentions.intention.web.denied"], 6);
    assert_eq!(stats["wasmcustom.intentions.default.denied"], 16);
    let prom = envoy.prometheus().unwrap();
    let sample = |name: &str| {
        prom.iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or(-1.0)
    };
    assert_eq!(sample("intentions_intention_default_frontend_allowed"), 4.0);
    assert_eq!(sample("intentions_default_denied"), 16.0);

    // Denials are logged at info with source, destination, method, path and intention.
    let log = envoy.log();
    assert!(
        log.contains("intentions: denied source=spiffe://mesh.local/ns/legacy/sa/billing destination=default/reviews method=GET path=/x intention=legacy.any"),
        "{log}"
    );
    assert!(log.contains(
        "intentions: denied source=anonymous(foreign_trust_domain) destination=default/reviews method=GET path=/x intention=default"
    ));
    assert!(log.contains("intention=default (no permission of web matched)"));
    // The decision is published for access logs and telemetry.
    let want = [
        "/x 200 allow:default.frontend",
        "/x 403 deny:legacy.any",
        "/api/admin/users 403 deny:web",
        "/other 403 deny:default",
    ];
    let access = access_log_with(&envoy, &want);
    for w in want {
        assert!(access.contains(w), "{w}\n{access}");
    }
}

#[test]
fn wildcard_anonymous_and_forged_client_cert_headers() {
    let pki = Pki::new();
    let stub = Stub::start("reviews").unwrap();
    // Client certificates optional, and XFCC forwarded untouched, so forged headers reach the
    // filter: it must still ignore them.
    let envoy = start(
        &pki,
        &stub,
        Setup {
            policy: json!({
                "trust_domain": TD, "destination": "reviews", "default_action": "deny",
                "intentions": [
                    {"source": "*", "action": "allow"},
                    {"source": "legacy/*", "action": "deny"}
                ]
            }),
            optional_client_cert: true,
            forward_xfcc: true,
        },
    )
    .unwrap();
    let stranger = pki.istio("anywhere", "stranger");
    let billing = pki.istio("legacy", "billing");
    let dns_only = pki
        .ca
        .client(
            "x",
            &[San::Dns(format!("spiffe://{TD}/ns/default/sa/frontend"))],
        )
        .unwrap();
    let forged: &[(&str, &[u8])] = &[
        (
            "x-forwarded-client-cert",
            b"By=spiffe://mesh.local/ns/default/sa/reviews;Hash=00;URI=spiffe://mesh.local/ns/default/sa/frontend",
        ),
        ("x-client-cert", b"-----BEGIN CERTIFICATE-----"),
        ("x-ssl-client-s-dn", b"CN=frontend"),
        ("x-spiffe-id", b"spiffe://mesh.local/ns/default/sa/frontend"),
        ("x-forwarded-for", b"127.0.0.1"),
    ];
    let port = envoy.listener_port("mtls").unwrap();
    for proto in [Proto::H1, Proto::H2] {
        let send = |id: Option<&Identity>, h: &[(&str, &[u8])]| {
            let cfg = pki.config(id, proto);
            match proto {
                Proto::H1 => tls::h1(&cfg, port, b"GET", b"/x", h).unwrap(),
                Proto::H2 => tls::h2(&cfg, port, b"GET", b"/x", h).unwrap(),
            }
        };
        // `*` matches any authenticated identity...
        assert_upstream(&send(Some(&stranger), &[]), "stranger via *");
        // ...but not one a more specific deny names...
        assert_denied(&send(Some(&billing), &[]), "legacy via legacy/*");
        // ...and never an anonymous peer, whatever headers it sends.
        assert_denied(&send(None, &[]), "tls without a client certificate");
        assert_denied(&send(None, forged), "forged client-cert headers");
        assert_denied(
            &send(Some(&dns_only), forged),
            "dns-only san with forged headers",
        );
        assert_denied(&send(Some(&billing), forged), "legacy with forged headers");
        // The forged header did reach the upstream path (so the filter saw it and ignored it).
        let r = send(Some(&stranger), forged);
        assert_upstream(&r, "stranger with forged headers");
        let echo = r.echo().unwrap();
        assert!(echo["headers"]["x-forwarded-client-cert"][0]
            .as_str()
            .unwrap()
            .contains("URI=spiffe://mesh.local/ns/default/sa/frontend"));
    }
    // Plain HTTP on the other listener: anonymous, denied even with `*` and forged headers.
    let http = mesh_e2e::client();
    let plain = envoy.listener_port("plaintext").unwrap();
    let mut req = http.get(format!("http://127.0.0.1:{plain}/x"));
    for (k, v) in forged {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    assert_eq!(r.status(), 403);
    // Each anonymous peer for its reason: the filter decides on the SAN alone and reads the
    // flag only for the log line, so a certificate without a URI SAN is still told from none.
    let log = envoy.log();
    assert!(log.contains("source=anonymous(no_certificate)"), "{log}");
    assert!(log.contains("source=anonymous(no_uri_san)"), "{log}");
}

#[test]
fn audit_mode_lets_denials_through_and_counts_them() {
    let pki = Pki::new();
    let stub = Stub::start("reviews").unwrap();
    let mut policy = main_policy();
    policy["mode"] = json!("audit");
    let envoy = start(
        &pki,
        &stub,
        Setup {
            policy,
            optional_client_cert: false,
            forward_xfcc: false,
        },
    )
    .unwrap();
    let billing = pki.istio("legacy", "billing");
    let web = pki.istio("default", "web");
    assert_upstream(
        &get(&pki, &envoy, Some(&billing), Proto::H1, "/x"),
        "audited legacy",
    );
    assert_upstream(
        &get(&pki, &envoy, Some(&web), Proto::H2, "/api/admin"),
        "audited web admin",
    );
    assert_upstream(
        &get(&pki, &envoy, Some(&web), Proto::H1, "/api%2Fadmin"),
        "audited bad path",
    );
    let stats = envoy
        .wait_for_stats(std::time::Duration::from_secs(5), |s| {
            s.get("wasmcustom.intentions.intention.web.audit_denied") == Some(&1)
        })
        .unwrap();
    assert_eq!(
        stats["wasmcustom.intentions.intention.legacy.any.audit_denied"],
        1
    );
    assert_eq!(
        stats["wasmcustom.intentions.intention.legacy.any.denied"],
        0
    );
    assert_eq!(stats["wasmcustom.intentions.intention.web.audit_denied"], 1);
    assert_eq!(stats["wasmcustom.intentions.invalid_path"], 1);
    let log = envoy.log();
    assert!(log.contains(
        "intentions: would deny (audit) source=spiffe://mesh.local/ns/legacy/sa/billing"
    ));
    assert!(
        log.contains("intentions: would refuse (audit) invalid path (encoded slash or backslash)")
    );
    let want = [
        "/x 200 audit_deny:legacy.any",
        "/api%2Fadmin 200 audit_deny:invalid_path",
    ];
    let access = access_log_with(&envoy, &want);
    for w in want {
        assert!(access.contains(w), "{w}\n{access}");
    }
}

#[test]
fn envoy_rejects_bad_configurations() {
    let pki = Pki::new();
    let stub = Stub::start("reviews").unwrap();
    for (policy, line) in [
        (
            json!({"intentions": [{"source": "web", "action": "allow"}, {"source": "default/web", "action": "deny"}]}),
            // Ties cannot exist: the same pair twice is refused, whatever the actions.
            "intentions: invalid configuration: intentions[1].source: duplicate source/destination pair (also intentions[0])",
        ),
        (
            json!({"intentions": [{"source": "*/web", "action": "allow"}]}),
            "intentions: invalid configuration: intentions[0].source: a wildcard namespace needs a wildcard name: use *",
        ),
        (
            json!({"destination": "reviews", "intentions": [{"source": "web", "destination": "*",
                   "permissions": [{"action": "allow", "http": {}}]}]}),
            "intentions: invalid configuration: intentions[0].permissions: cannot be used with a wildcard destination",
        ),
        (
            json!({"intentions": [{"source": "web", "permissions": [{"action": "deny", "http": {"path_regex": "(a"}}]}]}),
            "intentions: invalid configuration: intentions[0].permissions[0].http.path_regex: regex does not compile",
        ),
        (
            json!({"intentions": [{"source": "web", "action": "allow", "permissions": []}]}),
            "intentions: invalid configuration: intentions[0]: set either action or permissions, not both",
        ),
        (json!({"bogus": 1}), "intentions: invalid configuration: bogus: unknown field `bogus`"),
    ] {
        let err = match start(&pki, &stub, Setup {
            policy,
            optional_client_cert: false,
            forward_xfcc: false,
        }) {
            Ok(_) => panic!("envoy accepted a bad configuration ({line})"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(line), "{line}\n{err}");
    }
}

#[test]
fn bypass_suite_http1_and_http2() {
    let pki = Pki::new();
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(
        &pki,
        &stub,
        Setup {
            policy: main_policy(),
            optional_client_cert: true,
            forward_xfcc: true,
        },
    )
    .unwrap();
    let ids = bypass::Ids {
        web: pki.istio("default", "web"),
        legacy: pki.istio("legacy", "billing"),
        dns_only: pki
            .ca
            .client(
                "x",
                &[San::Dns(format!("spiffe://{TD}/ns/default/sa/frontend"))],
            )
            .unwrap(),
    };
    let port = envoy.listener_port("mtls").unwrap();
    let report = bypass::run(&pki.ca, &ids, port);
    println!("{report}");
    assert!(report.failures.is_empty(), "{report}");
    assert!(report.total >= 100, "{report}");
}

/// The shipped examples stay valid: the bootstrap's and the Istio plugin's configurations
/// compile with the real parser, and the Istio resource has the fields the issue promises.
#[test]
fn shipped_examples_are_valid() {
    let root = mesh_e2e::repo_root().join("envoy-config/intentions");
    let istio: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("istio/wasmplugin.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        istio["apiVersion"],
        Yaml::from("extensions.istio.io/v1alpha1")
    );
    assert_eq!(istio["kind"], Yaml::from("WasmPlugin"));
    assert_eq!(istio["spec"]["phase"], Yaml::from("AUTHZ"));
    assert_eq!(istio["spec"]["failStrategy"], Yaml::from("FAIL_CLOSE"));
    let plugin = serde_json::to_vec(&istio["spec"]["pluginConfig"]).unwrap();
    let policy = mesh_intentions::IntentionsConfig::parse(&plugin).unwrap();
    assert_eq!(policy.trust_domain, "cluster.local");
    assert_eq!(policy.intentions().len(), 3);

    let example = std::fs::read(root.join("config.example.json")).unwrap();
    mesh_intentions::IntentionsConfig::parse(&example).unwrap();

    let boot: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("envoy.yaml")).unwrap()).unwrap();
    let mut configs = Vec::new();
    let mut boot = boot;
    walk(&mut boot, &mut |m| {
        if m.get("root_id") == Some(&Yaml::from("intentions")) {
            if let Some(v) = m.get("configuration").and_then(|c| c.get("value")) {
                configs.push(v.as_str().unwrap().to_owned());
            }
        }
    });
    assert_eq!(configs.len(), 2, "both listeners run the filter");
    for c in configs {
        mesh_intentions::IntentionsConfig::parse(c.as_bytes()).unwrap();
    }
}
#[test]
fn deny_header_regexes_catch_values_that_are_not_utf8() {
    // Envoy passes obs-text bytes in header values; a regex never matches raw non-UTF-8
    // bytes, so a deny on `curl.*` must also read the value with them replaced.
    let pki = Pki::new();
    let stub = Stub::start("reviews").unwrap();
    let policy = json!({
        "trust_domain": TD, "destination": "reviews", "default_action": "deny",
        "intentions": [{"name": "web", "source": "web", "permissions": [
            {"action": "deny", "http": {"headers": [{"name": "user-agent", "regex": "curl.*"}]}},
            {"action": "allow", "http": {"path_prefix": "/"}}]}]
    });
    let envoy = start(
        &pki,
        &stub,
        Setup {
            policy,
            optional_client_cert: false,
            forward_xfcc: false,
        },
    )
    .unwrap();
    let web = pki.istio("default", "web");
    let port = envoy.listener_port("mtls").unwrap();
    for proto in [Proto::H1, Proto::H2] {
        let cfg = pki.config(Some(&web), proto);
        let send = |ua: &[u8]| {
            match proto {
                Proto::H1 => tls::h1(&cfg, port, b"GET", b"/x", &[("user-agent", ua)]),
                Proto::H2 => tls::h2(&cfg, port, b"GET", b"/x", &[("user-agent", ua)]),
            }
            .unwrap()
        };
        assert_upstream(&send(b"wget/1"), "wget");
        assert_denied(&send(b"curl/8"), "curl");
        // Before the fix this passed the filter (the stub, which takes only ASCII, then
        // failed it with a 503).
        assert_denied(&send(b"curl/8\xff"), "curl/8\\xff");
    }
}
