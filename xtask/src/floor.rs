//! The floor of a module's work on a host: the host calls it makes for one bench request,
//! recorded by running the filter natively against `FakeHost`, then replayed in Envoy by the
//! bench's empty fixture with none of the filter's logic. What the module costs over its
//! floor is its own code; the floor is what the host charges for the data the work needs.

use anyhow::{bail, Context};
use filter_canary::CanaryRoot;
use filter_intentions::IntentionsRoot;
use filter_ratelimit::RateLimitRoot;
use filter_suite::SuiteRoot;
use filter_telemetry::TelemetryRoot;
use sdk_shim::testing::FakeHost;
use sdk_shim::{HttpFilter, RootFilter};

/// The bench request: wrk's `GET /api/items` to Envoy's listener.
const METHOD: &str = "GET";
const AUTHORITY: &str = "127.0.0.1:10000";
const PATH: &str = "/api/items";

/// The sidecar profile's client identity (a SPIFFE URI SAN in its certificate).
pub const CLIENT_SPIFFE_ID: &str = "spiffe://mesh.local/ns/default/sa/client";
/// The Envoy under test's own identity (a URI SAN in its server certificate, as a sidecar's).
pub const SERVER_SPIFFE_ID: &str = "spiffe://mesh.local/ns/default/sa/server";

/// A 200-byte session cookie, as a browser-facing service's requests carry.
pub const COOKIE: &str = concat!(
    "session=7f3a9c2e5b8d4f1a6c0e9b3d7a5f2c8e1b4d6a9f3c7e0b2d5a8f1c4e7b0d3a6f; ",
    "theme=dim; lang=en-US; consent=analytics:1,ads:0; ",
    "cart=3f9a1c7e-5b2d-4e8f-a6c0-9d3b7e1f5a2c; ",
    "ab=checkout-v2; tz=Europe%2FParis"
);

/// The headers a mesh request carries besides the pseudo-headers, as the sidecar profile's
/// client proxy sets them (it adds `x-request-id` itself, and the router its
/// `x-envoy-expected-rq-timeout-ms`).
pub const MESH_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0 Safari/537.36"),
    ("accept", "application/json, text/plain, */*"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-US,en;q=0.9"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-for", "10.0.3.17"),
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    ("baggage", "userId=alice,serverNode=DF%2028,isProduction=false"),
    ("cookie", COOKIE),
    ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("x-b3-spanid", "00f067aa0ba902b7"),
    ("x-b3-sampled", "1"),
    ("x-envoy-attempt-count", "1"),
    ("x-envoy-peer-metadata-id", "sidecar~10.0.3.17~client-6d9f7c-x2l4k.default~default.svc.cluster.local"),
    ("x-envoy-peer-metadata", "ChoKDkFQUF9DT05UQUlORVJTEggaBmNsaWVudAoaCgpDTFVTVEVSX0lEEgwaCkt1YmVybmV0ZXMKHAoMSU5TVEFOQ0VfSVBTEgwaCjEwLjAuMy4xNw=="),
];

/// Which request a floor is recorded with: the direct profile's bare one, or the sidecar's
/// with the mesh headers and a verified client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Direct,
    Sidecar,
}

impl Request {
    fn host(self) -> FakeHost {
        let host = FakeHost::new();
        match self {
            Self::Direct => host,
            Self::Sidecar => {
                let host = MESH_HEADERS
                    .iter()
                    .chain(&[
                        ("x-request-id", "6f1d2c3b-7a8e-4f90-b1c2-d3e4f5a6b7c8"),
                        ("x-envoy-expected-rq-timeout-ms", "15000"),
                    ])
                    .fold(host, |h, (n, v)| h.request_header(n, v));
                host.property(&["connection", "mtls"], [1])
                    .property(
                        &["connection", "uri_san_peer_certificate"],
                        CLIENT_SPIFFE_ID,
                    )
                    .property(
                        &["connection", "uri_san_local_certificate"],
                        SERVER_SPIFFE_ID,
                    )
            }
        }
    }
}

/// A module's replay: the fixture's configuration text and the callbacks it must export.
#[derive(Debug)]
pub struct Replay {
    pub script: String,
    pub callbacks: u8,
}

/// The number of host calls in a replay script (its lines but the callback markers).
pub fn calls_in(script: &str) -> usize {
    script.lines().filter(|l| !l.starts_with('@')).count()
}

/// The kinds of host call the attribution chart splits a floor into, in its stacking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallClass {
    Headers,
    Properties,
    SharedData,
    Metrics,
    Log,
    Other,
}

impl CallClass {
    pub const ALL: [Self; 6] = [
        Self::Headers,
        Self::Properties,
        Self::SharedData,
        Self::Metrics,
        Self::Log,
        Self::Other,
    ];

    /// The class of one replay line (`header Request :path`, `properties a.b,c.d`, ...).
    pub fn of(line: &str) -> Self {
        match line.split(' ').next().unwrap_or("") {
            "header" | "headers" | "set_header" | "add_header" | "remove_header" => Self::Headers,
            "property" | "properties" | "set_property" => Self::Properties,
            "shared_get" | "shared_set" => Self::SharedData,
            "increment_metric" | "record_metric" | "define_metric" => Self::Metrics,
            "log" | "log_enabled" => Self::Log,
            _ => Self::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Headers => "header reads and writes",
            Self::Properties => "properties and CEL",
            Self::SharedData => "shared data",
            Self::Metrics => "metrics",
            Self::Log => "log",
            Self::Other => "other host calls",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Self::Headers => "headers",
            Self::Properties => "properties",
            Self::SharedData => "shared",
            Self::Metrics => "metrics",
            Self::Log => "log",
            Self::Other => "other",
        }
    }
}

/// `script` with only the calls of `classes` (every callback marker kept, so the fixture
/// still runs each callback).
pub fn subset(script: &str, classes: &[CallClass]) -> String {
    let mut out = String::new();
    for line in script.lines() {
        if line.starts_with('@') || classes.contains(&CallClass::of(line)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The replay of module `name` (a capability or `suite`) under `config`, for `request`.
pub fn replay(name: &str, config: &str, request: Request) -> anyhow::Result<Replay> {
    let r = match name {
        "telemetry" => record::<TelemetryRoot>(config, request),
        "intentions" => record::<IntentionsRoot>(config, request),
        "ratelimit" => record::<RateLimitRoot>(config, request),
        "canary" => record::<CanaryRoot>(config, request),
        "suite" => record::<SuiteRoot>(config, request),
        other => bail!("no floor for module {other:?}"),
    };
    r.with_context(|| format!("recording the host calls of {name}"))
}

/// Runs two requests through root `R` (the first warms per-series and per-key state, as the
/// bench's warm-up does) and writes the second one's host calls, callback by callback.
fn record<R: RootFilter + Default>(config: &str, request: Request) -> anyhow::Result<Replay> {
    let host = FakeHost::new();
    let mut root = R::default();
    if !root.on_configure(&host, config.as_bytes()) {
        bail!("the configuration is refused: {:?}", host.logs());
    }
    let mut script = String::new();
    for pass in 0..2 {
        let req = request
            .host()
            .with_store(host.store())
            .with_metrics(host.metrics())
            .with_clock(host.clock())
            .request(METHOD, AUTHORITY, PATH);
        let mut f = root.new_http();
        let mut seen = 0;
        let mut section = |name: &str, req: &FakeHost| {
            let log = req.host_call_log();
            if pass == 1 {
                script.push('@');
                script.push_str(name);
                script.push('\n');
                for call in log.get(seen..).unwrap_or_default() {
                    script.push_str(call);
                    script.push('\n');
                }
            }
            seen = log.len();
        };
        f.on_request_headers(&req, true);
        section("request_headers", &req);
        req.upstream_responds(200, &[]);
        f.on_response_headers(&req, true);
        section("response_headers", &req);
        f.on_log(&req);
        section("log", &req);
        if req.local_reply().is_some() {
            bail!("the bench request was answered locally: {:?}", req.logs());
        }
    }
    Ok(Replay {
        script,
        callbacks: <R::Http as HttpFilter>::CALLBACKS.bits(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdk_shim::Callbacks;

    fn plugins() -> serde_json::Value {
        let text =
            std::fs::read_to_string(mesh_e2e::repo_root().join("envoy-config/bench/plugins.json"))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn each_bench_module_replays_its_own_calls_by_callback() {
        let p = plugins();
        let rl = replay("ratelimit", &p["ratelimit"].to_string(), Request::Direct).unwrap();
        assert!(rl.script.starts_with("@request_headers\n"));
        let request_part = rl.script.split("@response_headers").next().unwrap();
        assert!(request_part.contains("/ratelimit.2/"), "{request_part}");
        assert!(request_part.contains("\nshared_get "));
        assert!(request_part.contains("\nshared_set "));
        // The answers of global checks too: a module exports what its config could use.
        assert_eq!(
            rl.callbacks,
            Callbacks::REQUEST_HEADERS
                .union(Callbacks::RESPONSE_HEADERS)
                .union(Callbacks::GRPC_RESPONSE)
                .bits()
        );

        let t = replay("telemetry", &p["telemetry"].to_string(), Request::Direct).unwrap();
        let log_part = t.script.split("@log\n").nth(1).unwrap();
        assert!(log_part.contains("properties response.code,"), "{log_part}");
        assert!(
            log_part.trim_end().ends_with("log"),
            "the access line is the last call"
        );

        // The suite makes fewer calls than the four modules together.
        let four: usize = ["telemetry", "intentions", "ratelimit", "canary"]
            .iter()
            .map(|c| {
                calls_in(
                    &replay(c, &p[*c].to_string(), Request::Direct)
                        .unwrap()
                        .script,
                )
            })
            .sum();
        let suite = replay("suite", &p.to_string(), Request::Direct).unwrap();
        assert!(
            calls_in(&suite.script) < four,
            "{} vs {four}",
            calls_in(&suite.script)
        );
    }

    #[test]
    fn a_refused_configuration_is_an_error() {
        assert!(replay("ratelimit", r#"{"bogus": 1}"#, Request::Direct).is_err());
        assert!(replay("nothing", "{}", Request::Direct).is_err());
    }

    #[test]
    fn the_sidecar_request_carries_the_mesh_headers_and_an_identity() {
        let host = Request::Sidecar.host();
        assert_eq!(host.request_header_str("cookie").unwrap().len(), 200);
        assert!(MESH_HEADERS.len() >= 15);
        assert_eq!(
            host.property_value(&["connection", "uri_san_peer_certificate"]),
            Some(CLIENT_SPIFFE_ID.as_bytes().to_vec())
        );
        // The bench's intentions see that identity: the suite's replay logs its intention.
        let p = plugins();
        let direct = replay("intentions", &p["intentions"].to_string(), Request::Direct).unwrap();
        let sidecar = replay("intentions", &p["intentions"].to_string(), Request::Sidecar).unwrap();
        assert!(
            direct.script.contains("intentions.default"),
            "{}",
            direct.script
        );
        assert!(
            sidecar.script.contains("default.client"),
            "{}",
            sidecar.script
        );
    }

    #[test]
    fn a_subset_keeps_the_markers_and_only_its_classes() {
        let script = "@request_headers\nheader Request :path\nproperties a.b,c.d\nshared_get k\n@log\nincrement_metric m\nlog\nnow_nanos\n";
        assert_eq!(
            subset(script, &[CallClass::Headers, CallClass::Log]),
            "@request_headers\nheader Request :path\n@log\nlog\n"
        );
        assert_eq!(subset(script, &CallClass::ALL), script);
        assert_eq!(calls_in(&subset(script, &[])), 0);
        assert_eq!(CallClass::of("now_nanos"), CallClass::Other);
        assert_eq!(
            CallClass::of("set_property mesh.canary"),
            CallClass::Properties
        );
    }
}
