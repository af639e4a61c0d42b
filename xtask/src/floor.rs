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

/// The bench request: wrk's `GET /` to Envoy's listener.
const METHOD: &str = "GET";
const AUTHORITY: &str = "127.0.0.1:10000";
const PATH: &str = "/api/items";

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

/// The replay of module `name` (a capability or `suite`) under `config`.
pub fn replay(name: &str, config: &str) -> anyhow::Result<Replay> {
    let r = match name {
        "telemetry" => record::<TelemetryRoot>(config),
        "intentions" => record::<IntentionsRoot>(config),
        "ratelimit" => record::<RateLimitRoot>(config),
        "canary" => record::<CanaryRoot>(config),
        "suite" => record::<SuiteRoot>(config),
        other => bail!("no floor for module {other:?}"),
    };
    r.with_context(|| format!("recording the host calls of {name}"))
}

/// Runs two requests through root `R` (the first warms per-series and per-key state, as the
/// bench's warm-up does) and writes the second one's host calls, callback by callback.
fn record<R: RootFilter + Default>(config: &str) -> anyhow::Result<Replay> {
    let host = FakeHost::new();
    let mut root = R::default();
    if !root.on_configure(&host, config.as_bytes()) {
        bail!("the configuration is refused: {:?}", host.logs());
    }
    let mut script = String::new();
    for pass in 0..2 {
        let req = FakeHost::new()
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
        let rl = replay("ratelimit", &p["ratelimit"].to_string()).unwrap();
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

        let t = replay("telemetry", &p["telemetry"].to_string()).unwrap();
        let log_part = t.script.split("@log\n").nth(1).unwrap();
        assert!(log_part.contains("properties response.code,"), "{log_part}");
        assert!(
            log_part.trim_end().ends_with("log"),
            "the access line is the last call"
        );

        // The suite makes fewer calls than the four modules together.
        let four: usize = ["telemetry", "intentions", "ratelimit", "canary"]
            .iter()
            .map(|c| calls_in(&replay(c, &p[*c].to_string()).unwrap().script))
            .sum();
        let suite = replay("suite", &p.to_string()).unwrap();
        assert!(
            calls_in(&suite.script) < four,
            "{} vs {four}",
            calls_in(&suite.script)
        );
    }

    #[test]
    fn a_refused_configuration_is_an_error() {
        assert!(replay("ratelimit", r#"{"bogus": 1}"#).is_err());
        assert!(replay("nothing", "{}").is_err());
    }
}
