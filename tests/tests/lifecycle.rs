//! Live reconfiguration over ECDS from a watched file (`envoy-config/<name>/envoy-ecds.yaml`),
//! at `--concurrency 2` while traffic flows: each update is written the way `mfctl apply`
//! writes it (validated, temporary file, rename) and its effect is awaited with a deadline;
//! the time from the rename to the first request that shows the new configuration is printed
//! (`update-to-effect`), never asserted. Also: which state survives an update, bad updates
//! rejected with the last good configuration serving, and a first configuration that is bad.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mesh_e2e::{client, most_admitted, repo_root, Envoy, EnvoyBuilder, Stub};
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);
const DEADLINE: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);

/// The watched ECDS file of one test, a copy of the shipped `ecds/<name>.yaml`.
struct Ecds {
    name: &'static str,
    file: PathBuf,
    work: PathBuf,
}

impl Ecds {
    fn new(name: &'static str) -> Self {
        mesh_e2e::module_path(name).unwrap();
        let work = repo_root().join("target/e2e").join(format!(
            "lifecycle-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let watched = work.join("ecds");
        std::fs::create_dir_all(&watched).unwrap();
        let file = watched.join(format!("{name}.yaml"));
        std::fs::copy(
            repo_root().join(format!("envoy-config/{name}/ecds/{name}.yaml")),
            &file,
        )
        .unwrap();
        Self { name, file, work }
    }

    /// `mfctl apply <ecds> <config>`: validated, then renamed into place. Returns when the
    /// rename happened.
    fn apply(&self, config: &Value) -> Instant {
        let input = self
            .work
            .join(format!("in-{}.json", SEQ.fetch_add(1, Ordering::SeqCst)));
        std::fs::write(&input, config.to_string()).unwrap();
        match mesh_cli::apply::apply(&self.file, &input, None, false) {
            Ok(done) => assert!(done.written),
            Err(e) => panic!("apply refused {config}: {e:?}"),
        }
        Instant::now()
    }

    /// Puts `raw` in the ECDS file without validating it (what a tool other than mfctl could
    /// do), with the same atomic rename.
    fn write_unchecked(&self, raw: &str) {
        let text = std::fs::read_to_string(&self.file).unwrap();
        let mut doc: Value = serde_yaml::from_str(&text).unwrap();
        mesh_cli::apply::set_plugin_config(&mut doc, None, raw).unwrap();
        mesh_cli::apply::write_atomic(&self.file, serde_yaml::to_string(&doc).unwrap().as_bytes())
            .unwrap();
    }

    /// The shipped ECDS bootstrap of this filter, watching this file.
    fn builder(&self) -> EnvoyBuilder {
        let path = self.file.display().to_string();
        let dir = self.file.parent().unwrap().display().to_string();
        Envoy::builder(format!("envoy-config/{}/envoy-ecds.yaml", self.name))
            .concurrency(2)
            .edit(move |doc| point_ecds_at(doc, &path, &dir))
    }

    fn stat(&self, envoy: &Envoy, what: &str) -> u64 {
        let name = format!(
            "extension_config_discovery.http_filter.mesh.{}.{what}",
            self.name
        );
        envoy.stat(&name).unwrap().unwrap_or(0)
    }
}

fn point_ecds_at(doc: &mut Yaml, path: &str, dir: &str) {
    let mut seen = 0;
    walk(doc, &mut |m| {
        if let Some(Yaml::Mapping(src)) = m.get_mut("path_config_source") {
            src.insert("path".into(), path.into());
            let mut w = serde_yaml::Mapping::new();
            w.insert("path".into(), dir.into());
            src.insert("watched_directory".into(), Yaml::Mapping(w));
            seen += 1;
        }
    });
    // The intentions bootstrap shares one connection manager between two listeners (a YAML
    // alias, expanded here), so it has two, for the same resource.
    assert!(seen >= 1, "the ECDS bootstrap has no path_config_source");
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

/// Polls `probe` until it holds; returns the time since `from`, or fails after 30 s.
fn until(what: &str, from: Instant, mut probe: impl FnMut() -> bool) -> Duration {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if probe() {
            let took = from.elapsed();
            println!("update-to-effect {what}: {} ms", took.as_millis());
            return took;
        }
        assert!(Instant::now() < deadline, "{what}: no effect after 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Requests that keep flowing in the background until dropped; counts the statuses seen.
struct Traffic {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<BTreeMap<u16, u64>>>,
}

impl Traffic {
    fn start(url: String, headers: Vec<(&'static str, String)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..2)
            .map(|t| {
                let (stop, url, headers) = (stop.clone(), url.clone(), headers.clone());
                std::thread::spawn(move || {
                    let http = client();
                    let mut seen = BTreeMap::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut req = http.get(&url).header("x-user-id", format!("bg-{t}-{i}"));
                        for (k, v) in &headers {
                            req = req.header(*k, v);
                        }
                        let status = req.send().map_or(0, |r| r.status().as_u16());
                        *seen.entry(status).or_insert(0) += 1;
                        i += 1;
                    }
                    seen
                })
            })
            .collect();
        Self { stop, handles }
    }

    fn finish(self) -> BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        for h in self.handles {
            for (k, v) in h.join().unwrap() {
                *all.entry(k).or_insert(0) += v;
            }
        }
        all
    }
}

// === canary ===

/// The canary config at `w1`/`w2`, with a probe service `v<version>.probe` whose decision
/// counter exists only once this version is bound.
fn canary(w1: u32, w2: u32, version: u32, rollback: Value) -> Value {
    json!({"services": [
        {"host": "reviews",
         "subsets": [{"name": "v1", "weight": w1}, {"name": "v2", "weight": w2}],
         "sticky": {"header": "x-user-id"},
         "rollback": rollback},
        {"host": format!("v{version}.probe"), "subsets": [{"name": "v1", "weight": 1}]}]})
}

/// Waits until version `version` of the canary config routes requests.
fn canary_effect(envoy: &Envoy, version: u32, from: Instant, what: &str) -> Duration {
    let http = client();
    let stat = format!("wasmcustom.canary.v{version}_probe.v1.decisions");
    until(what, from, || {
        let _ = http
            .get(envoy.url("/"))
            .header("host", format!("v{version}.probe"))
            .send();
        envoy.stat(&stat).unwrap().unwrap_or(0) > 0
    })
}

/// The subset each of `users` lands on, over several connections (both workers).
fn placements(envoy: &Envoy, users: usize) -> Vec<String> {
    let url = envoy.url("/reviews/1");
    let threads = 4;
    let parts: Vec<Vec<(usize, String)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let url = url.clone();
                s.spawn(move || {
                    let http = client();
                    (t..users)
                        .step_by(threads)
                        .map(|u| {
                            let r = http
                                .get(&url)
                                .header("host", "reviews")
                                .header("x-user-id", format!("user-{u}"))
                                .send()
                                .unwrap();
                            assert_eq!(r.status(), 200);
                            let up = r.headers()["x-upstream"].to_str().unwrap().to_owned();
                            (u, up)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = vec![String::new(); users];
    for (u, up) in parts.into_iter().flatten() {
        out[u] = up;
    }
    out
}

fn on(p: &[String], subset: &str) -> usize {
    p.iter().filter(|s| *s == subset).count()
}

#[test]
fn canary_weights_change_live_and_sticky_users_move_only_toward_the_growing_canary() {
    let (v1, v2) = (Stub::start("v1").unwrap(), Stub::start("v2").unwrap());
    let ecds = Ecds::new("canary");
    // A guard that never trips here (its counts are checked in the next test).
    let guard =
        json!({"subset": "v2", "max_error_rate": 0.5, "min_requests": 1000000, "window_s": 86400});
    ecds.apply(&canary(90, 10, 1, guard.clone()));
    let envoy = ecds
        .builder()
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .start()
        .unwrap();
    let traffic = Traffic::start(envoy.url("/reviews/bg"), vec![("host", "reviews".into())]);
    let users = 400;
    let at_90 = placements(&envoy, users);
    // Expected 40 of 400 on v2 (binomial sd 6): far outside this only when the split is wrong.
    assert!(
        (10..=80).contains(&on(&at_90, "v2")),
        "{}",
        on(&at_90, "v2")
    );

    let t = ecds.apply(&canary(50, 50, 2, guard.clone()));
    let first = canary_effect(&envoy, 2, t, "canary 90/10 -> 50/50");
    let at_50 = placements(&envoy, users);
    assert!(
        (140..=260).contains(&on(&at_50, "v2")),
        "{}",
        on(&at_50, "v2")
    );
    // The canary's range only grew: whoever was on v2 stays there; the rest moved v1 -> v2.
    for u in 0..users {
        if at_90[u] == "v2" {
            assert_eq!(at_50[u], "v2", "user-{u} left the canary when it grew");
        }
    }

    let t = ecds.apply(&canary(0, 100, 3, guard));
    let second = canary_effect(&envoy, 3, t, "canary 50/50 -> 0/100");
    let at_100 = placements(&envoy, users);
    assert_eq!(on(&at_100, "v2"), users);
    let seen = traffic.finish();
    // Traffic flowed through both updates without a failed request.
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [200], "{seen:?}");
    assert!(seen[&200] > 0);
    assert_eq!(ecds.stat(&envoy, "config_fail"), 0);
    assert!(ecds.stat(&envoy, "config_reload") >= 3);
    println!(
        "canary: effects after {} and {} ms, {} background requests all 200",
        first.as_millis(),
        second.as_millis(),
        seen[&200]
    );
}

#[test]
fn a_tripped_canary_guard_survives_a_weight_change_and_a_new_policy_rearms_it() {
    let (v1, v2) = (Stub::start("v1").unwrap(), Stub::start("v2").unwrap());
    let ecds = Ecds::new("canary");
    let guard = |rate: f64| json!({"subset": "v2", "max_error_rate": rate, "min_requests": 10, "window_s": 86400});
    ecds.apply(&canary(50, 50, 1, guard(0.5)));
    let envoy = ecds
        .builder()
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .start()
        .unwrap();
    v2.set_status(503);
    let http = client();
    let rollbacks = "wasmcustom.canary.reviews.v2.rollbacks";
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0;
    while envoy.stat(rollbacks).unwrap().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the guard did not trip");
        let _ = http
            .get(envoy.url("/"))
            .header("host", "reviews")
            .header("x-user-id", format!("trip-{n}"))
            .send();
        n += 1;
    }
    v2.set_status(200);
    let hits = v2.hits();
    // New weights, same guard: still tripped, v2 gets nothing.
    let t = ecds.apply(&canary(10, 90, 2, guard(0.5)));
    canary_effect(&envoy, 2, t, "canary weights with a tripped guard");
    let p = placements(&envoy, 100);
    assert_eq!(on(&p, "v1"), 100, "a weight change re-armed the guard");
    assert_eq!(v2.hits(), hits);
    assert_eq!(envoy.stat(rollbacks).unwrap(), Some(1));
    // A new policy is a new guard: v2 is back.
    let t = ecds.apply(&canary(10, 90, 3, guard(0.6)));
    canary_effect(&envoy, 3, t, "canary new guard policy");
    let p = placements(&envoy, 100);
    assert!(on(&p, "v2") > 50, "{}", on(&p, "v2"));
}

// === ratelimit ===

fn ratelimit(rules: Value) -> Value {
    json!({"headers_on_allowed": true, "rules": rules})
}

fn api(requests: u32) -> Value {
    json!({"name": "api", "key": {"header": "x-api-key"}, "limit": {"requests": requests, "per": "1h"}})
}

fn hit(envoy: &Envoy, key: &str, path: &str) -> reqwest::blocking::Response {
    client()
        .get(envoy.url(path))
        .header("x-api-key", key)
        .send()
        .unwrap()
}

/// How many of `n` requests with `key` are admitted, and the time they took.
fn admitted(envoy: &Envoy, key: &str, n: usize) -> (usize, Duration) {
    let start = Instant::now();
    let ok = (0..n)
        .filter(|_| hit(envoy, key, "/").status() == 200)
        .count();
    (ok, start.elapsed())
}

/// Waits until a fresh key's allowed answer carries `policy` (the new configuration's).
fn policy_effect(envoy: &Envoy, from: Instant, path: &str, policy: &str, what: &str) -> Duration {
    let mut i = 0;
    until(what, from, || {
        i += 1;
        let r = hit(envoy, &format!("probe-{what}-{i}"), path);
        r.headers()
            .get("ratelimit-policy")
            .is_some_and(|v| v.to_str().unwrap_or("").contains(policy))
    })
}

fn filter_lines(envoy: &Envoy) -> Vec<String> {
    envoy
        .log()
        .lines()
        .filter(|l| l.contains("ratelimit: invalid configuration:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ratelimit_limits_change_live_buckets_survive_and_bad_updates_are_rejected() {
    let stub = Stub::start("upstream").unwrap();
    let ecds = Ecds::new("ratelimit");
    ecds.apply(&ratelimit(json!([api(3)])));
    let envoy = ecds.builder().cluster("upstream", &stub).start().unwrap();
    let traffic = Traffic::start(envoy.url("/bg"), vec![]);

    // k1 spends its 3 per hour.
    let (ok, took) = admitted(&envoy, "k1", 5);
    assert!(
        ok >= 3 && ok as u64 <= most_admitted(3, HOUR, 3, took),
        "{ok}"
    );

    // Bad updates: each rejected, one line naming the field, counted, the last good serving.
    let bad = [
        (
            r#"{"rules": [], "colour": 1}"#,
            "colour: unknown field `colour`",
        ),
        (
            r#"{"rules": [{"name": "api", "limit": {"requests": 0, "per": "1h"}}]}"#,
            "rules[0].limit.requests: must be at least 1",
        ),
        (
            r#"{"rules": [{"name": "api", "match": {"path_regex": "(unclosed"}, "limit": {"requests": 1, "per": "1h"}}]}"#,
            "rules[0].match.path_regex: regex does not compile",
        ),
    ];
    for (i, (raw, line)) in bad.iter().enumerate() {
        let before = filter_lines(&envoy).len();
        ecds.write_unchecked(raw);
        let deadline = Instant::now() + DEADLINE;
        while ecds.stat(&envoy, "config_fail") < i as u64 + 1 {
            assert!(Instant::now() < deadline, "update {i} was not rejected");
            std::thread::sleep(Duration::from_millis(10));
        }
        let lines = filter_lines(&envoy);
        assert_eq!(lines.len(), before + 1, "{lines:#?}");
        assert!(lines[before].contains(line), "{}", lines[before]);
        // Still the last good configuration: k1 limited, a fresh key sees q=3.
        assert_eq!(hit(&envoy, "k1", "/").status(), 429);
        let r = hit(&envoy, &format!("after-bad-{i}"), "/");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("q=3"));
    }
    assert_eq!(ecds.stat(&envoy, "config_fail"), 3);

    // An update that keeps the rule and its key (adds another rule): k1's bucket survives.
    let other = json!({"name": "other", "match": {"path_prefix": "/other"}, "limit": {"requests": 5, "per": "1h"}});
    let t = ecds.apply(&ratelimit(json!([api(3), other])));
    policy_effect(&envoy, t, "/other", "\"other\"", "ratelimit rule added");
    assert_eq!(hit(&envoy, "k1", "/").status(), 429, "k1's bucket was lost");

    // Raised: a fresh key gets 6.
    let t = ecds.apply(&ratelimit(json!([api(6)])));
    policy_effect(&envoy, t, "/", "q=6", "ratelimit raised 3 -> 6");
    let (ok, took) = admitted(&envoy, "k2", 8);
    assert!(
        ok >= 6 && ok as u64 <= most_admitted(6, HOUR, 6, took),
        "{ok}"
    );

    // Lowered: a fresh key gets 1.
    let t = ecds.apply(&ratelimit(json!([api(1)])));
    policy_effect(&envoy, t, "/", "q=1", "ratelimit lowered 6 -> 1");
    let (ok, took) = admitted(&envoy, "k3", 3);
    assert!(
        ok >= 1 && ok as u64 <= most_admitted(1, HOUR, 1, took),
        "{ok}"
    );

    // The rule removed: nothing limits k1 any more.
    let t = ecds.apply(&ratelimit(json!([])));
    until("ratelimit rule removed", t, || {
        hit(&envoy, "k1", "/").status() == 200
    });
    // Shared data has no delete: the removed rule's buckets stay in their slots (until
    // another key reclaims an idle one), so the same rule added back within the window
    // finds k1 still spent.
    let t = ecds.apply(&ratelimit(json!([api(3)])));
    policy_effect(&envoy, t, "/", "q=3", "ratelimit rule added back");
    assert_eq!(hit(&envoy, "k1", "/").status(), 429);

    let seen = traffic.finish();
    // Background requests carry no key: no rule applies to them, every one is served.
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [200], "{seen:?}");
    assert_eq!(ecds.stat(&envoy, "config_fail"), 3);
}

#[test]
fn a_bad_first_configuration_serves_500_until_fixed_unless_a_default_config_is_set() {
    let stub = Stub::start("upstream").unwrap();
    let bad = r#"{"rules": [], "colour": 1}"#;
    // Without default_config: Envoy starts, the filter is missing, requests get 500.
    let ecds = Ecds::new("ratelimit");
    ecds.write_unchecked(bad);
    let envoy = ecds.builder().cluster("upstream", &stub).start().unwrap();
    assert_eq!(ecds.stat(&envoy, "config_fail"), 1);
    assert_eq!(hit(&envoy, "k", "/").status(), 500);
    assert_eq!(stub.hits(), 0);
    let t = ecds.apply(&ratelimit(json!([api(3)])));
    until("ratelimit first good config", t, || {
        hit(&envoy, "k", "/").status() == 200
    });
    drop(envoy);

    // With a default_config (the filter's defaults: no rules), requests are served by it.
    let ecds = Ecds::new("ratelimit");
    ecds.write_unchecked(bad);
    let envoy = ecds
        .builder()
        .cluster("upstream", &stub)
        .edit(|doc| {
            let default: Yaml = serde_yaml::from_str(
                r#""@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
config:
  name: ratelimit
  root_id: ratelimit
  vm_config: {vm_id: ratelimit, runtime: envoy.wasm.runtime.v8, code: {local: {filename: target/filters/ratelimit.wasm}}}"#,
            )
            .unwrap();
            walk(doc, &mut |m| {
                if m.contains_key("config_source") {
                    m.insert("default_config".into(), default.clone());
                }
            });
        })
        .start()
        .unwrap();
    assert_eq!(ecds.stat(&envoy, "config_fail"), 1);
    assert_eq!(hit(&envoy, "k", "/").status(), 200);
}

/// Builds the ratelimit module with the test-only feature `next-layout` (its bucket table
/// under `ratelimit.3/`, as a future module with changed entries would have) into its own
/// target dir: the shipped modules in `target/filters` are never touched.
fn next_layout_module() -> PathBuf {
    let dir = repo_root().join("target/next-layout");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .args([
            "-p",
            "filter-ratelimit",
            "--features",
            "mesh-ratelimit/next-layout",
        ])
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "building the next-layout module failed");
    dir.join("wasm32-wasip1/release/filter_ratelimit.wasm")
}

/// Points the ECDS file's `vm_config` at another module file (same `vm_id`, same plugin
/// config), with the same atomic rename as `mfctl apply`.
fn set_module(ecds: &Ecds, module: &str) -> Instant {
    let text = std::fs::read_to_string(&ecds.file).unwrap();
    let mut doc: Yaml = serde_yaml::from_str(&text).unwrap();
    let mut seen = 0;
    walk(&mut doc, &mut |m| {
        if let Some(Yaml::Mapping(local)) = m.get_mut("local") {
            local.insert("filename".into(), module.into());
            seen += 1;
        }
    });
    assert_eq!(seen, 1, "no vm_config code in {text}");
    mesh_cli::apply::write_atomic(&ecds.file, serde_yaml::to_string(&doc).unwrap().as_bytes())
        .unwrap();
    Instant::now()
}

/// A module with another state layout swapped in over ECDS under the same `vm_id` (so the
/// same shared data) starts from fresh buckets instead of misreading the old layout's, and
/// the original module swapped back finds its own buckets as it left them.
#[test]
fn a_module_with_another_layout_under_the_same_vm_id_never_reads_the_old_buckets() {
    let next = next_layout_module();
    let stub = Stub::start("upstream").unwrap();
    let ecds = Ecds::new("ratelimit");
    ecds.apply(&ratelimit(json!([api(3)])));
    let envoy = ecds.builder().cluster("upstream", &stub).start().unwrap();
    // One keep-alive connection, so one worker: each request after the first that shows a
    // module runs that module too.
    let http = client();
    let status = |key: &str| {
        http.get(envoy.url("/"))
            .header("x-api-key", key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let statuses = |key: &str, n: usize| (0..n).map(|_| status(key)).collect::<Vec<_>>();
    let generated = || {
        envoy
            .log()
            .matches("generated the bucket table's hash secret")
            .count()
    };

    // The shipped module (layout 2) spends key k's 3 requests.
    assert_eq!(statuses("k", 4), [200, 200, 200, 429]);
    assert_eq!(generated(), 1);

    // The next-layout module: k is limited until the swap shows, then admitted afresh up
    // to the limit; a new table (secret and slots) was made for its layout.
    let t = set_module(&ecds, &next.display().to_string());
    until("ratelimit module with the next layout", t, || {
        status("k") == 200
    });
    assert_eq!(statuses("k", 3), [200, 200, 429]);
    assert_eq!(generated(), 2);
    // v is spent under the next layout only.
    assert_eq!(statuses("v", 4), [200, 200, 200, 429]);

    // The shipped module again: v is fresh under layout 2 (the first 200 shows the swap),
    // and k is still spent, as the shipped module left it; no table was made again.
    let t = set_module(&ecds, "target/filters/ratelimit.wasm");
    until("ratelimit module back to layout 2", t, || {
        status("v") == 200
    });
    assert_eq!(statuses("v", 3), [200, 200, 429]);
    assert_eq!(status("k"), 429);
    assert_eq!(generated(), 2);
    assert_eq!(ecds.stat(&envoy, "config_fail"), 0);
    assert!(ecds.stat(&envoy, "config_reload") >= 3);
}

// === intentions ===

fn mtls(identity: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let certs = repo_root().join("envoy-config/intentions/certs");
    let read = |f: &str| std::fs::read(certs.join(f)).unwrap();
    mesh_e2e::tls::client_config_from_pem(
        &read("ca.pem"),
        Some((
            &read(&format!("{identity}.pem")),
            &read(&format!("{identity}-key.pem")),
        )),
        mesh_e2e::tls::Proto::H1,
    )
    .unwrap()
}

#[test]
fn an_intention_added_live_lets_its_source_in() {
    let stub = Stub::start("reviews").unwrap();
    let ecds = Ecds::new("intentions");
    let policy = |extra: Option<Value>| {
        let mut list = vec![json!({"source": "web", "action": "allow"})];
        list.extend(extra);
        json!({"trust_domain": "mesh.local", "destination": "reviews", "default_action": "deny", "intentions": list})
    };
    ecds.apply(&policy(None));
    let envoy = ecds.builder().cluster("reviews", &stub).start().unwrap();
    let port = envoy.listener_port("mtls").unwrap();
    let get = |id: &str| {
        mesh_e2e::tls::h1(&mtls(id), port, b"GET", b"/api/x", &[("host", b"reviews")])
            .unwrap()
            .status
    };
    assert_eq!(get("web"), 200);
    assert_eq!(get("frontend"), 403);
    let t = ecds.apply(&policy(Some(
        json!({"source": "frontend", "action": "allow"}),
    )));
    until("intention added", t, || get("frontend") == 200);
    assert_eq!(get("web"), 200);
    assert_eq!(get("legacy"), 403);
}

// === telemetry ===

#[test]
fn telemetry_series_and_their_budget_survive_an_update() {
    let stub = Stub::start("reviews").unwrap();
    let ecds = Ecds::new("telemetry");
    ecds.apply(&json!({"max_series": 1}));
    let envoy = ecds.builder().cluster("stub", &stub).start().unwrap();
    let http = client();
    let send = |status: u16, traceparent: bool| {
        let r = http
            .get(envoy.url("/"))
            .header("x-stub-status", status.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let echo: Value = r.json().unwrap();
        assert_eq!(echo["headers"]["traceparent"].is_array(), traceparent);
    };
    for _ in 0..3 {
        send(200, false);
    }
    // The update keeps the budget (same plugin, same namespace) and starts traces.
    let t = ecds.apply(&json!({"max_series": 1, "trace": {"start_when_absent": true}}));
    let mut sent_200 = 3;
    until("telemetry trace setting", t, || {
        sent_200 += 1;
        let r = http.get(envoy.url("/")).send().unwrap();
        let echo: Value = r.json().unwrap();
        echo["headers"]["traceparent"].is_array()
    });
    send(200, true);
    sent_200 += 1;
    // The one series the budget held before the update is still the only one: a new one
    // (another response code) overflows instead of taking a fresh budget.
    send(404, true);
    let stats = envoy
        .wait_for_stats(DEADLINE, |s| {
            s.get("wasmcustom.telemetry.series_overflow").copied() == Some(1)
        })
        .unwrap();
    assert_eq!(stats.get("wasmcustom.telemetry.series_overflow"), Some(&1));
    assert_eq!(stats.get("wasmcustom.telemetry.series_admitted"), Some(&1));
    // And the admitted series kept counting across the update (Envoy's stat, not reset).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let samples = envoy.prometheus().unwrap();
        let ok: f64 = samples
            .iter()
            .filter(|s| s.name == "istio_requests_total" && s.label("response_code") == Some("200"))
            .map(|s| s.value)
            .sum();
        if ok == sent_200 as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "istio_requests_total 200 = {ok}, sent {sent_200}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// === suite ===

#[test]
fn the_suite_over_ecds_moves_its_canary_live() {
    let (v1, v2) = (Stub::start("v1").unwrap(), Stub::start("v2").unwrap());
    let ecds = Ecds::new("suite");
    let config = |w1: u32, w2: u32| {
        json!({"canary": {"services": [{"host": "reviews", "subsets": [
            {"name": "v1", "weight": w1}, {"name": "v2", "weight": w2}]}]}})
    };
    ecds.apply(&config(100, 0));
    let envoy = ecds
        .builder()
        .cluster("reviews_v1", &v1)
        .cluster("reviews_v2", &v2)
        .start()
        .unwrap();
    assert_eq!(on(&placements(&envoy, 50), "v1"), 50);
    let t = ecds.apply(&config(0, 100));
    until("suite canary 100/0 -> 0/100", t, || {
        placements(&envoy, 4).iter().all(|s| s == "v2")
    });
    assert_eq!(on(&placements(&envoy, 50), "v2"), 50);
}
