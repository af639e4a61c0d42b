//! The telemetry filter in the real Envoy (`--concurrency 2`): Istio metrics with real
//! Prometheus labels and exact counts, histograms exactly as Envoy buckets the samples the
//! access log reports, mTLS principals, peer metadata, trace context, response flags as Envoy
//! names them, the cardinality cap, label injection, bad configurations; and the shipped
//! stats tags, bootstrap and Istio resources against the filter's encoding.

// Test code: helpers outside #[test] functions may panic on unexpected input too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use mesh_e2e::{client, free_port, module_path, Envoy, Sample, Stub};
use mesh_telemetry::histogram::EnvoyHistogram;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = "envoy-config/telemetry/envoy.yaml";
const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
/// Labels on every series: Istio's standard HTTP set.
const LABELS: usize = mesh_telemetry::labels::LABEL_COUNT;

fn yaml(text: &str) -> Yaml {
    serde_yaml::from_str(text).unwrap()
}

fn map(v: &mut Yaml) -> &mut serde_yaml::Mapping {
    v.as_mapping_mut().unwrap()
}

/// The shipped bootstrap with `config`, flushing stats often so histograms show quickly.
fn start(
    stub: &Stub,
    config: Value,
    edit: impl FnOnce(&mut Yaml) + 'static,
) -> anyhow::Result<Envoy> {
    module_path("telemetry")?;
    Envoy::builder(BOOTSTRAP)
        .cluster("stub", stub)
        .plugin_config("telemetry", config)
        .concurrency(2)
        .edit(move |doc| {
            map(doc).insert("stats_flush_interval".into(), "0.2s".into());
            edit(doc);
        })
        .start()
}

fn listener_chain(doc: &mut Yaml) -> &mut serde_yaml::Mapping {
    map(&mut doc["static_resources"]["listeners"][0]["filter_chains"][0])
}

fn hcm(doc: &mut Yaml) -> &mut Yaml {
    &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

fn istio(samples: &[Sample], name: &str) -> Vec<Sample> {
    samples.iter().filter(|s| s.name == name).cloned().collect()
}

/// Polls `/stats/prometheus` until `done` holds (histograms appear after a stats flush).
fn scrape_until(envoy: &Envoy, mut done: impl FnMut(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = envoy.prometheus().unwrap();
        if done(&samples) || Instant::now() > deadline {
            return samples;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn total(samples: &[Sample], name: &str) -> f64 {
    istio(samples, name).iter().map(|s| s.value).sum()
}

/// The filter's JSON access-log lines so far, from Envoy's log.
fn access_lines(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log()
        .lines()
        .filter(|l| l.contains("wasm log") && l.contains("{\"time\""))
        .filter_map(|l| serde_json::from_str(l.get(l.find('{')?..)?).ok())
        .collect()
}

fn wait_lines(envoy: &Envoy, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = access_lines(envoy);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `statuses` through Envoy over three connections (so both workers see traffic), with
/// padding headers of growing size so byte histograms cross bucket bounds.
fn send_spread(envoy: &Envoy, statuses: &[u16]) {
    let chunks: Vec<Vec<(usize, u16)>> = (0..3)
        .map(|t| {
            statuses
                .iter()
                .copied()
                .enumerate()
                .filter(|(i, _)| i % 3 == t)
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for chunk in &chunks {
            s.spawn(move || {
                let http = client();
                for (i, status) in chunk {
                    let r = http
                        .get(envoy.url(&format!("/reviews/{i}")))
                        .header("x-stub-status", status.to_string())
                        .header("x-pad", "p".repeat(i * 41))
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), *status);
                    // Read the whole answer: a client hanging up early is flagged `DC`.
                    r.bytes().unwrap();
                }
            });
        }
    });
}

#[test]
fn counts_per_code_and_histograms_match_the_access_log() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({"reporter": "destination"}), |_| {}).unwrap();
    let mut statuses = vec![200u16; 14];
    statuses.extend([404; 9]);
    statuses.extend([503; 7]);
    send_spread(&envoy, &statuses);
    let n = statuses.len() as f64;

    let samples = scrape_until(&envoy, |s| {
        total(s, "istio_request_duration_milliseconds_count") >= n
            && total(s, "istio_response_bytes_count") >= n
    });
    let requests = istio(&samples, "istio_requests_total");
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for (code, count) in [("200", 14.0), ("404", 9.0), ("503", 7.0)] {
        let s = requests
            .iter()
            .find(|s| s.label("response_code") == Some(code))
            .unwrap_or_else(|| panic!("no series for {code}"));
        assert_eq!(s.value, count, "{code}");
        let expect = [
            ("reporter", "destination"),
            ("source_workload", "unknown"),
            ("source_workload_namespace", "unknown"),
            ("source_principal", "unknown"),
            // From the bootstrap's node metadata, read once at configuration.
            ("destination_workload", "reviews-v1"),
            ("destination_workload_namespace", "default"),
            ("destination_service", "reviews.default.svc.cluster.local"),
            ("destination_service_name", "reviews"),
            ("destination_canonical_revision", "v1"),
            ("destination_app", "reviews"),
            ("destination_version", "v1"),
            ("destination_cluster", "Kubernetes"),
            ("source_app", "unknown"),
            ("source_version", "unknown"),
            ("source_cluster", "unknown"),
            ("request_protocol", "http"),
            // Not gRPC: empty, as Istio reports it.
            ("grpc_response_status", ""),
            ("response_flags", "-"),
            ("connection_security_policy", "none"),
        ];
        for (k, v) in expect {
            assert_eq!(s.label(k), Some(v), "{code} {k}");
        }
        assert_eq!(s.labels.len(), LABELS, "{:?}", s.labels);
    }
    assert_eq!(
        total(&samples, "istio_request_duration_milliseconds_count"),
        n
    );
    assert_eq!(
        envoy.stat("wasmcustom.telemetry.series_overflow").unwrap(),
        Some(0)
    );

    // One access-log line per request with every field; the histograms hold exactly the
    // samples those lines report, bucketed and summed the way Envoy does.
    let lines = wait_lines(&envoy, statuses.len());
    assert_eq!(lines.len(), statuses.len());
    // The response attributes were read in one CEL evaluation (the adapter logs when Envoy
    // refuses the expression and it falls back to one call per attribute).
    let log = envoy.log();
    assert!(!log.contains("read one at a time"), "{log}");
    for l in &lines {
        for k in [
            "time",
            "method",
            "path",
            "authority",
            "status",
            "duration_ms",
            "request_bytes",
            "response_bytes",
            "peer_principal",
            "trace_id",
            "response_flags",
        ] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
        assert_eq!(l["method"], "GET");
        assert!(l["path"].as_str().unwrap().starts_with("/reviews/"));
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }
    let mut crossed_a_bound = false;
    for (metric, field) in [
        ("istio_request_duration_milliseconds", "duration_ms"),
        ("istio_request_bytes", "request_bytes"),
        ("istio_response_bytes", "response_bytes"),
    ] {
        for code in [200u16, 404, 503] {
            let mut model = EnvoyHistogram::default();
            for l in lines.iter().filter(|l| l["status"] == code) {
                let v = l[field].as_u64().unwrap();
                model.record(v);
                crossed_a_bound |= field == "request_bytes" && (1000..1100).contains(&v);
            }
            let of = |suffix: &str| -> Vec<Sample> {
                istio(&samples, &format!("{metric}_{suffix}"))
                    .into_iter()
                    .filter(|s| s.label("response_code") == Some(&code.to_string()))
                    .collect()
            };
            assert_eq!(
                of("count")[0].value,
                model.count() as f64,
                "{metric} {code}"
            );
            let sum = of("sum")[0].value;
            assert!(
                (sum - model.sum()).abs() <= 1e-6 * model.sum().max(1.0),
                "{metric} {code}: {sum} vs {}",
                model.sum()
            );
            for b in of("bucket") {
                let le = b.label("le").unwrap();
                let expect = if le == "+Inf" {
                    model.count()
                } else {
                    model.cumulative(&[le.parse().unwrap()])[0]
                };
                assert_eq!(b.value, expect as f64, "{metric} {code} le={le}");
            }
        }
    }
    assert!(
        crossed_a_bound,
        "some request should weigh 1000..1100 bytes (bin starting at a bound)"
    );
}

// === mTLS ===

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "telemetry test ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Self {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate, key) PEMs for these SANs.
    fn issue(&self, sans: Vec<SanType>) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // A subject of its own: a leaf named like its CA looks self-signed to the verifier.
        params
            .distinguished_name
            .push(DnType::CommonName, "telemetry test workload");
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA and a server certificate for localhost (and `spiffe_id`) into `dir`.
    fn server_files(&self, dir: &Path, spiffe_id: Option<&str>) -> [PathBuf; 3] {
        std::fs::create_dir_all(dir).unwrap();
        let mut sans = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        sans.extend(spiffe_id.map(|id| SanType::URI(id.try_into().unwrap())));
        let (cert, key) = self.issue(sans);
        let files = [
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server-key.pem"),
        ];
        for (path, pem) in files.iter().zip([&self.ca_pem, &cert, &key]) {
            std::fs::write(path, pem).unwrap();
        }
        files
    }

    fn client(&self, spiffe_id: &str) -> reqwest::blocking::Client {
        self.client_with(vec![SanType::URI(spiffe_id.try_into().unwrap())])
    }

    fn client_with(&self, sans: Vec<SanType>) -> reqwest::blocking::Client {
        let (cert, key) = self.issue(sans);
        reqwest::blocking::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }
}

/// Makes the listener require a client certificate signed by the test CA.
fn require_mtls(files: [PathBuf; 3]) -> impl FnOnce(&mut Yaml) {
    move |doc| {
        let [ca, cert, key] = files.map(|p| p.display().to_string());
        let tls = yaml(&format!(
            r#"
name: envoy.transport_sockets.tls
typed_config:
  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
  require_client_certificate: true
  common_tls_context:
    tls_certificates: [{{certificate_chain: {{filename: "{cert}"}}, private_key: {{filename: "{key}"}}}}]
    validation_context: {{trusted_ca: {{filename: "{ca}"}}}}
"#
        ));
        listener_chain(doc).insert("transport_socket".into(), tls);
    }
}

#[test]
fn mtls_principal_and_trusted_peer_metadata_label_the_source() {
    let pki = Pki::new();
    let dir =
        mesh_e2e::repo_root().join(format!("target/e2e/telemetry-mtls-{}", std::process::id()));
    let files = pki.server_files(&dir, Some(REVIEWS));
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(
        &stub,
        json!({"peer_metadata": {"enabled": true}}),
        require_mtls(files),
    )
    .unwrap();
    let web = pki.client(WEB);
    let url = format!("https://localhost:{}/r", envoy.port());
    let header = "x-mesh-peer-metadata";

    for _ in 0..3 {
        assert_eq!(web.get(&url).send().unwrap().status(), 200);
    }
    // A sidecar's metadata over mTLS names the workload; it is stripped before the app.
    for _ in 0..2 {
        let r = web
            .get(&url)
            .header(
                header,
                "workload=web-v2;namespace=shop;service=web;revision=v2;app=web;version=v2;cluster=east",
            )
            .send()
            .unwrap();
        // We answer with our own metadata, over mTLS only.
        assert_eq!(
            r.headers()[header],
            "workload=reviews-v1;namespace=default;service=reviews;revision=v1;app=reviews;version=v1;cluster=Kubernetes"
        );
        let echo: Value = r.json().unwrap();
        assert!(echo["headers"].get(header).is_none(), "{echo}");
    }
    // Metadata contradicting the certificate's namespace is ignored.
    let r = web
        .get(&url)
        .header(header, "workload=admin;namespace=kube-system")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 6.0);
    let requests = istio(&samples, "istio_requests_total");
    let by_workload = |w: &str| {
        requests
            .iter()
            .find(|s| s.label("source_workload") == Some(w))
            .cloned()
    };
    let plain = by_workload("web").expect("series from the SPIFFE ID");
    assert_eq!(plain.value, 4.0);
    assert_eq!(plain.label("source_principal"), Some(WEB));
    // Our own certificate's SAN, read with the log-time attributes.
    assert_eq!(plain.label("destination_principal"), Some(REVIEWS));
    assert_eq!(plain.label("source_workload_namespace"), Some("shop"));
    assert_eq!(
        plain.label("connection_security_policy"),
        Some("mutual_tls")
    );
    let meta = by_workload("web-v2").expect("series from peer metadata");
    assert_eq!(meta.value, 2.0);
    assert_eq!(meta.label("source_canonical_service"), Some("web"));
    assert_eq!(meta.label("source_canonical_revision"), Some("v2"));
    assert_eq!(meta.label("source_app"), Some("web"));
    assert_eq!(meta.label("source_version"), Some("v2"));
    assert_eq!(meta.label("source_cluster"), Some("east"));
    // A SPIFFE ID names no app, version or cluster.
    assert_eq!(plain.label("source_app"), Some("unknown"));
    assert_eq!(plain.label("source_cluster"), Some("unknown"));
    assert_eq!(meta.label("source_principal"), Some(WEB));
    assert!(by_workload("admin").is_none());
    assert_eq!(
        envoy
            .stat("wasmcustom.telemetry.peer_metadata_rejected")
            .unwrap(),
        Some(1)
    );

    let lines = wait_lines(&envoy, 6);
    assert!(
        lines.iter().all(|l| l["peer_principal"] == WEB),
        "{lines:#?}"
    );
    assert_batched(&envoy);
    let _ = std::fs::remove_dir_all(dir);
}

/// The shim's line when a batched read failed and its properties were read one by one
/// (`sdk_shim::batch::FAILED_LOG`).
const BATCH_FAILED: &str = "a batched property read failed";

/// The shim's line when Envoy refused to compile a set into one expression.
const NOT_PREPARED: &str = "are read one at a time: expr_create gave";

/// Waits until `requests` requests are recorded, all in one series, and checks `labels` on
/// it.
fn assert_one_series(envoy: &Envoy, requests: f64, labels: &[(&str, &str)]) {
    let samples = scrape_until(envoy, |s| total(s, "istio_request_bytes_count") >= requests);
    let series = istio(&samples, "istio_requests_total");
    assert_eq!(series.len(), 1, "{series:#?}");
    let s = &series[0];
    assert_eq!(s.value, requests);
    for (label, value) in labels {
        assert_eq!(s.label(label), Some(*value), "{label}");
    }
}

/// Every log-time read of these requests was one CEL evaluation: each set compiled, and
/// none fell back.
fn assert_batched(envoy: &Envoy) {
    let log = envoy.log();
    assert!(!log.contains(BATCH_FAILED), "{log}");
    assert!(!log.contains(NOT_PREPARED), "{log}");
}

#[test]
fn a_server_certificate_without_a_uri_san_names_no_destination_principal() {
    let pki = Pki::new();
    let dir = mesh_e2e::repo_root().join(format!(
        "target/e2e/telemetry-no-san-{}",
        std::process::id()
    ));
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({}), require_mtls(pki.server_files(&dir, None))).unwrap();
    let web = pki.client(WEB);
    let url = format!("https://localhost:{}/r", envoy.port());
    for _ in 0..2 {
        assert_eq!(web.get(&url).send().unwrap().status(), 200);
    }
    // The missing SAN must not cost the request its other log-time attributes.
    assert_one_series(
        &envoy,
        2.0,
        &[
            ("destination_principal", "unknown"),
            ("source_principal", WEB),
            ("connection_security_policy", "mutual_tls"),
            ("response_code", "200"),
        ],
    );
    let lines = wait_lines(&envoy, 2);
    assert!(
        lines
            .iter()
            .all(|l| l["status"] == 200 && l["duration_ms"].is_u64()),
        "{lines:#?}"
    );
    // `has()` kept the missing SAN from failing the batched read.
    assert_batched(&envoy);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_client_certificate_without_a_uri_san_is_still_mutual_tls() {
    let pki = Pki::new();
    let dir = mesh_e2e::repo_root().join(format!(
        "target/e2e/telemetry-client-no-san-{}",
        std::process::id()
    ));
    let files = pki.server_files(&dir, Some(REVIEWS));
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({}), require_mtls(files)).unwrap();
    // A SPIFFE ID in a DNS SAN names no one.
    let dns_only = pki.client_with(vec![SanType::DnsName("web.shop.svc".try_into().unwrap())]);
    let url = format!("https://localhost:{}/r", envoy.port());
    for _ in 0..2 {
        assert_eq!(dns_only.get(&url).send().unwrap().status(), 200);
    }
    // The filter read only the SAN per request (none): whether a certificate came is
    // `connection.mtls` in the log-time read, and it said so; then our own principal.
    assert_one_series(
        &envoy,
        2.0,
        &[
            ("source_principal", "unknown"),
            ("source_workload", "unknown"),
            ("destination_principal", REVIEWS),
            ("connection_security_policy", "mutual_tls"),
            ("response_code", "200"),
        ],
    );
    assert_batched(&envoy);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_abandoned_request_is_counted_and_its_attributes_read_one_at_a_time() {
    // An upstream that accepts and never answers.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hang.incoming() {
            held.push(stream);
        }
    });
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({}), move |doc| {
        let cluster = mesh_e2e::envoy::loopback_cluster("hang", hang_port).unwrap();
        doc["static_resources"]["clusters"]
            .as_sequence_mut()
            .unwrap()
            .push(cluster);
        hcm(doc)["route_config"]["virtual_hosts"][0]["routes"] = yaml(
            r#"
- match: {prefix: "/", headers: [{name: x-hang, present_match: true}]}
  route: {cluster: hang}
- match: {prefix: "/"}
  route: {cluster: stub}
"#,
        );
    })
    .unwrap();
    // A normal request first: its log-time read is one batch.
    assert_eq!(client().get(envoy.url("/")).send().unwrap().status(), 200);
    let impatient = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(impatient
        .get(envoy.url("/"))
        .header("x-hang", "1")
        .send()
        .is_err());
    // No response, so no `response.code`: the batch fails, each attribute is read alone, and
    // the request still counts, as Istio counts it (code 0, downstream disconnect).
    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 2.0);
    let requests = istio(&samples, "istio_requests_total");
    let abandoned = requests
        .iter()
        .find(|s| s.label("response_code") == Some("0"))
        .unwrap_or_else(|| panic!("{requests:#?}"));
    assert_eq!(abandoned.value, 1.0);
    assert_eq!(abandoned.label("response_flags"), Some("DC"));
    let lines = wait_lines(&envoy, 2);
    assert!(
        lines
            .iter()
            .any(|l| l["status"].is_null() && l["response_flags"] == "DC"),
        "{lines:#?}"
    );
    let log = envoy.log();
    assert_eq!(log.matches(BATCH_FAILED).count(), 1, "{log}");
}

#[test]
fn peer_metadata_without_mtls_is_stripped_and_ignored() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({"peer_metadata": {"enabled": true}}), |_| {}).unwrap();
    let r = client()
        .get(envoy.url("/"))
        .header("x-mesh-peer-metadata", "workload=web;namespace=shop")
        .send()
        .unwrap();
    assert!(r.headers().get("x-mesh-peer-metadata").is_none());
    let echo: Value = r.json().unwrap();
    assert!(echo["headers"].get("x-mesh-peer-metadata").is_none());
    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 1.0);
    assert_eq!(
        istio(&samples, "istio_requests_total")[0].label("source_workload"),
        Some("unknown")
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.telemetry.peer_metadata_rejected")
            .unwrap(),
        Some(1)
    );
}

// === trace context ===

fn echoed(r: reqwest::blocking::Response, name: &str) -> Option<String> {
    let echo: Value = r.json().unwrap();
    echo["headers"][name][0].as_str().map(str::to_owned)
}

#[test]
fn traceparent_is_kept_replaced_or_started() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({"trace": {"start_when_absent": true}}), |_| {}).unwrap();
    let http = client();
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let send = |tp: Option<&str>| {
        let mut rq = http.get(envoy.url("/t")).header("tracestate", "vendor=1");
        if let Some(tp) = tp {
            rq = rq.header("traceparent", tp);
        }
        let echo: Value = rq.send().unwrap().json().unwrap();
        let h = |n: &str| echo["headers"][n].as_array().cloned().unwrap_or_default();
        (h("traceparent"), h("tracestate"))
    };

    let (tp, ts) = send(Some(valid));
    assert_eq!(
        (tp, ts),
        (vec![json!(valid)], vec![json!("vendor=1")]),
        "kept with its tracestate"
    );

    let (tp, ts) = send(Some(
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ));
    assert_eq!(tp.len(), 1);
    let replaced = tp[0].as_str().unwrap().to_owned();
    assert!(replaced.starts_with("00-") && replaced.len() == 55 && replaced != valid);
    assert!(ts.is_empty(), "tracestate of a replaced context is dropped");

    let (tp, ts) = send(None);
    let started = tp[0].as_str().unwrap().to_owned();
    assert_eq!(started.len(), 55);
    assert_ne!(started, replaced);
    assert_eq!(ts, vec![json!("vendor=1")]);

    let lines = wait_lines(&envoy, 3);
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&valid[3..35], &replaced[3..35], &started[3..35]]);
    assert_eq!(
        envoy.stat("wasmcustom.telemetry.trace_replaced").unwrap(),
        Some(1)
    );
    assert_eq!(
        envoy.stat("wasmcustom.telemetry.trace_started").unwrap(),
        Some(1)
    );

    // Without start_when_absent, a request without context stays without.
    let envoy = start(&stub, json!({}), |_| {}).unwrap();
    let r = client().get(envoy.url("/t")).send().unwrap();
    assert_eq!(echoed(r, "traceparent"), None);
}

// === response flags, injection, cap, config ===

#[test]
fn response_flags_are_the_ones_envoy_logs() {
    let stub = Stub::start("reviews").unwrap();
    let dead = free_port().unwrap();
    let envoy = start(&stub, json!({}), move |doc| {
        let cluster = mesh_e2e::envoy::loopback_cluster("dead", dead).unwrap();
        doc["static_resources"]["clusters"].as_sequence_mut().unwrap().push(cluster);
        let routes = yaml(
            r#"
- match: {prefix: "/", headers: [{name: x-dead, present_match: true}]}
  route: {cluster: dead}
- match: {prefix: "/", headers: [{name: x-no-route, present_match: true, invert_match: true}]}
  route: {cluster: stub}
"#,
        );
        let hcm = hcm(doc);
        hcm["route_config"]["virtual_hosts"][0]["routes"] = routes;
        let log = yaml(
            r#"
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format: {text_format_source: {inline_string: "ENVOY-FLAGS %RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}
"#,
        );
        map(hcm).insert("access_log".into(), log);
    })
    .unwrap();
    let http = client();
    assert_eq!(
        http.get(envoy.url("/"))
            .header("x-dead", "1")
            .send()
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        http.get(envoy.url("/"))
            .header("x-no-route", "1")
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(http.get(envoy.url("/")).send().unwrap().status(), 200);

    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 3.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let envoy_flags: BTreeMap<String, String> = loop {
        let found: BTreeMap<String, String> = envoy
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("ENVOY-FLAGS "))
            .filter_map(|l| l.split_once(' '))
            .map(|(c, f)| (c.to_owned(), f.trim().to_owned()))
            .collect();
        if found.len() >= 3 || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(envoy_flags.len(), 3, "{envoy_flags:?}");
    let lines = wait_lines(&envoy, 3);
    for (code, flags) in &envoy_flags {
        let series = istio(&samples, "istio_requests_total")
            .into_iter()
            .find(|s| s.label("response_code") == Some(code))
            .unwrap();
        assert_eq!(
            series.label("response_flags"),
            Some(flags.as_str()),
            "code {code}"
        );
        let line = lines
            .iter()
            .find(|l| l["status"].as_u64().map(|s| s.to_string()).as_deref() == Some(code.as_str()))
            .unwrap();
        assert_eq!(line["response_flags"], flags.as_str());
    }
    assert_eq!(envoy_flags["503"], "UF");
    assert_eq!(envoy_flags["404"], "NR");
    assert_eq!(envoy_flags["200"], "-");
}

// === gRPC ===

/// An HTTP/1.1 upstream answering every request as a gRPC server does: 200, one message and
/// `grpc-status: 14` in the trailers (the stub sends no trailers). Its port.
fn grpc_upstream_with_trailers() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Lives as long as the test process.
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer_with_trailers(conn));
        }
    });
    port
}

fn answer_with_trailers(mut conn: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = |b: &[u8]| b.windows(4).position(|w| w == b"\r\n\r\n");
    loop {
        // The test's requests have no body: one head, one answer, on a kept-alive connection.
        while head_end(&buf).is_none() {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = head_end(&buf).unwrap() + 4;
        buf.drain(..end);
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n\
                      transfer-encoding: chunked\r\n\r\n\
                      5\r\n\0\0\0\0\0\r\n0\r\ngrpc-status: 14\r\ngrpc-message: down\r\n\r\n";
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn grpc_status_comes_from_trailers_headers_or_the_http_code() {
    let stub = Stub::start("reviews").unwrap();
    let upstream = grpc_upstream_with_trailers();
    let envoy = start(&stub, json!({}), move |doc| {
        // Envoy drops HTTP/1 trailers unless the cluster asks for them.
        let cluster = yaml(&format!(
            r#"
name: grpc
type: STATIC
connect_timeout: 1s
load_assignment: {{cluster_name: grpc, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]}}
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {{http_protocol_options: {{enable_trailers: true}}}}
"#
        ));
        doc["static_resources"]["clusters"].as_sequence_mut().unwrap().push(cluster);
        // A trailers-only answer: Envoy's direct response with grpc-status in its headers.
        let routes = yaml(
            r#"
- match: {path: /pkg.Svc/Trailers}
  route: {cluster: grpc}
- match: {path: /pkg.Svc/TrailersOnly}
  direct_response: {status: 200}
  response_headers_to_add:
  - header: {key: content-type, value: application/grpc}
  - header: {key: grpc-status, value: "7"}
- match: {prefix: "/"}
  route: {cluster: stub}
"#,
        );
        hcm(doc)["route_config"]["virtual_hosts"][0]["routes"] = routes;
    })
    .unwrap();
    let http = client();
    let grpc = |path: &str, stub_status: Option<&str>| {
        let mut rq = http
            .post(envoy.url(path))
            .header("content-type", "application/grpc");
        if let Some(s) = stub_status {
            rq = rq.header("x-stub-status", s);
        }
        let r = rq.send().unwrap();
        let code = r.status().as_u16();
        r.bytes().unwrap();
        code
    };
    assert_eq!(grpc("/pkg.Svc/Trailers", None), 200);
    assert_eq!(grpc("/pkg.Svc/Trailers", None), 200);
    assert_eq!(grpc("/pkg.Svc/TrailersOnly", None), 200);
    assert_eq!(grpc("/pkg.Svc/Plain", Some("404")), 404);
    assert_eq!(client().get(envoy.url("/")).send().unwrap().status(), 200);

    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 5.0);
    let requests = istio(&samples, "istio_requests_total");
    assert_eq!(requests.len(), 4, "{requests:#?}");
    let series = |status: &str| {
        requests
            .iter()
            .find(|s| s.label("grpc_response_status") == Some(status))
            .unwrap_or_else(|| panic!("no series with grpc_response_status={status:?}"))
    };
    // (grpc-status, protocol, HTTP code, count): from the trailers; from the headers of a
    // trailers-only answer; inferred from HTTP 404 (UNIMPLEMENTED); empty outside gRPC.
    for (status, protocol, code, count) in [
        ("14", "grpc", "200", 2.0),
        ("7", "grpc", "200", 1.0),
        ("12", "grpc", "404", 1.0),
        ("", "http", "200", 1.0),
    ] {
        let s = series(status);
        assert_eq!(s.label("request_protocol"), Some(protocol), "{status}");
        assert_eq!(s.label("response_code"), Some(code), "{status}");
        assert_eq!(s.value, count, "{status}");
        assert_eq!(s.labels.len(), LABELS, "{:?}", s.labels);
    }
    // The access lines carry the same codes, gRPC requests only.
    let lines = wait_lines(&envoy, 5);
    let mut codes: Vec<(String, Option<i64>)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap_or_default().to_owned(),
                l.get("grpc_status").and_then(Value::as_i64),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("/".to_owned(), None),
            ("/pkg.Svc/Plain".to_owned(), Some(12)),
            ("/pkg.Svc/Trailers".to_owned(), Some(14)),
            ("/pkg.Svc/Trailers".to_owned(), Some(14)),
            ("/pkg.Svc/TrailersOnly".to_owned(), Some(7)),
        ]
    );
}

#[test]
fn a_hostile_authority_cannot_forge_labels() {
    let stub = Stub::start("reviews").unwrap();
    let config = json!({
        "reporter": "source",
        "workload": {"name": "web-v1", "namespace": "shop", "service": "web", "revision": "v1",
                     "app": "web", "version": "v1"},
        "peer_metadata": {"enabled": true}
    });
    let envoy = start(&stub, config, |_| {}).unwrap();
    let http = client();
    let forged = "x;response_code=200;reporter=destination";
    let r = http
        .get(envoy.url("/"))
        .header("host", forged)
        .header("x-stub-status", "503")
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    // The source side tells the destination who calls (the cluster from the node).
    assert_eq!(
        echoed(r, "x-mesh-peer-metadata").as_deref(),
        Some("workload=web-v1;namespace=shop;service=web;revision=v1;app=web;version=v1;cluster=Kubernetes")
    );
    // Dots in odd places go through Envoy's stat names unharmed (the root's dot is dropped).
    let r = http
        .get(envoy.url("/"))
        .header("host", "a..b.:80")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 2.0);
    let requests = istio(&samples, "istio_requests_total");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let s = requests
        .iter()
        .find(|s| s.label("response_code") == Some("503"))
        .unwrap();
    assert_eq!(s.label("reporter"), Some("source"));
    assert_eq!(
        s.label("destination_service"),
        Some("x%3Bresponse_code%3D200%3Breporter%3Ddestination")
    );
    assert_eq!(s.label("source_workload"), Some("web-v1"));
    assert_eq!(s.label("connection_security_policy"), Some("unknown"));
    // With reporter=source, our identity fills the source labels.
    assert_eq!(s.label("source_app"), Some("web"));
    assert_eq!(s.label("source_version"), Some("v1"));
    assert_eq!(s.label("source_cluster"), Some("Kubernetes"));
    assert_eq!(s.label("destination_app"), Some("unknown"));
    assert_eq!(s.label("grpc_response_status"), Some(""));
    assert_eq!(s.labels.len(), LABELS);
    let dots = requests
        .iter()
        .find(|s| s.label("response_code") == Some("200"))
        .unwrap();
    assert_eq!(dots.label("destination_service"), Some("a..b"));
    assert_eq!(dots.label("destination_service_name"), Some("a"));
}

#[test]
fn the_cardinality_cap_holds_across_workers() {
    let stub = Stub::start("reviews").unwrap();
    let envoy = start(&stub, json!({"max_series": 3}), |_| {}).unwrap();
    let codes = [200u16, 201, 202, 400, 401, 403, 404, 500];
    let statuses: Vec<u16> = (0..24).map(|i| codes[i % codes.len()]).collect();
    send_spread(&envoy, &statuses);
    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 24.0);
    let requests = istio(&samples, "istio_requests_total");
    let (other, admitted): (Vec<Sample>, Vec<Sample>) = requests
        .into_iter()
        .partition(|s| s.label("response_code") == Some("other"));
    assert!(admitted.len() <= 3 && !admitted.is_empty(), "{admitted:#?}");
    assert_eq!(other.len(), 1);
    let o = &other[0];
    assert_eq!(o.label("reporter"), Some("destination"));
    assert_eq!(o.label("source_workload"), Some("other"));
    let in_admitted: f64 = admitted.iter().map(|s| s.value).sum();
    assert_eq!(in_admitted + o.value, 24.0);
    assert_eq!(
        envoy.stat("wasmcustom.telemetry.series_overflow").unwrap(),
        Some(o.value as u64)
    );
    assert_eq!(
        envoy.stat("wasmcustom.telemetry.series_admitted").unwrap(),
        Some(admitted.len() as u64)
    );
}

#[test]
fn bad_configurations_keep_envoy_from_starting() {
    let stub = Stub::start("reviews").unwrap();
    for (config, expected) in [
        (
            json!({"max_series": 0}),
            "telemetry: invalid configuration: max_series: must be at least 1",
        ),
        (
            json!({"reporter": "gateway"}),
            "telemetry: invalid configuration: reporter: unknown variant `gateway`",
        ),
        (
            json!({"workload": {"nmae": "x"}}),
            "telemetry: invalid configuration: workload.nmae: unknown field `nmae`",
        ),
    ] {
        let err = match start(&stub, config.clone(), |_| {}) {
            Ok(_) => panic!("{config} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(expected), "{config}: {err}");
    }
}

// === shipped configuration files ===

fn read_config(name: &str) -> String {
    std::fs::read_to_string(
        mesh_e2e::repo_root()
            .join("envoy-config/telemetry")
            .join(name),
    )
    .unwrap()
}

/// The stats tags the filter's encoding needs, in label order.
fn expected_tags() -> Vec<(String, String)> {
    use mesh_telemetry::labels::{tag_regex, Label};
    Label::ALL
        .iter()
        .map(|l| (l.name().to_owned(), tag_regex(*l)))
        .collect()
}

fn tags_of(list: &Yaml) -> Vec<(String, String)> {
    list.as_sequence()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag_name"].as_str().unwrap().to_owned(),
                t["regex"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn istio_docs() -> Vec<Yaml> {
    read_config("istio/wasmplugin.yaml")
        .split("\n---\n")
        .map(yaml)
        .collect()
}

#[test]
fn shipped_stats_tags_bootstrap_and_istio_resources_agree() {
    // The snippet: one key, `stats_tags`, matching the encoding.
    let snippet: Yaml = yaml(&read_config("stats-tags.yaml"));
    assert_eq!(snippet.as_mapping().unwrap().len(), 1);
    assert_eq!(tags_of(&snippet["stats_tags"]), expected_tags());

    // The bootstrap uses the same list and byte buckets the filter documents.
    let boot: Yaml = yaml(&read_config("envoy.yaml"));
    assert_eq!(
        tags_of(&boot["stats_config"]["stats_tags"]),
        expected_tags()
    );
    let buckets: Vec<f64> = boot["stats_config"]["histogram_bucket_settings"][0]["buckets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    assert_eq!(buckets, mesh_telemetry::histogram::SIZE_BUCKETS);

    // Istio: a WasmPlugin in the STATS phase that fails open, with a config the filter
    // accepts, and a bootstrap override with the same tags.
    let docs: Vec<Yaml> = istio_docs();
    let plugin = docs.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(plugin["spec"]["phase"], "STATS");
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_OPEN");
    let config = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    mesh_telemetry::TelemetryConfig::from_json(&config).unwrap();
    let map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let json: Value =
        serde_json::from_str(map["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
    let override_tags: Yaml = serde_yaml::to_value(&json["stats_config"]["stats_tags"]).unwrap();
    assert_eq!(tags_of(&override_tags), expected_tags());
}

#[test]
fn the_istio_bootstrap_override_is_valid_for_envoy() {
    let docs: Vec<Yaml> = istio_docs();
    let map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let mut boot: Value =
        serde_json::from_str(map["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
    boot["static_resources"] = json!({});
    let dir = mesh_e2e::repo_root().join(format!(
        "target/e2e/telemetry-override-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("override.json");
    std::fs::write(&path, boot.to_string()).unwrap();
    let out = std::process::Command::new(mesh_e2e::install::envoy_bin().unwrap())
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A Wasm HTTP filter entry for `name`'s module with `config`.
fn wasm_filter(name: &str, config: &Value) -> Yaml {
    mesh_e2e::envoy::wasm_filter(name, &module_path(name).unwrap(), &config.to_string())
}

#[test]
fn the_access_log_carries_the_other_filters_decisions() {
    let stub = Stub::start("reviews").unwrap();
    let canary = json!({"route_header": "x-canary-subset", "services": [{"host": "reviews",
        "subsets": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 100}]}]});
    let ratelimit = json!({"rules": [{"name": "all", "match": {"path_prefix": "/"},
        "limit": {"requests": 2, "per": "24h"}}]});
    let envoy = start(&stub, json!({}), move |doc| {
        // telemetry first, then the other modules (each in its own VM), then the router.
        let filters = hcm(doc)["http_filters"].as_sequence_mut().unwrap();
        filters.insert(1, wasm_filter("ratelimit", &ratelimit));
        filters.insert(2, wasm_filter("canary", &canary));
    })
    .unwrap();
    let http = client();
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            let r = http
                .get(envoy.url("/"))
                .header("host", "reviews")
                .send()
                .unwrap();
            let status = r.status().as_u16();
            r.bytes().unwrap();
            status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let lines = wait_lines(&envoy, 3);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for l in &lines[..2] {
        assert_eq!(l["ratelimit"], "allowed", "{l}");
        assert_eq!(l["canary"], "v2", "{l}");
    }
    assert_eq!(lines[2]["status"], 429);
    assert_eq!(lines[2]["ratelimit"], "limited:all", "{}", lines[2]);
    assert!(
        lines[2].get("canary").is_none(),
        "canary never ran on the limited request"
    );
    // The verdicts, present or not, came in the one log-time read.
    assert_batched(&envoy);
    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 3.0);
    let limited = istio(&samples, "istio_requests_total")
        .into_iter()
        .find(|s| s.label("response_code") == Some("429"))
        .unwrap();
    assert_eq!(limited.value, 1.0);
}

#[test]
fn hostile_header_bytes_are_survived_and_counted() {
    let stub = Stub::start("reviews").unwrap();
    let config = json!({"peer_metadata": {"enabled": true}, "trace": {"start_when_absent": true}});
    let envoy = start(&stub, config, |_| {}).unwrap();
    let http = client();
    let bin = |b: &[u8]| reqwest::header::HeaderValue::from_bytes(b).unwrap();
    let r = http
        .get(envoy.url("/%ff%00/\u{e9}?q=\"}"))
        .header("traceparent", bin(&[0xff; 55]))
        .header("tracestate", bin(&[0x80, b'x', 0xfe]))
        .header("x-mesh-peer-metadata", bin(&[0xc3, 0x28, b';', b'=']))
        .header("x-big", "b".repeat(30_000))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().unwrap();
    let tp = echo["headers"]["traceparent"][0].as_str().unwrap();
    assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");
    assert!(echo["headers"].get("tracestate").is_none());
    assert!(echo["headers"].get("x-mesh-peer-metadata").is_none());
    let samples = scrape_until(&envoy, |s| total(s, "istio_requests_total") >= 1.0);
    assert_eq!(total(&samples, "istio_requests_total"), 1.0);
    let lines = wait_lines(&envoy, 1);
    assert_eq!(lines[0]["trace_id"].as_str(), tp.get(3..35));
    assert!(lines[0]["path"].as_str().unwrap().starts_with("/%ff%00/"));
}
