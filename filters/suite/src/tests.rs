use super::*;
use filter_canary::CanaryRoot;
use filter_intentions::IntentionsRoot;
use filter_ratelimit::RateLimitRoot;
use filter_telemetry::TelemetryRoot;
use mesh_core::decision;
use sdk_shim::testing::FakeHost;
use sdk_shim::HeaderMap;

fn configure(json: &str) -> (SuiteRoot, FakeHost, bool) {
    let host = FakeHost::new();
    let mut root = SuiteRoot::default();
    let ok = root.on_configure(&host, json.as_bytes());
    (root, host, ok)
}

/// Runs one request through a new filter of `root`, the upstream answering 200.
fn serve<R: RootFilter>(root: &R, req: &FakeHost) {
    let mut f = root.new_http();
    f.on_request_headers(req, true);
    req.upstream_responds(200, &[]);
    f.on_response_headers(req, true);
    f.on_log(req);
}

#[test]
fn unknown_capability_is_rejected_with_its_name() {
    let (_, host, ok) = configure(r#"{"tracing": {}}"#);
    assert!(!ok);
    let errors = host.logs_at(LogLevel::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("suite: invalid configuration: tracing: unknown field"));
}

#[test]
fn a_bad_capability_config_is_rejected_and_named() {
    let (_, host, ok) = configure(r#"{"ratelimit": {"rules": [], "bogus": 1}}"#);
    assert!(!ok);
    let errors = host.logs_at(LogLevel::Error);
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("ratelimit: invalid configuration")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("suite: invalid configuration: ratelimit:")),
        "{errors:?}"
    );
}

#[test]
fn empty_config_runs_nothing_and_passes_requests() {
    let (root, _, ok) = configure("");
    assert!(ok);
    let host = FakeHost::new().request("GET", "reviews", "/");
    let mut f = root.new_http();
    assert_eq!(f.on_request_headers(&host, true), Action::Continue);
    assert!(host.local_reply().is_none());
}

const ALL: &str = r#"{
  "telemetry": {"reporter": "destination",
                "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"}},
  "intentions": {"trust_domain": "mesh.local", "destination": "reviews", "default_action": "allow",
                 "intentions": [{"source": "legacy/*", "action": "deny"}]},
  "ratelimit": {"rules": [{"name": "all", "limit": {"requests": 1, "per": "1h"}}], "max_keys": 16},
  "canary": {"services": [{"host": "reviews",
             "subsets": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 1}]}]}
}"#;

#[test]
fn export_decisions_false_keeps_verdicts_off_the_host() {
    let json = ALL.replacen('{', r#"{"export_decisions": false,"#, 1);
    let (root, host, ok) = configure(&json);
    assert!(ok, "{:?}", host.logs());
    let req = FakeHost::new()
        .with_store(host.store())
        .request("GET", "reviews", "/api");
    serve(&root, &req);
    let line = req
        .logs_at(LogLevel::Info)
        .pop()
        .expect("one access log line");
    assert!(line.contains(r#""canary":"v2""#), "{line}");
    for key in [decision::CANARY, decision::RATELIMIT, decision::INTENTIONS] {
        assert_eq!(
            req.property_value(&[key]),
            None,
            "{key} must not reach the host"
        );
    }
}

#[test]
fn every_capability_runs_in_one_pass_and_hands_over_its_verdicts() {
    let (root, host, ok) = configure(ALL);
    assert!(ok, "{:?}", host.logs());
    let req = FakeHost::new()
        .with_store(host.store())
        .with_metrics(host.metrics())
        .request("GET", "reviews:9080", "/api");
    let mut f = root.new_http();
    assert_eq!(f.on_request_headers(&req, true), Action::Continue);
    // canary routed, ratelimit admitted, intentions allowed: no reply, route header set.
    assert!(req.local_reply().is_none());
    assert_eq!(
        req.request_header_str("x-canary-subset").as_deref(),
        Some("v2")
    );
    req.upstream_responds(200, &[]);
    f.on_response_headers(&req, true);
    f.on_log(&req);
    // Telemetry's access log line carries the other capabilities' verdicts.
    let line = req
        .logs_at(LogLevel::Info)
        .pop()
        .expect("one access log line");
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["canary"], "v2");
    assert_eq!(log["ratelimit"], "allowed");
    assert_eq!(log["intentions"], "allow:default");
    // By default the verdicts also reach filter state, as with the single modules.
    assert_eq!(req.property_value(&[decision::CANARY]).unwrap(), b"v2");
    assert_eq!(
        req.property_value(&[decision::RATELIMIT]).unwrap(),
        b"allowed"
    );
    assert_eq!(
        req.property_value(&[decision::INTENTIONS]).unwrap(),
        b"allow:default"
    );

    // The second request exceeds the 1-per-hour rule: 429 and canary does not run.
    let req2 = FakeHost::new()
        .with_store(host.store())
        .with_metrics(host.metrics())
        .request("GET", "reviews", "/api");
    let mut f2 = root.new_http();
    assert_eq!(f2.on_request_headers(&req2, true), Action::Pause);
    assert_eq!(req2.local_reply().map(|r| r.status), Some(429));
    assert!(req2
        .header_strings(HeaderMap::Request, "x-canary-subset")
        .is_empty());
}

/// Every suite configuration shipped in envoy-config/suite parses and validates.
#[test]
fn shipped_configurations_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy-config/suite");
    let mut configs = vec![std::fs::read_to_string(format!("{dir}/plugin-config.json")).unwrap()];
    let bootstrap = std::fs::read_to_string(format!("{dir}/envoy.yaml")).unwrap();
    // The bootstrap embeds the same JSON as plugin-config.json.
    let start = bootstrap.find("value: |").unwrap();
    let embedded: String = bootstrap[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("vm_config:"))
        .collect::<Vec<_>>()
        .join("\n");
    let a: serde_json::Value = serde_json::from_str(&embedded).unwrap();
    let mut b: serde_json::Value = serde_json::from_str(&configs[0]).unwrap();
    // The example names its schema for editors; the bootstrap has no need to.
    b.as_object_mut().unwrap().remove("$schema");
    assert_eq!(a, b, "envoy.yaml and plugin-config.json differ");
    // The Istio resources' pluginConfig blocks, as JSON.
    let istio = std::fs::read_to_string(format!("{dir}/istio/wasmplugin.yaml")).unwrap();
    for doc in istio.split("\n---\n") {
        let v: serde_json::Value = serde_yaml::from_str(doc).unwrap();
        configs.push(v["spec"]["pluginConfig"].to_string());
    }
    assert_eq!(configs.len(), 3);
    for c in configs {
        let (_, host, ok) = configure(&c);
        assert!(ok, "{c}: {:?}", host.logs());
    }
}

/// The host of one request through root `R`, after a first request warmed per-series state.
fn second_request<R: RootFilter + Default>(config: &str) -> FakeHost {
    second_request_with::<R>(config, |h| h)
}

/// [`second_request`] with the requests' host set up by `setup` (a connection, say).
fn second_request_with<R: RootFilter + Default>(
    config: &str,
    setup: impl Fn(FakeHost) -> FakeHost,
) -> FakeHost {
    let host = FakeHost::new();
    let mut root = R::default();
    assert!(
        root.on_configure(&host, config.as_bytes()),
        "{config}: {:?}",
        host.logs()
    );
    let run = || {
        let req = setup(
            FakeHost::new()
                .with_store(host.store())
                .with_metrics(host.metrics()),
        )
        .request("GET", "reviews", "/api");
        serve(&root, &req);
        req
    };
    run();
    run()
}

/// Host calls of one request through root `R` (after a first request warmed per-series state).
fn calls_per_request<R: RootFilter + Default>(config: &str) -> u64 {
    second_request::<R>(config).host_calls()
}

#[test]
fn one_pass_costs_fewer_host_calls_than_four_modules() {
    // ALL with a limit that the two requests measured cannot reach.
    let mut all: serde_json::Value = serde_json::from_str(ALL).unwrap();
    all["ratelimit"]["rules"][0]["limit"]["requests"] = 1_000_000.into();
    let cfg = |cap: &str| all[cap].to_string();
    let singles = calls_per_request::<TelemetryRoot>(&cfg("telemetry"))
        + calls_per_request::<IntentionsRoot>(&cfg("intentions"))
        + calls_per_request::<RateLimitRoot>(&cfg("ratelimit"))
        + calls_per_request::<CanaryRoot>(&cfg("canary"));
    let suite = calls_per_request::<SuiteRoot>(&all.to_string());
    // Telemetry reads the three verdicts from memory (alone, it reads them from filter state
    // in its log-time read: no call of their own either); the peer certificate (on
    // plaintext, once the VM has seen one such request, `connection.mtls` alone), which
    // intentions and telemetry both need, is read once; so is the request header map
    // (telemetry, intentions and canary each read it whole alone); and telemetry's start
    // time is the clock read that rate limiting uses.
    assert_eq!(suite, singles - 4, "suite {suite}, four modules {singles}");
    all["export_decisions"] = false.into();
    let quiet = calls_per_request::<SuiteRoot>(&all.to_string());
    assert_eq!(quiet, singles - 7, "without exporting the verdicts");
}

#[test]
fn a_request_makes_exactly_these_host_calls() {
    let mut all: serde_json::Value = serde_json::from_str(ALL).unwrap();
    all["ratelimit"]["rules"][0]["limit"]["requests"] = 1_000_000.into();
    all["export_decisions"] = false.into();
    // Series names carry every label: keep the metric's name.
    let calls: Vec<String> = second_request::<SuiteRoot>(&all.to_string())
        .host_call_log()
        .into_iter()
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .collect();
    // The bucket's slot, in the plugin's namespace (FakeHost names no plugin).
    let ns = sdk_shim::Namespace::of_plugin(&sdk_shim::testing::FakeHost::new(), None);
    let slot = ns.key("ratelimit.2/11");
    let expected: [&str; 16] = [
        // Request headers: the whole map once (every header read is served from it), the
        // clock once, the peer certificate's SAN once for every capability (on plaintext it
        // finds nothing: no data to hand over).
        "headers Request",
        "now_nanos",
        "property connection.uri_san_peer_certificate",
        "increment_metric intentions.default.allowed",
        &format!("shared_get {slot}"),
        &format!("shared_set {slot}"),
        "increment_metric ratelimit.all.allowed",
        // The canary's draw (Envoy serves it from a 256-byte block of host entropy).
        "fill_random",
        "set_header Request x-canary-subset",
        "increment_metric canary.reviews.v2.decisions",
        // Log: the five response attributes in one read, with `connection.mtls` (a peer
        // without a SAN: a certificate or none, for the series' security policy), the
        // series, the access line.
        "properties response.code,response.flags,request.duration,request.total_size,response.total_size,connection.mtls",
        "increment_metric istio_requests_total",
        "record_metric istio_request_duration_milliseconds",
        "record_metric istio_request_bytes",
        "record_metric istio_response_bytes",
        "log",
    ];
    assert_eq!(calls, expected);
}

/// Host calls that return data to the module: each costs about 10k instructions in Envoy
/// (the host enters the VM to allocate the answer); the others, and a property read that
/// finds nothing, about 1k.
fn data_calls(host: &FakeHost) -> Vec<String> {
    let returns_data = ["header ", "headers ", "properties ", "shared_get "];
    host.host_call_log()
        .into_iter()
        .filter(|c| match c.strip_prefix("property ") {
            Some(path) => {
                let path: Vec<&str> = path.split('.').collect();
                host.property_value(&path).is_some()
            }
            None => returns_data.iter().any(|p| c.starts_with(p)),
        })
        .collect()
}

#[test]
fn a_request_makes_three_calls_that_return_data_on_plaintext_and_four_on_mtls() {
    let mut all: serde_json::Value = serde_json::from_str(ALL).unwrap();
    all["ratelimit"]["rules"][0]["limit"]["requests"] = 1_000_000.into();
    let config = all.to_string();
    let plaintext = second_request::<SuiteRoot>(&config);
    let sidecar = second_request_with::<SuiteRoot>(&config, |h| {
        h.property(&["connection", "mtls"], [1])
            .property(
                &["connection", "uri_san_peer_certificate"],
                "spiffe://cluster.local/ns/default/sa/web",
            )
            .property(
                &["connection", "uri_san_local_certificate"],
                "spiffe://cluster.local/ns/default/sa/reviews",
            )
    });
    // The header map, the bucket, the log-time attributes (with `connection.mtls`); the
    // SAN read found nothing.
    let calls = data_calls(&plaintext);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls.iter().any(|c| c.ends_with(",connection.mtls")),
        "{calls:?}"
    );
    assert!(plaintext
        .host_call_log()
        .iter()
        .all(|c| c != "property connection.mtls"));
    // With mTLS the peer's SAN instead of the flag (read once for every capability; a SAN
    // means a certificate); the local one (a label of the series) comes with the log-time
    // attributes. The peer's SAN stays a single read: it costs Envoy less than one CEL
    // expression gated on the flag (docs/benchmarks.md).
    let calls = data_calls(&sidecar);
    assert!(sidecar
        .host_call_log()
        .iter()
        .all(|c| c != "property connection.mtls"));
    let identity = [
        "property connection.uri_san_peer_certificate",
        "properties response.code,response.flags,request.duration,request.total_size,\
         response.total_size,connection.uri_san_local_certificate?",
    ];
    assert_eq!(calls.len(), 4, "{calls:?}");
    for p in identity {
        assert_eq!(calls.iter().filter(|c| *c == p).count(), 1, "{calls:?}");
    }
    // The identity was read and used: the series carries both principals.
    let series = sidecar
        .host_call_log()
        .into_iter()
        .find(|c| c.starts_with("increment_metric istio_requests_total"))
        .unwrap();
    assert!(
        series.contains("source_principal=spiffe://cluster.local/ns/default/sa/web"),
        "{series}"
    );
    assert!(
        series.contains("destination_principal=spiffe://cluster.local/ns/default/sa/reviews"),
        "{series}"
    );
    assert!(
        series.contains("connection_security_policy=mutual_tls"),
        "{series}"
    );
}

#[test]
fn one_ordered_list_names_every_capability_and_its_config_key() {
    let names: Vec<&str> = CAPABILITIES.iter().map(|c| c.name).collect();
    assert_eq!(names, ["telemetry", "intentions", "ratelimit", "canary"]);
    let keys: Vec<Option<&str>> = CAPABILITIES.iter().map(|c| c.decision_key).collect();
    assert_eq!(
        keys,
        [
            None,
            Some(decision::INTENTIONS),
            Some(decision::RATELIMIT),
            Some(decision::CANARY)
        ]
    );
    // Each name is the capability's key in the suite's configuration.
    for c in CAPABILITIES {
        let (_, host, ok) = configure(&format!(r#"{{"{}": {{}}}}"#, c.name));
        assert!(ok, "{}: {:?}", c.name, host.logs());
    }
}

#[test]
fn validate_gives_the_verdict_of_on_configure_and_names_the_capability() {
    for (json, field) in [
        (
            r#"{"canary": {"services": []}, "export_decisions": false}"#,
            None,
        ),
        (
            r#"{"$schema": "../schemas/suite.schema.json", "ratelimit": {"$schema": "x"}}"#,
            None,
        ),
        (r#"{"tracing": {}}"#, Some("tracing")),
        (
            r#"{"ratelimit": {"rules": [{"name": "a", "limit": {"requests": 0, "per": "1s"}}]}}"#,
            Some("ratelimit.rules[0].limit.requests"),
        ),
        (
            r#"{"intentions": {"default_action": "maybe"}}"#,
            Some("intentions.default_action"),
        ),
    ] {
        let (_, host, ok) = configure(json);
        let verdict = validate(json.as_bytes());
        assert_eq!(ok, verdict.is_ok(), "{json}: {:?} {verdict:?}", host.logs());
        assert_eq!(verdict.err().map(|e| e.field), field.map(str::to_owned));
    }
    assert!(validate_capability("canary", b"{}").is_some_and(|r| r.is_ok()));
    assert!(validate_capability("canary", br#"{"x": 1}"#).is_some_and(|r| r.is_err()));
    assert!(validate_capability("tracing", b"{}").is_none());
}

#[test]
fn a_global_check_pauses_the_pass_and_the_capabilities_after_it_run_on_the_answer() {
    let config = r#"{
        "ratelimit": {"rules": [{"name": "g", "global": {"cluster": "rls", "domain": "d"}}]},
        "canary": {"services": [{"host": "reviews",
            "subsets": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 100}]}]}
    }"#;
    let (root, _, ok) = configure(config);
    assert!(ok);
    let req = FakeHost::new().request("GET", "reviews", "/");
    let mut f = root.new_http();
    assert_eq!(f.on_request_headers(&req, true), Action::Pause);
    assert_eq!(
        req.request_header_str("x-canary-subset"),
        None,
        "canary waits"
    );
    let token = req.grpc_calls()[0].token;
    assert_eq!(
        f.on_grpc_response(&req, token, Ok(Vec::new())),
        Action::Continue
    );
    assert_eq!(
        req.request_header_str("x-canary-subset").as_deref(),
        Some("v2")
    );

    // Refused by the service: canary never runs.
    let req = FakeHost::new().request("GET", "reviews", "/");
    let mut f = root.new_http();
    assert_eq!(f.on_request_headers(&req, true), Action::Pause);
    let token = req.grpc_calls()[0].token;
    let over = [0x08, 0x02]; // overall_code: OVER_LIMIT
    assert_eq!(
        f.on_grpc_response(&req, token, Ok(over.to_vec())),
        Action::Pause
    );
    assert_eq!(req.local_reply().map(|r| r.status), Some(429));
    assert_eq!(req.request_header_str("x-canary-subset"), None);
}

/// Intentions decide while the pass lends them the peer's SAN. When telemetry has already
/// cached it (to check peer metadata), a denial's log line reads `connection.mtls` inside
/// that loan: the read must neither trap nor change the verdict.
#[test]
fn a_denial_names_an_anonymous_peer_while_the_cached_san_is_lent() {
    let config = r#"{
      "telemetry": {"reporter": "destination",
                    "workload": {"name": "reviews-v1", "namespace": "default", "service": "reviews"},
                    "peer_metadata": {"enabled": true}},
      "intentions": {"trust_domain": "mesh.local", "destination": "reviews", "default_action": "deny"}
    }"#;
    for (mtls, why) in [(false, "no_certificate"), (true, "no_uri_san")] {
        let (root, _, ok) = configure(config);
        assert!(ok);
        let req = FakeHost::new()
            .property(&["connection", "mtls"], [u8::from(mtls)])
            .request("GET", "reviews", "/api")
            .request_header("x-mesh-peer-metadata", "workload=web;namespace=shop");
        serve(&root, &req);
        assert_eq!(req.local_reply().map(|r| r.status), Some(403));
        let calls = req.host_call_log();
        let san_reads = calls
            .iter()
            .filter(|c| *c == "property connection.uri_san_peer_certificate")
            .count();
        assert_eq!(san_reads, 1, "{calls:?}");
        let logs = req.logs_at(sdk_shim::LogLevel::Info);
        assert!(
            logs.iter()
                .any(|l| l.contains(&format!("source=anonymous({why})"))),
            "{logs:?}"
        );
    }
}
