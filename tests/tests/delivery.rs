//! Delivery end to end: the modules as OCI images through a real registry (Debian's
//! `docker-registry` on loopback; the layouts also read by Debian's `skopeo`) and back the way
//! Istio's agent pulls them, then into Envoy;
//! Envoy fetching a module over HTTP by its sha256 (how Envoy Gateway and Consul deliver), and
//! what it does with a digest that does not match; what a configuration the filter rejects
//! does when it arrives over ECDS (as Istio delivers), which the resources' comments cite.

// Test code: helpers fail the test by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mesh_e2e::envoy::{http_filters_mut, wasm_filter};
use mesh_e2e::install::debian_tool;
use mesh_e2e::oci::{self, Format, Reference, Registry};
use mesh_e2e::{client, free_port, module_path, repo_root, Envoy, Stub};
use serde_yaml::Value as Yaml;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODULES: [&str; 5] = ["canary", "intentions", "ratelimit", "telemetry", "suite"];
/// One request per hour: the first is admitted, the second limited (429).
const ONE_PER_HOUR: &str = r#"{"rules": [{"name": "all", "limit": {"requests": 1, "per": "1h"}}]}"#;

fn work_dir(test: &str) -> PathBuf {
    let d = repo_root()
        .join("target/e2e")
        .join(format!("delivery-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A `docker-registry` on 127.0.0.1 with its own storage; stopped on drop.
struct DockerRegistry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// The user and password of the registry that wants credentials, and its htpasswd line
/// (bcrypt, as docker-registry's htpasswd needs).
const USER: &str = "tester";
const PASSWORD: &str = "delivery-test";
const HTPASSWD: &str = "tester:$2b$12$1kGnBSX9QwrfQgcdDTsHqeG7/ySj86MYdU6QfoJdSPs5shogjNwAi";

impl DockerRegistry {
    /// A registry; with `htpasswd`, one that wants basic credentials.
    fn start(dir: &Path, htpasswd: bool) -> Option<Self> {
        let Some(bin) = debian_tool("docker-registry", "docker-registry") else {
            eprintln!(
                "SKIPPED: Debian's docker-registry is not installed and could not be installed \
                 (apt-get install docker-registry needs root and Debian's package lists)"
            );
            return None;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port().unwrap();
            let config = dir.join("registry.yml");
            let auth = if htpasswd {
                let file = dir.join("htpasswd");
                std::fs::write(&file, format!("{HTPASSWD}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: delivery\n    path: {}\n",
                    file.display()
                )
            } else {
                String::new()
            };
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     {auth}http:\n  addr: 127.0.0.1:{port}\n",
                    dir.join("storage").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut reg = DockerRegistry {
                child,
                port,
                dir: dir.to_owned(),
            };
            match reg.wait_ready() {
                Ok(()) => return Some(reg),
                Err(e) if attempt < 5 && e.contains("address already in use") => continue,
                Err(e) => panic!("docker-registry did not start: {e}"),
            }
        }
    }

    /// Waits (30 s at most) until `/v2/` answers 200.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
                return Err(format!("exited ({status}): {log}"));
            }
            // 401: up, and wanting credentials.
            if client()
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 401)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("/v2/ did not answer within 30 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn reference(&self, name: &str, tag: &str) -> Reference {
        Reference::parse(&format!(
            "127.0.0.1:{}/mesh-filters/{name}:{tag}",
            self.port
        ))
        .unwrap()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The harness bootstrap with the ratelimit module in front of stub `a`, its code `code`
/// (a `vm_config.code` block), failing per `failure_policy`, and clusters `extra`.
fn ratelimit_envoy(stub: &Stub, code: Yaml, failure_policy: &str, extra: Vec<Yaml>) -> Envoy {
    let mut filter = wasm_filter("ratelimit", Path::new("unused"), ONE_PER_HOUR);
    let config = &mut filter["typed_config"]["config"];
    config["vm_config"]["code"] = code;
    config["failure_policy"] = Yaml::from(failure_policy);
    Envoy::builder("envoy-config/harness/envoy.yaml")
        .cluster("stub_a", stub)
        .cluster("stub_b", stub)
        .edit(move |doc| {
            http_filters_mut(doc).unwrap().insert(0, filter);
            let clusters = doc["static_resources"]["clusters"]
                .as_sequence_mut()
                .unwrap();
            clusters.extend(extra);
        })
        .start()
        .unwrap()
}

fn statuses(envoy: &Envoy, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| {
            client()
                .get(envoy.url("/"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect()
}

fn local_code(file: &Path) -> Yaml {
    serde_yaml::from_str(&format!(
        "local: {{filename: {:?}}}",
        file.display().to_string()
    ))
    .unwrap()
}

#[test]
fn both_image_formats_go_through_a_registry_and_load_into_envoy() {
    let work = work_dir("registry");
    let Some(registry) = DockerRegistry::start(&work, false) else {
        return;
    };
    let mut pulled_ratelimit = Vec::new();
    for name in MODULES {
        let module = std::fs::read(module_path(name).unwrap()).unwrap();
        // Two packagings of the same module: the same layout, byte for byte.
        let (a, b) = (work.join("a").join(name), work.join("b").join(name));
        let first = oci::write_layout(&a, &module).unwrap();
        let second = oci::write_layout(&b, &module).unwrap();
        assert_eq!(first, second, "{name}: two packagings differ");
        assert_eq!(
            std::fs::read(a.join("index.json")).unwrap(),
            std::fs::read(b.join("index.json")).unwrap()
        );
        println!(
            "{name}: module {} compat {} artifact {}",
            first.module, first.compat, first.artifact
        );
        for format in Format::ALL {
            let tag = format!("{}-{}", env!("CARGO_PKG_VERSION"), format.name());
            let reference = registry.reference(name, &tag);
            let mut reg = Registry::new(&reference, false);
            let image = oci::layout_image(&a, format).unwrap();
            let pushed = reg.push(&image, &tag).unwrap();
            assert_eq!(pushed, first.manifest(format));

            // Pulled as Istio's agent pulls a WasmPlugin pinned by `sha256` (bare hex).
            let pin = pushed.trim_start_matches("sha256:");
            let pulled = reg.pull_module(&tag, Some(pin)).unwrap();
            assert_eq!(pulled.format, format);
            assert_eq!(pulled.manifest_digest, pushed);
            assert!(pulled.module == module, "{name} {format:?}: other bytes");
            let types: Vec<&str> = pulled
                .manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            match format {
                Format::Compat => assert_eq!(types, [oci::TAR_GZIP_LAYER]),
                Format::Artifact => assert_eq!(types, [oci::WASM_CONFIG, oci::WASM_LAYER]),
            }
            assert_eq!(
                reg.pull_module(&pushed, None).unwrap().module,
                module,
                "by digest"
            );
            // A pin the manifest does not have is refused, as the agent refuses it.
            let wrong = reg.pull_module(&tag, Some(&"0".repeat(64))).unwrap_err();
            assert!(format!("{wrong}").contains("not the pinned"), "{wrong}");
            if name == "ratelimit" {
                let file = work.join(format!("pulled-{}.wasm", format.name()));
                std::fs::write(&file, &pulled.module).unwrap();
                pulled_ratelimit.push(file);
            }
        }
    }
    // An independent reader of OCI layouts: skopeo copies both images of the layout to the
    // registry with their digests unchanged, and the agent's pull takes them.
    match debian_tool("skopeo", "skopeo") {
        None => eprintln!(
            "SKIPPED (the skopeo check only): Debian's skopeo is not installed and could not \
             be installed"
        ),
        Some(skopeo) => {
            let layout = work.join("a/ratelimit");
            let expected = oci::read_layout(&layout).unwrap();
            for format in Format::ALL {
                let tag = format!("skopeo-{}", format.name());
                let dest = registry.reference("ratelimit", &tag);
                let out = Command::new(&skopeo)
                    .args(["copy", "--quiet", "--dest-tls-verify=false"])
                    .arg(format!("oci:{}:{}", layout.display(), format.name()))
                    .arg(format!("docker://{dest}"))
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "skopeo copy: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let pin = expected.manifest(format).trim_start_matches("sha256:");
                let pulled = Registry::new(&dest, false)
                    .pull_module(&tag, Some(pin))
                    .unwrap();
                assert_eq!(pulled.format, format);
            }
        }
    }
    // The pulled module runs in Envoy and handles requests: one per hour, then 429.
    let stub = Stub::start("a").unwrap();
    for file in pulled_ratelimit {
        let envoy = ratelimit_envoy(&stub, local_code(&file), "FAIL_CLOSED", Vec::new());
        assert_eq!(statuses(&envoy, 2), [200, 429], "{}", file.display());
    }
    drop(registry);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_registry_that_wants_credentials_takes_them_and_refuses_without() {
    let work = work_dir("auth");
    let Some(registry) = DockerRegistry::start(&work, true) else {
        return;
    };
    let module = std::fs::read(module_path("canary").unwrap()).unwrap();
    let layout = work.join("canary");
    let packaged = oci::write_layout(&layout, &module).unwrap();
    let image = oci::layout_image(&layout, Format::Compat).unwrap();
    let reference = registry.reference("canary", "auth");
    let refused = Registry::new(&reference, false)
        .with_credentials("", "")
        .push(&image, "auth");
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(refused.contains("401"), "{refused}");
    let mut anonymous = Registry::new(&reference, false);
    if std::env::var_os("REGISTRY_USERNAME").is_none() {
        let e = format!("{:#}", anonymous.push(&image, "auth").unwrap_err());
        assert!(
            e.contains("set REGISTRY_USERNAME and REGISTRY_PASSWORD"),
            "{e}"
        );
    }
    let mut reg = Registry::new(&reference, false).with_credentials(USER, PASSWORD);
    assert_eq!(reg.push(&image, "auth").unwrap(), packaged.compat);
    let pulled = reg
        .pull_module("auth", Some(packaged.compat.trim_start_matches("sha256:")))
        .unwrap();
    assert!(pulled.module == module);
    drop(registry);
    let _ = std::fs::remove_dir_all(&work);
}

/// A one-file HTTP server: `GET /<name>` answers `body`; counts the requests.
struct FileServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl FileServer {
    fn start(path: &'static str, body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let line = String::from_utf8_lossy(&req);
                let found = line.starts_with(&format!("GET {path} "));
                let (status, payload): (&str, &[u8]) = if found {
                    ("200 OK", &body)
                } else {
                    ("404 Not Found", b"")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(payload);
            }
        });
        Self { port, hits }
    }

    fn cluster(&self) -> Yaml {
        serde_yaml::from_str(&format!(
            "name: wasm_server\ntype: STATIC\nconnect_timeout: 1s\nload_assignment:\n  cluster_name: wasm_server\n  endpoints:\n  - lb_endpoints:\n    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
            self.port
        ))
        .unwrap()
    }

    fn remote(&self, sha256: &str) -> Yaml {
        serde_yaml::from_str(&format!(
            "remote:\n  http_uri: {{uri: \"http://127.0.0.1:{}/ratelimit.wasm\", cluster: wasm_server, timeout: 10s}}\n  sha256: \"{sha256}\"\n",
            self.port
        ))
        .unwrap()
    }
}

#[test]
fn envoy_fetches_a_module_over_http_by_its_sha256_and_refuses_another() {
    let module = std::fs::read(module_path("ratelimit").unwrap()).unwrap();
    let right = oci::sha256_hex(&module);
    let wrong = oci::sha256_hex(b"another module");
    let stub = Stub::start("a").unwrap();

    // The right digest: Envoy fetches the module before its listener is ready, and runs it.
    let server = FileServer::start("/ratelimit.wasm", module.clone());
    let envoy = ratelimit_envoy(
        &stub,
        server.remote(&right),
        "FAIL_CLOSED",
        vec![server.cluster()],
    );
    assert!(server.hits.load(Ordering::SeqCst) >= 1);
    assert_eq!(statuses(&envoy, 2), [200, 429]);
    drop(envoy);

    // Another digest: Envoy fetches, refuses the bytes (one retry, then "failed to load")
    // and still starts; failing closed, every request gets 503 and none reaches the upstream.
    let server = FileServer::start("/ratelimit.wasm", module.clone());
    let before = stub.hits();
    let envoy = ratelimit_envoy(
        &stub,
        server.remote(&wrong),
        "FAIL_CLOSED",
        vec![server.cluster()],
    );
    assert!(
        server.hits.load(Ordering::SeqCst) >= 1,
        "the module was fetched"
    );
    assert_eq!(statuses(&envoy, 3), [503, 503, 503]);
    assert_eq!(stub.hits(), before, "a refused module lets nothing through");
    let log = envoy.log();
    assert!(log.contains("Plugin ratelimit failed to load"), "{log}");
    drop(envoy);

    // Failing open (Envoy Gateway's failOpen: true), the same refusal runs requests without
    // the filter: nothing is limited.
    let server = FileServer::start("/ratelimit.wasm", module);
    let envoy = ratelimit_envoy(
        &stub,
        server.remote(&wrong),
        "FAIL_OPEN",
        vec![server.cluster()],
    );
    assert_eq!(statuses(&envoy, 3), [200, 200, 200]);
    assert!(envoy.log().contains("Plugin ratelimit failed to load"));
}

/// The fact behind the resources' failure-policy comments: a configuration the filter rejects,
/// delivered over ECDS as Istio delivers WasmPlugins, is NACKed, and on a first load every
/// request gets 500 even with `FAIL_OPEN`; inline in a static bootstrap Envoy does not start.
#[test]
fn a_rejected_configuration_is_refused_failing_open_or_not() {
    let work = work_dir("ecds");
    let module = module_path("ratelimit").unwrap();
    let mut filter = wasm_filter(
        "ratelimit",
        &module,
        r#"{"rules": [{"name": "all", "bogus": 1}]}"#,
    );
    filter["typed_config"]["config"]["failure_policy"] = Yaml::from("FAIL_OPEN");
    let mut resource = serde_yaml::Mapping::new();
    resource.insert(
        Yaml::from("@type"),
        Yaml::from("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"),
    );
    resource.insert(Yaml::from("name"), Yaml::from("mesh"));
    resource.insert(Yaml::from("typed_config"), filter["typed_config"].clone());
    let ecds = work.join("ecds.yaml");
    let mut doc = serde_yaml::Mapping::new();
    doc.insert(
        Yaml::from("resources"),
        Yaml::Sequence(vec![Yaml::Mapping(resource)]),
    );
    std::fs::write(&ecds, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let discovered: Yaml = serde_yaml::from_str(&format!(
        "name: mesh\nconfig_discovery:\n  config_source: {{path_config_source: {{path: {:?}}}}}\n  type_urls: [\"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\"]\n",
        ecds.display().to_string()
    ))
    .unwrap();
    let stub = Stub::start("a").unwrap();
    let envoy = Envoy::builder("envoy-config/harness/envoy.yaml")
        .cluster("stub_a", &stub)
        .cluster("stub_b", &stub)
        .edit(move |doc| {
            doc["node"] =
                serde_yaml::from_str("{id: delivery-test, cluster: delivery-test}").unwrap();
            http_filters_mut(doc).unwrap().insert(0, discovered);
        })
        .start()
        .unwrap();
    let rejected = "extension_config_discovery.http_filter.mesh.update_rejected";
    let stats = envoy
        .wait_for_stats(Duration::from_secs(30), |s| s.get(rejected) == Some(&1))
        .unwrap();
    assert_eq!(stats.get(rejected), Some(&1), "the update was not rejected");
    assert_eq!(statuses(&envoy, 3), [500, 500, 500]);
    assert_eq!(stub.hits(), 0);
    assert_eq!(
        envoy
            .stat("extension_config_discovery.http_filter.mesh.update_success")
            .unwrap(),
        Some(0)
    );
    drop(envoy);

    // The same configuration inline in a static bootstrap: Envoy refuses to start, failing
    // open or not.
    let mut inline = wasm_filter(
        "ratelimit",
        &module,
        r#"{"rules": [{"name": "all", "bogus": 1}]}"#,
    );
    inline["typed_config"]["config"]["failure_policy"] = Yaml::from("FAIL_OPEN");
    let refused = Envoy::builder("envoy-config/harness/envoy.yaml")
        .cluster("stub_a", &stub)
        .cluster("stub_b", &stub)
        .edit(move |doc| http_filters_mut(doc).unwrap().insert(0, inline))
        .start()
        .err()
        .expect("Envoy started with a configuration the filter rejects");
    let text = format!("{refused:#}");
    assert!(
        text.contains("Unable to create Wasm plugin ratelimit"),
        "{text}"
    );
    assert!(
        text.contains("invalid configuration: rules[0].bogus"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
