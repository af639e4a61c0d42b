//! Self-test of the e2e harness against the real Envoy: traffic routed through Envoy reaches
//! the right stub, statuses pass through, admin readers parse, a bad bootstrap is reported.
// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use mesh_e2e::{client, Envoy, Stub};
use serde_json::Value;

fn start(a: &Stub, b: &Stub) -> Envoy {
    Envoy::builder("envoy-config/harness/envoy.yaml")
        .cluster("stub_a", a)
        .cluster("stub_b", b)
        .concurrency(2)
        .start()
        .unwrap()
}

#[test]
fn requests_reach_the_right_stub_through_envoy() {
    let (a, b) = (Stub::start("a").unwrap(), Stub::start("b").unwrap());
    let envoy = start(&a, &b);
    let http = client();

    let r = http
        .get(envoy.url("/hello?q=1"))
        .header("x-one", "1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "a");
    let body: Value = r.json().unwrap();
    assert_eq!(body["upstream"], "a");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/hello?q=1");
    assert_eq!(body["headers"]["x-one"][0], "1");

    let body: Value = http
        .post(envoy.url("/b/x"))
        .body("hi")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["upstream"], "b");
    assert_eq!(body["method"], "POST");

    let body: Value = http
        .get(envoy.url("/x"))
        .header("x-target", "b")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["upstream"], "b");
    assert_eq!((a.hits(), b.hits()), (1, 2));
}

#[test]
fn statuses_pass_through_and_stats_count_them() {
    let (a, b) = (Stub::start("a").unwrap(), Stub::start("b").unwrap());
    let envoy = start(&a, &b);
    let http = client();
    for _ in 0..3 {
        let r = http
            .get(envoy.url("/"))
            .header("x-stub-status", "503")
            .send()
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    b.set_status(404);
    assert_eq!(http.get(envoy.url("/b")).send().unwrap().status(), 404);

    let stats = envoy
        .wait_for_stats(std::time::Duration::from_secs(30), |s| {
            s.get("cluster.stub_a.upstream_rq_503") == Some(&3)
        })
        .unwrap();
    assert_eq!(stats.get("cluster.stub_a.upstream_rq_503"), Some(&3));
    assert_eq!(stats.get("cluster.stub_b.upstream_rq_404"), Some(&1));
    assert_eq!(stats.get("server.concurrency"), Some(&2));

    let prom = envoy.prometheus().unwrap();
    let sample = prom
        .iter()
        .find(|s| {
            s.name == "envoy_cluster_upstream_rq"
                && s.label("envoy_cluster_name") == Some("stub_a")
                && s.label("envoy_response_code") == Some("503")
        })
        .expect("per-code upstream counter in /stats/prometheus");
    assert_eq!(sample.value, 3.0);
}

#[test]
fn a_bootstrap_envoy_refuses_comes_back_with_its_log() {
    let err = Envoy::builder("envoy-config/harness/envoy.yaml")
        .edit(|doc| {
            doc["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE".into();
        })
        .start()
        .err()
        .expect("envoy must refuse an unknown cluster type");
    let msg = format!("{err:#}");
    assert!(msg.contains("envoy exited during start-up"), "{msg}");
    assert!(msg.contains("NOT_A_TYPE"), "{msg}");
}

/// The stub serves a new connection while many keep-alive connections sit idle (Envoy keeps
/// its upstream connections open; a stub that queued new ones behind them answered late).
#[test]
fn the_stub_serves_new_connections_while_idle_ones_stay_open() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    let stub = Stub::start("a").unwrap();
    let ask = |conn: &mut BufReader<TcpStream>| {
        conn.get_mut()
            .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
            .unwrap();
        let mut status = String::new();
        conn.read_line(&mut status).unwrap();
        // Skip the rest of the response: headers, then the JSON body of content-length bytes.
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        std::io::Read::read_exact(conn, &mut body).unwrap();
        status
    };
    let open = |_| {
        let tcp = TcpStream::connect(("127.0.0.1", stub.port())).unwrap();
        // A stuck stub fails the test here instead of hanging it.
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        BufReader::new(tcp)
    };
    let mut idle: Vec<_> = (0..40).map(open).collect();
    for conn in &mut idle {
        assert!(ask(conn).starts_with("HTTP/1.1 200"));
    }
    let mut fresh = open(0);
    assert!(ask(&mut fresh).starts_with("HTTP/1.1 200"));
    for conn in &mut idle {
        assert!(ask(conn).starts_with("HTTP/1.1 200"));
    }
    assert_eq!(stub.hits(), 81);
}
