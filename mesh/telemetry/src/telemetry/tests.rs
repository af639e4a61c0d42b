use super::*;
use crate::labels::{decode_value, parse_stat_name};
use sdk_shim::testing::{FakeClock, FakeHost, FakeProxy};
use sdk_shim::HttpHeaders;
use std::collections::BTreeMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const VALID_TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One proxy's telemetry, bound on a root that shares the proxy's metrics and store.
struct Proxy {
    telemetry: Arc<Telemetry>,
    envoy: FakeProxy,
}

fn int(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

impl Proxy {
    fn new(json: &str) -> Self {
        Self::with_root(json, FakeHost::new())
    }

    fn with_root(json: &str, root: FakeHost) -> Self {
        let envoy = FakeProxy::new();
        let root = root.with_metrics(&envoy.metrics).with_store(&envoy.store);
        let config = TelemetryConfig::from_json(json.as_bytes()).unwrap();
        Self {
            telemetry: Arc::new(Telemetry::bind(&root, config).unwrap()),
            envoy,
        }
    }

    /// Runs a whole request: request headers, upstream answer, response headers, log.
    fn run(
        &self,
        host: &FakeHost,
        code: i64,
        response_headers: &[(&str, &str)],
    ) -> RequestTelemetry {
        let mut r = RequestTelemetry::new(self.telemetry.clone());
        r.on_request_headers(host);
        host.upstream_responds(u16::try_from(code).unwrap_or(0), response_headers);
        r.on_response_headers(host);
        host.set_property_now(attr::RESPONSE_CODE, int(code));
        r.on_log(host);
        r
    }

    /// Every `istio_requests_total` series as (label map, count).
    fn series(&self) -> Vec<(BTreeMap<String, String>, i64)> {
        self.envoy
            .metrics
            .names()
            .into_iter()
            .filter(|n| n.starts_with("istio_requests_total;"))
            .map(|n| {
                let (_, labels) = parse_stat_name(&n);
                let map = labels
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k.to_owned(),
                            String::from_utf8_lossy(&decode_value(v)).into_owned(),
                        )
                    })
                    .collect();
                (map, self.envoy.metrics.value(&n).unwrap_or(0))
            })
            .collect()
    }

    fn only_series(&self) -> BTreeMap<String, String> {
        let s = self.series();
        assert_eq!(s.len(), 1, "{s:#?}");
        s.into_iter().next().unwrap().0
    }

    fn stat(&self, name: &str) -> i64 {
        self.envoy.metrics.value(name).unwrap_or(-1)
    }
}

fn access_line(host: &FakeHost) -> serde_json::Value {
    let lines = host.logs_at(LogLevel::Info);
    assert_eq!(lines.len(), 1, "{lines:?}");
    serde_json::from_str(&lines[0]).unwrap()
}

const DEST: &str = r#"{"workload":{"name":"reviews-v1","namespace":"default","service":"reviews","revision":"v1","app":"reviews","version":"v1","cluster":"east"}}"#;

#[test]
fn destination_labels_come_from_config_certificate_and_envoy() {
    let p = Proxy::new(DEST);
    let host = p
        .envoy
        .host()
        .request("GET", "reviews:9080", "/api")
        .property(attr::MTLS, [1])
        .property(attr::PEER_URI_SAN, WEB)
        .property(
            attr::LOCAL_URI_SAN,
            "spiffe://cluster.local/ns/default/sa/reviews",
        )
        .property(attr::RESPONSE_FLAGS, int((1 << 5) | (1 << 15)))
        .property(attr::REQUEST_DURATION, int(12_345_678))
        .property(attr::REQUEST_TOTAL_SIZE, int(300))
        .property(attr::RESPONSE_TOTAL_SIZE, int(4000));
    p.run(&host, 503, &[]);
    let l = p.only_series();
    let expect = [
        ("reporter", "destination"),
        ("source_workload", "web"),
        ("source_workload_namespace", "shop"),
        ("source_principal", WEB),
        ("source_canonical_service", "unknown"),
        ("source_app", "unknown"),
        ("source_version", "unknown"),
        ("source_cluster", "unknown"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/default/sa/reviews",
        ),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_app", "reviews"),
        ("destination_version", "v1"),
        ("destination_cluster", "east"),
        ("request_protocol", "http"),
        ("response_code", "503"),
        // Not gRPC: empty, as Istio reports it.
        ("grpc_response_status", ""),
        ("response_flags", "UF,URX"),
        ("connection_security_policy", "mutual_tls"),
    ];
    for (k, v) in expect {
        assert_eq!(l[k], v, "{k}");
    }
    assert_eq!(l.len(), crate::labels::LABEL_COUNT);
    let name = |m: &str| {
        p.envoy
            .metrics
            .names()
            .into_iter()
            .find(|n| n.starts_with(&format!("{m};")))
            .unwrap()
    };
    assert_eq!(
        p.envoy
            .metrics
            .samples(&name("istio_request_duration_milliseconds")),
        vec![12]
    );
    assert_eq!(
        p.envoy.metrics.samples(&name("istio_request_bytes")),
        vec![300]
    );
    assert_eq!(
        p.envoy.metrics.samples(&name("istio_response_bytes")),
        vec![4000]
    );
    assert_eq!(p.stat(stat::SERIES_ADMITTED), 1);
}

#[test]
fn workload_comes_from_the_node_when_not_configured() {
    let root = FakeHost::new()
        .property(&["xds", "node", "metadata", "WORKLOAD_NAME"], "ratings-v2")
        .property(&["xds", "node", "metadata", "NAMESPACE"], "books")
        .property(&["xds", "node", "metadata", "LABELS", "app"], "ratings")
        .property(&["xds", "node", "metadata", "LABELS", "version"], "v2")
        .property(&["xds", "node", "metadata", "CLUSTER_ID"], "Kubernetes");
    let p = Proxy::with_root("", root);
    let w = &p.telemetry.workload;
    assert_eq!(
        (w.app.as_deref(), w.version.as_deref(), w.cluster.as_deref()),
        (Some("ratings"), Some("v2"), Some("Kubernetes"))
    );
    assert_eq!(
        (
            w.name.as_str(),
            w.namespace.as_str(),
            w.service.as_str(),
            w.revision.as_str()
        ),
        ("ratings-v2", "books", "ratings", "v2")
    );
    assert_eq!(w.service_host, "ratings.books.svc.cluster.local");

    // Config wins; a node value that is not a plain name is ignored.
    let root = FakeHost::new()
        .property(&["xds", "node", "metadata", "WORKLOAD_NAME"], "x;y=z")
        .property(&["xds", "node", "metadata", "NAMESPACE"], "books");
    let p = Proxy::with_root(r#"{"workload":{"namespace":"mine"}}"#, root);
    assert_eq!(p.telemetry.workload.name, "unknown");
    assert_eq!(p.telemetry.workload.namespace, "mine");

    // No `app` label: `unknown`, as Istio (no fallback to the canonical name); config wins.
    let root = FakeHost::new()
        .property(
            &[
                "xds",
                "node",
                "metadata",
                "LABELS",
                "service.istio.io/canonical-name",
            ],
            "c",
        )
        .property(&["xds", "node", "metadata", "LABELS", "version"], "v9")
        .property(&["xds", "node", "metadata", "CLUSTER_ID"], "west");
    let p = Proxy::with_root(r#"{"workload":{"cluster":"east"}}"#, root);
    let w = &p.telemetry.workload;
    assert_eq!(
        (w.app.as_deref(), w.version.as_deref(), w.cluster.as_deref()),
        (None, Some("v9"), Some("east"))
    );
    p.run(&p.envoy.host(), 200, &[]);
    let l = p.only_series();
    assert_eq!(
        (
            l["destination_app"].as_str(),
            l["destination_version"].as_str(),
            l["destination_cluster"].as_str()
        ),
        ("unknown", "v9", "east")
    );
}

/// The host calls of `host` that `keep` names, in order.
fn calls_matching(host: &FakeHost, keep: impl Fn(&str) -> bool) -> Vec<String> {
    host.host_call_log()
        .into_iter()
        .filter(|c| keep(c))
        .collect()
}

#[test]
fn on_mtls_the_local_principal_comes_with_the_log_time_attributes() {
    let p = Proxy::new(DEST);
    let local = "spiffe://cluster.local/ns/default/sa/reviews";
    let base = || {
        p.envoy
            .host()
            .request("GET", "reviews:9080", "/api")
            .property(attr::MTLS, [1])
            .property(attr::PEER_URI_SAN, WEB)
    };
    let with_san = base().property(attr::LOCAL_URI_SAN, local);
    // A certificate without a URI SAN: the batched read still answers, naming no one.
    let without = base();
    for (host, principal) in [(&with_san, local), (&without, "unknown")] {
        p.run(host, 200, &[]);
        let reads = calls_matching(host, |c| {
            c.starts_with("property connection") || c.starts_with("properties")
        });
        assert_eq!(
            reads,
            [
                // The SAN means a certificate: no `connection.mtls` read.
                "property connection.uri_san_peer_certificate",
                "properties response.code,response.flags,request.duration,request.total_size,\
                 response.total_size,connection.uri_san_local_certificate?,\
                 filter_state.wasm.mesh.canary?,filter_state.wasm.mesh.ratelimit?,\
                 filter_state.wasm.mesh.intentions?",
            ]
        );
        let series = p.series();
        assert!(
            series
                .iter()
                .any(|(l, _)| l["destination_principal"] == principal),
            "{series:#?}"
        );
    }
}

/// The series' source and destination principals and its security policy.
fn identity_labels(l: &BTreeMap<String, String>) -> (&str, &str, &str) {
    (
        l["source_principal"].as_str(),
        l["destination_principal"].as_str(),
        l["connection_security_policy"].as_str(),
    )
}

#[test]
fn a_certificate_without_a_uri_san_is_mutual_tls_with_our_principal() {
    let p = Proxy::new(DEST);
    let reviews = "spiffe://cluster.local/ns/default/sa/reviews";
    let host = p
        .envoy
        .host()
        .request("GET", "reviews:9080", "/api")
        .property(attr::MTLS, [1])
        .property(attr::LOCAL_URI_SAN, reviews);
    p.run(&host, 200, &[]);
    let l = p.only_series();
    assert_eq!(identity_labels(&l), ("unknown", reviews, "mutual_tls"));
    // The flag came with the log-time attributes; it said mTLS, so our own principal was
    // read after them (a peer without a SAN is rare in a mesh).
    let reads = calls_matching(&host, |c| c.contains("connection."));
    assert_eq!(reads.len(), 3, "{reads:#?}");
    assert!(reads[1].contains(",connection.mtls,"), "{reads:#?}");
    assert_eq!(reads[2], "property connection.uri_san_local_certificate");
}

#[test]
fn plain_connections_read_no_certificate() {
    let p = Proxy::new("");
    let host = p.envoy.host().property(attr::MTLS, [0]);
    p.run(&host, 200, &[]);
    let l = p.only_series();
    assert_eq!(identity_labels(&l), ("unknown", "unknown", "none"));
    // The peer's SAN is looked for once (it finds nothing); the flag that says plaintext
    // comes with the log-time attributes; the local certificate is not read at all.
    let reads = calls_matching(&host, |c| {
        c.contains("connection.") || c.contains("local_certificate")
    });
    assert_eq!(
        reads,
        [
            "property connection.uri_san_peer_certificate",
            "properties response.code,response.flags,request.duration,request.total_size,\
             response.total_size,connection.mtls,filter_state.wasm.mesh.canary?,\
             filter_state.wasm.mesh.ratelimit?,filter_state.wasm.mesh.intentions?"
        ]
    );
}

#[test]
fn missing_properties_still_count() {
    let p = Proxy::new("");
    let host = p.envoy.host();
    let mut r = RequestTelemetry::new(p.telemetry.clone());
    r.on_request_headers(&host);
    r.on_log(&host);
    let l = p.only_series();
    assert_eq!(l["response_code"], "0");
    assert_eq!(l["response_flags"], "-");
    assert_eq!(l["connection_security_policy"], "none");
    assert_eq!(p.series()[0].1, 1);
    let v = access_line(&host);
    assert!(v["status"].is_null() && v["duration_ms"].is_null());
}

#[test]
fn peer_metadata_is_trusted_only_over_mtls_and_always_stripped() {
    let cfg = r#"{"peer_metadata":{"enabled":true}}"#;
    let header = "x-mesh-peer-metadata";
    let meta =
        "workload=web-v2;namespace=shop;service=web;revision=v2;app=web;version=v2;cluster=east";

    // mTLS and consistent with the certificate: trusted, stripped, answered.
    let p = Proxy::new(cfg);
    let host = p
        .envoy
        .host()
        .request_header(header, meta)
        .property(attr::MTLS, [1])
        .property(attr::PEER_URI_SAN, WEB);
    let r = p.run(&host, 200, &[]);
    assert_eq!(r.peer().map(|m| m.workload.as_str()), Some("web-v2"));
    assert_eq!(host.request_header_str(header), None);
    assert!(host
        .response_header_str(header)
        .unwrap()
        .starts_with("workload=unknown;"));
    let l = p.only_series();
    assert_eq!(
        (
            l["source_workload"].as_str(),
            l["source_canonical_service"].as_str(),
            l["source_canonical_revision"].as_str()
        ),
        ("web-v2", "web", "v2")
    );
    assert_eq!(
        (
            l["source_app"].as_str(),
            l["source_version"].as_str(),
            l["source_cluster"].as_str()
        ),
        ("web", "v2", "east")
    );
    assert_eq!(p.stat(stat::PEER_METADATA_REJECTED), 0);

    // Plain connection: stripped, ignored, counted; nothing told back.
    let p = Proxy::new(cfg);
    let host = p.envoy.host().request_header(header, meta);
    p.run(&host, 200, &[]);
    assert_eq!(host.request_header_str(header), None);
    assert_eq!(host.response_header_str(header), None);
    let l = p.only_series();
    assert_eq!(l["source_workload"], "unknown");
    assert_eq!(l["source_app"], "unknown");
    assert_eq!(p.stat(stat::PEER_METADATA_REJECTED), 1);

    // mTLS but claiming another namespace than the certificate: the certificate wins.
    let p = Proxy::new(cfg);
    let host = p
        .envoy
        .host()
        .request_header(header, "workload=admin;namespace=kube-system")
        .property(attr::MTLS, [1])
        .property(attr::PEER_URI_SAN, WEB);
    p.run(&host, 200, &[]);
    let l = p.only_series();
    assert_eq!(
        (
            l["source_workload"].as_str(),
            l["source_workload_namespace"].as_str()
        ),
        ("web", "shop")
    );
    assert_eq!(l["source_app"], "unknown", "a SPIFFE ID names no app");
    assert_eq!(p.stat(stat::PEER_METADATA_REJECTED), 1);

    // Disabled: the header is none of our business.
    let p = Proxy::new("");
    let host = p
        .envoy
        .host()
        .request_header(header, meta)
        .property(attr::MTLS, [1]);
    p.run(&host, 200, &[]);
    assert_eq!(host.request_header_str(header).as_deref(), Some(meta));
}

#[test]
fn source_reporter_names_the_destination() {
    let p = Proxy::new(
        r#"{"reporter":"source","workload":{"name":"web-v1","namespace":"shop","service":"web","app":"web","version":"v1"},"peer_metadata":{"enabled":true}}"#,
    );
    let header = "x-mesh-peer-metadata";
    let host = p
        .envoy
        .host()
        .request("GET", "Reviews.Books.svc.cluster.local:9080", "/")
        .request_header(header, "workload=forged;namespace=x")
        .property(
            attr::UPSTREAM_PEER_URI_SAN,
            "spiffe://cluster.local/ns/books/sa/reviews",
        )
        .property(attr::UPSTREAM_LOCAL_URI_SAN, WEB);
    p.run(
        &host,
        200,
        &[(
            header,
            "workload=reviews-v3;namespace=books;service=reviews;revision=v3;app=reviews;version=v3;cluster=west",
        )],
    );
    // Our cluster is not known: not sent.
    assert_eq!(
        host.request_header_str(header).as_deref(),
        Some("workload=web-v1;namespace=shop;service=web;revision=latest;app=web;version=v1")
    );
    assert_eq!(host.response_header_str(header), None);
    let l = p.only_series();
    let expect = [
        ("reporter", "source"),
        ("source_workload", "web-v1"),
        ("source_workload_namespace", "shop"),
        ("source_principal", WEB),
        ("destination_workload", "reviews-v3"),
        ("destination_workload_namespace", "books"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/books/sa/reviews",
        ),
        ("destination_service", "reviews.books.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "books"),
        ("destination_canonical_revision", "v3"),
        // The roles swap: ours are the source's, the answer's the destination's.
        ("source_app", "web"),
        ("source_version", "v1"),
        ("source_cluster", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v3"),
        ("destination_cluster", "west"),
        ("grpc_response_status", ""),
        ("connection_security_policy", "unknown"),
    ];
    for (k, v) in expect {
        assert_eq!(l[k], v, "{k}");
    }

    // Without a verified upstream certificate the answer's metadata is dropped.
    let p = Proxy::new(r#"{"reporter":"source","peer_metadata":{"enabled":true}}"#);
    let host = p.envoy.host().request("GET", "[::1]:80", "/");
    p.run(&host, 200, &[(header, "workload=liar;namespace=books")]);
    let l = p.only_series();
    assert_eq!(l["destination_workload"], "unknown");
    assert_eq!(l["destination_app"], "unknown");
    assert_eq!(l["destination_service"], "[::1]");
    assert_eq!(p.stat(stat::PEER_METADATA_REJECTED), 1);
}

#[test]
fn traceparent_is_kept_replaced_or_started() {
    let p = Proxy::new(r#"{"trace":{"start_when_absent":true}}"#);

    let host = p
        .envoy
        .host()
        .request_header("traceparent", VALID_TP)
        .request_header("tracestate", "a=1");
    let r = p.run(&host, 200, &[]);
    assert!(matches!(r.trace(), TraceOutcome::Kept(_)));
    assert_eq!(
        host.request_header_str("traceparent").as_deref(),
        Some(VALID_TP)
    );
    assert_eq!(
        host.request_header_str("tracestate").as_deref(),
        Some("a=1")
    );
    assert_eq!(
        access_line(&host)["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );

    let host = p
        .envoy
        .host()
        .request_header("traceparent", "00-zz")
        .request_header("tracestate", "a=1");
    p.run(&host, 200, &[]);
    let new = host.request_header_str("traceparent").unwrap();
    let parsed = trace::TraceParent::parse(new.as_bytes()).unwrap();
    assert_eq!(host.request_header_str("tracestate"), None);
    assert_eq!(access_line(&host)["trace_id"], parsed.trace_id_hex());
    assert_eq!(p.stat(stat::TRACE_REPLACED), 1);

    let host = p.envoy.host();
    p.run(&host, 200, &[]);
    let started = host.request_header_str("traceparent").unwrap();
    assert!(trace::TraceParent::parse(started.as_bytes()).is_ok());
    // Ids come from the host's randomness: same seed, same ids; another seed, others.
    assert_eq!(started, new);
    let host = p.envoy.host().random_seed(7);
    p.run(&host, 200, &[]);
    assert_ne!(host.request_header_str("traceparent").unwrap(), new);
    assert_eq!(p.stat(stat::TRACE_STARTED), 2);

    // Not configured to start: nothing added; disabled: even garbage passes untouched.
    let p = Proxy::new("");
    let host = p.envoy.host();
    p.run(&host, 200, &[]);
    assert_eq!(host.request_header_str("traceparent"), None);
    assert!(access_line(&host)["trace_id"].is_null());
    let p = Proxy::new(r#"{"trace":{"enabled":false}}"#);
    let host = p.envoy.host().request_header("traceparent", "garbage");
    p.run(&host, 200, &[]);
    assert_eq!(
        host.request_header_str("traceparent").as_deref(),
        Some("garbage")
    );
}

#[test]
fn access_log_carries_request_and_decisions() {
    let p = Proxy::new("");
    let host = p
        .envoy
        .host()
        .request("POST", "reviews", "/api/x?y=1")
        .property(attr::MTLS, [1])
        .property(attr::PEER_URI_SAN, WEB)
        // The start time is the clock when the request headers arrive.
        .with_clock(&FakeClock::at_nanos(1_700_000_000_250_000_000))
        .property(attr::REQUEST_DURATION, int(5_000_000))
        .property(attr::REQUEST_TOTAL_SIZE, int(10))
        .property(attr::RESPONSE_TOTAL_SIZE, int(20))
        .property(&[decision::CANARY], "v2")
        .property(&[decision::INTENTIONS], "allow:web");
    p.run(&host, 201, &[]);
    let v = access_line(&host);
    assert_eq!(v["time"], "2023-11-14T22:13:20.250Z");
    assert_eq!(
        (
            v["method"].as_str(),
            v["path"].as_str(),
            v["authority"].as_str()
        ),
        (Some("POST"), Some("/api/x?y=1"), Some("reviews"))
    );
    assert_eq!(
        (v["status"].as_i64(), v["duration_ms"].as_i64()),
        (Some(201), Some(5))
    );
    assert_eq!(
        (v["request_bytes"].as_i64(), v["response_bytes"].as_i64()),
        (Some(10), Some(20))
    );
    assert_eq!(v["peer_principal"], WEB);
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["canary"], "v2");
    assert_eq!(v["intentions"], "allow:web");
    assert!(v.get("ratelimit").is_none());
    // The verdicts came with the log-time attributes: no read of their own.
    assert_eq!(
        calls_matching(&host, |c| c.contains("mesh.")).len(),
        1,
        "{:#?}",
        host.host_call_log()
    );
    // So they do on plaintext.
    let plain = p
        .envoy
        .host()
        .request("GET", "reviews", "/")
        .property(&[decision::RATELIMIT], "limited:api");
    p.run(&plain, 429, &[]);
    let v = access_line(&plain);
    assert_eq!(v["ratelimit"], "limited:api");
    assert!(v.get("canary").is_none());
    assert_eq!(
        calls_matching(&plain, |c| c.starts_with("properties")),
        [
            "properties response.code,response.flags,request.duration,request.total_size,\
          response.total_size,connection.mtls,filter_state.wasm.mesh.canary?,\
          filter_state.wasm.mesh.ratelimit?,filter_state.wasm.mesh.intentions?"
        ]
    );
    assert!(calls_matching(&plain, |c| c.starts_with("property mesh.")).is_empty());
}

#[test]
fn decisions_handed_over_in_memory_skip_the_host() {
    let p = Proxy::new("");
    let host = p.envoy.host().property(&[decision::CANARY], "from-host");
    let mut r = RequestTelemetry::new(p.telemetry.clone());
    r.on_request_headers(&host);
    r.set_decision(decision::RATELIMIT, "limited:api");
    r.set_decision("unknown.key", "ignored");
    r.on_log(&host);
    let v = access_line(&host);
    assert_eq!(v["ratelimit"], "limited:api");
    assert!(
        v.get("canary").is_none(),
        "in-memory decisions replace host reads"
    );
}

#[test]
fn access_log_off_reads_less_and_logs_nothing() {
    let p = Proxy::new(r#"{"access_log":{"enabled":false},"trace":{"enabled":false}}"#);
    let host = p.envoy.host().request("GET", "a", "/");
    p.run(&host, 200, &[]);
    assert!(host.logs_at(LogLevel::Info).is_empty());
    let quiet = host.host_calls();
    let p = Proxy::new(r#"{"trace":{"enabled":false}}"#);
    let host = p.envoy.host().request("GET", "a", "/");
    p.run(&host, 200, &[]);
    assert!(
        host.host_calls() > quiet + 3,
        "{} vs {quiet}",
        host.host_calls()
    );
}

#[test]
fn a_stream_reset_before_its_headers_logs_envoys_start_time() {
    let p = Proxy::new("");
    let host = p
        .envoy
        .host()
        .property(attr::REQUEST_TIME, int(1_600_000_000_000_000_000))
        .property(attr::RESPONSE_CODE, int(0));
    // No request headers callback: only the log one.
    RequestTelemetry::new(p.telemetry.clone()).on_log(&host);
    assert_eq!(access_line(&host)["time"], "2020-09-13T12:26:40.000Z");
}

#[test]
fn a_known_series_costs_few_host_calls() {
    let p = Proxy::new(r#"{"trace":{"start_when_absent":true}}"#);
    p.run(&p.envoy.host().request("GET", "a", "/"), 200, &[]);
    let host = p.envoy.host().request("GET", "a", "/");
    p.run(&host, 200, &[]);
    // 5 header reads; a trace started: 1 random, 1 header write and its counter; the peer's
    // SAN (none), then the 5 response attributes, `connection.mtls` and the 3 decisions
    // (filter state, as this module runs alone) in one batched read; the requests counter
    // and 3 histograms; for the access log the clock and the line itself, with no log-level
    // check. The series is already known to this worker: no shared-data call. (gRPC requests
    // add one or two `grpc-status` reads: see below.)
    assert_eq!(
        host.host_calls(),
        5 + 3 + 2 + 4 + 2,
        "{:#?}",
        host.host_call_log()
    );
}

#[test]
fn cardinality_cap_sends_new_series_to_overflow() {
    let p = Proxy::new(r#"{"max_series":2}"#);
    assert!(
        p.series().is_empty(),
        "overflow series is defined only when used"
    );
    for code in [200, 404, 200, 500, 503, 500] {
        p.run(&p.envoy.host(), code, &[]);
    }
    let series = p.series();
    let count = |code: &str| {
        series
            .iter()
            .find(|(l, _)| l["response_code"] == code)
            .map(|(_, n)| *n)
    };
    assert_eq!(count("200"), Some(2));
    assert_eq!(count("404"), Some(1));
    assert_eq!(count("500"), None);
    assert_eq!(count("other"), Some(3));
    let (overflow, _) = series
        .iter()
        .find(|(l, _)| l["response_code"] == "other")
        .unwrap();
    assert_eq!(overflow["reporter"], "destination");
    assert!(overflow
        .iter()
        .filter(|(k, _)| *k != "reporter")
        .all(|(_, v)| v == "other"));
    assert_eq!(p.stat(stat::SERIES_OVERFLOW), 3);
    assert_eq!(p.stat(stat::SERIES_ADMITTED), 2);
    assert_eq!(p.telemetry.series_count(), 2);
}

#[test]
fn grpc_requests_are_labelled_grpc() {
    let p = Proxy::new("");
    let host = p
        .envoy
        .host()
        .request_header("content-type", "application/grpc+proto");
    p.run(&host, 200, &[]);
    let l = p.only_series();
    assert_eq!(l["request_protocol"], "grpc");
    // Neither trailers nor a grpc-status header: inferred from HTTP 200, as Envoy does.
    assert_eq!(l["grpc_response_status"], "2");
}

/// The `grpc_response_status` of one gRPC request answered `code` with these response
/// headers and trailers.
fn grpc_status_of(code: i64, headers: &[(&str, &str)], trailers: &[(&str, &str)]) -> String {
    grpc_request(code, headers, trailers).0
}

/// The `grpc_response_status` label and the access line of one gRPC request.
fn grpc_request(
    code: i64,
    headers: &[(&str, &str)],
    trailers: &[(&str, &str)],
) -> (String, serde_json::Value) {
    let p = Proxy::new("");
    let host = p
        .envoy
        .host()
        .request_header("content-type", "application/grpc");
    let mut r = RequestTelemetry::new(p.telemetry.clone());
    r.on_request_headers(&host);
    host.upstream_responds(u16::try_from(code).unwrap(), headers);
    r.on_response_headers(&host);
    for (k, v) in trailers {
        host.add_header(HeaderMap::ResponseTrailers, k, v.as_bytes())
            .unwrap();
    }
    host.set_property_now(attr::RESPONSE_CODE, int(code));
    r.on_log(&host);
    (
        p.only_series()["grpc_response_status"].clone(),
        access_line(&host),
    )
}

#[test]
fn the_access_line_of_a_grpc_request_carries_its_status() {
    let (label, line) = grpc_request(200, &[], &[("grpc-status", "14")]);
    assert_eq!(
        (label.as_str(), line["grpc_status"].as_i64()),
        ("14", Some(14))
    );
    assert_eq!(line["protocol"], "grpc");
}

#[test]
fn grpc_status_comes_from_trailers_then_headers_then_the_http_code() {
    // Trailers first (a normal answer), even when a header says otherwise.
    assert_eq!(grpc_status_of(200, &[], &[("grpc-status", "0")]), "0");
    assert_eq!(
        grpc_status_of(200, &[("grpc-status", "0")], &[("grpc-status", "14")]),
        "14"
    );
    // A trailers-only answer carries it in the headers.
    assert_eq!(grpc_status_of(200, &[("grpc-status", "5")], &[]), "5");
    assert_eq!(
        grpc_status_of(200, &[("grpc-status", "7")], &[("x", "y")]),
        "7"
    );
    // No grpc-status: the HTTP code mapped as gRPC documents it.
    assert_eq!(grpc_status_of(503, &[], &[]), "14");
    assert_eq!(grpc_status_of(404, &[], &[]), "12");
    // Not a well-known code: Envoy's InvalidCode, never the client's bytes.
    assert_eq!(
        grpc_status_of(200, &[], &[("grpc-status", "x;reporter=source")]),
        "-1"
    );
    assert_eq!(grpc_status_of(200, &[], &[("grpc-status", "17")]), "-1");
}

#[test]
fn grpc_status_maps_like_envoy() {
    use crate::labels::grpc_status;
    assert_eq!(grpc_status(Some(b"0"), Some(500)), Some(0));
    assert_eq!(grpc_status(Some(b"16"), None), Some(16));
    assert_eq!(grpc_status(Some(b" 3 "), None), Some(3));
    assert_eq!(grpc_status(Some(b"-1"), None), Some(-1));
    assert_eq!(grpc_status(Some(&[0xff]), None), Some(-1));
    assert_eq!(
        grpc_status(Some(b"99999999999999999999999"), None),
        Some(-1)
    );
    // An empty value is no value (Envoy reads it as absent).
    assert_eq!(grpc_status(Some(b""), Some(401)), Some(16));
    for (http, grpc) in [
        (400, 13),
        (401, 16),
        (403, 7),
        (404, 12),
        (429, 14),
        (502, 14),
        (503, 14),
        (504, 14),
        (200, 2),
        (500, 2),
    ] {
        assert_eq!(grpc_status(None, Some(http)), Some(grpc), "{http}");
    }
    assert_eq!(grpc_status(None, None), None);
}

#[test]
fn grpc_without_any_status_or_code_is_empty() {
    let p = Proxy::new("");
    let host = p
        .envoy
        .host()
        .request_header("content-type", "application/grpc");
    let mut r = RequestTelemetry::new(p.telemetry.clone());
    r.on_request_headers(&host);
    r.on_log(&host);
    assert_eq!(p.only_series()["grpc_response_status"], "");
}

#[test]
fn grpc_status_costs_host_calls_only_for_grpc() {
    let calls = |content_type: &str, trailers: bool| {
        let p = Proxy::new("");
        let host = || {
            let h = p
                .envoy
                .host()
                .request("POST", "a", "/pkg.Svc/Call")
                .request_header("content-type", content_type);
            if trailers {
                h.add_header(HeaderMap::ResponseTrailers, "grpc-status", b"0")
                    .unwrap();
            }
            h
        };
        p.run(&host(), 200, &[]);
        let h = host();
        let before = h.host_calls();
        p.run(&h, 200, &[]);
        h.host_calls() - before
    };
    let http = calls("application/json", false);
    // The trailers hold it: one read; a trailers-only answer: the headers too.
    assert_eq!(calls("application/grpc", true), http + 1);
    assert_eq!(calls("application/grpc", false), http + 2);
    assert_eq!(calls("application/json", true), http);
}

#[test]
fn hostile_requests_never_trap_and_still_count() {
    let p = Proxy::new(
        r#"{"reporter":"source","peer_metadata":{"enabled":true},"trace":{"start_when_absent":true},"access_log":{"max_field_bytes":64}}"#,
    );
    let huge = vec![b'x'; 1 << 20];
    let mut binary: Vec<u8> = (0u8..=255).collect();
    binary.extend_from_slice(b";response_code=200;reporter=destination");
    let hosts = [
        p.envoy
            .host()
            .request_header(":method", &binary)
            .request_header(":path", &huge)
            .request_header(":authority", &binary)
            .request_header("traceparent", &binary)
            .request_header("traceparent", VALID_TP)
            .request_header("content-type", &huge),
        p.envoy
            .host()
            .request_header(":authority", &huge)
            .request_header("traceparent", &huge)
            .property(attr::UPSTREAM_PEER_URI_SAN, &binary)
            .property(attr::RESPONSE_FLAGS, int(-1))
            .property(attr::REQUEST_DURATION, int(-5))
            .property(attr::RESPONSE_TOTAL_SIZE, [1, 2, 3]),
        p.envoy.host().failing_header_reads(),
    ];
    for host in &hosts {
        p.run(
            host,
            200,
            &[("x-mesh-peer-metadata", "workload=a;namespace=b")],
        );
        let line = access_line(host);
        assert!(line["path"].as_str().unwrap().len() <= 64);
    }
    let total: i64 = p.series().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3);
    for (labels, _) in p.series() {
        assert_eq!(labels["response_code"], "200");
        assert_eq!(labels["reporter"], "source");
    }
}

#[test]
fn the_verdict_paths_name_the_published_keys() {
    for (path, key) in [
        (attr::CANARY_VERDICT, decision::CANARY),
        (attr::RATELIMIT_VERDICT, decision::RATELIMIT),
        (attr::INTENTIONS_VERDICT, decision::INTENTIONS),
    ] {
        let whole = format!("{}{key}", sdk_shim::decision::PREFIX);
        assert_eq!(path, [sdk_shim::batch::FILTER_STATE, whole.as_str()]);
    }
    // The four log-time lists differ only by the local SAN and the verdicts.
    let (plain, verdicts) = attr::AT_LOG_VERDICTS.split_at(attr::AT_LOG.len());
    assert_eq!(plain, attr::AT_LOG);
    assert_eq!(
        verdicts,
        &attr::AT_LOG_MTLS_VERDICTS[attr::AT_LOG_MTLS.len()..]
    );
}
