use super::*;
use serde_json::json;

fn committed(rel: &Path) -> String {
    std::fs::read_to_string(root().join(rel))
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask resources`)", rel.display()))
}

fn docs(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect()
}

/// The rule for digests: the committed files are compared byte for byte with what the
/// generator makes from the digests they pin themselves. A stale digest (the code changed
/// since the last `cargo xtask package`) is therefore not drift; any other difference is.
#[test]
fn committed_resources_are_what_the_generator_makes() {
    for name in MODULES {
        let d = committed_digests(name).unwrap();
        assert_ne!(d.image, NO_DIGEST, "{name}: never packaged");
        assert_ne!(d.module, NO_DIGEST, "{name}: never packaged");
        let rendered = render(name, &d).unwrap();
        for (rel, text) in &rendered {
            assert!(
                committed(rel) == *text,
                "{} differs from the generator: run `cargo xtask resources`",
                rel.display()
            );
        }
        // Nothing else in the generated folders (a file the generator stopped making).
        for sub in ["istio", "envoy-gateway", "consul"] {
            let dir = root().join("envoy-config").join(name).join(sub);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let rel = PathBuf::from("envoy-config")
                    .join(name)
                    .join(sub)
                    .join(entry.unwrap().file_name());
                let hand_written =
                    rel == Path::new("envoy-config/canary/istio/virtualservice.yaml");
                assert!(
                    hand_written || rendered.iter().any(|(r, _)| *r == rel),
                    "{} is not generated",
                    rel.display()
                );
            }
        }
    }
}

#[test]
fn a_stale_digest_changes_only_the_digest_lines() {
    let d = committed_digests("ratelimit").unwrap();
    let other = Digests {
        image: "a".repeat(64),
        module: "b".repeat(64),
    };
    for ((rel, a), (_, b)) in render("ratelimit", &d)
        .unwrap()
        .iter()
        .zip(render("ratelimit", &other).unwrap().iter())
    {
        let changed: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert!(!changed.is_empty(), "{} pins no digest", rel.display());
        for (x, y) in changed {
            assert!(
                x.contains(&d.image) || x.contains(&d.module),
                "{}: {x:?} -> {y:?}",
                rel.display()
            );
        }
    }
}

/// Who fails closed: the modules that authorize or limit. Who fails open: canary routing and
/// telemetry. The same in every mesh.
fn fails_open(resource: &str) -> bool {
    match resource {
        "canary" | "telemetry" | "mesh-suite-outbound" => true,
        "intentions" | "ratelimit" | "mesh-suite-inbound" | "mesh-suite" => false,
        other => panic!("no failure policy expected for {other}"),
    }
}

fn phase(resource: &str) -> &'static str {
    match resource {
        "intentions" | "mesh-suite-inbound" => "AUTHZ",
        _ => "STATS",
    }
}

/// Each failure-policy line has its reason in the comment right above it.
fn assert_reason_beside(text: &str, key: &str, file: &Path) {
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with(&format!("{key}:")) {
            seen += 1;
            let above: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with('#'))
                .copied()
                .collect();
            let joined = above.join(" ");
            assert!(
                joined.contains("fail open:") || joined.contains("fail closed:"),
                "{}: {l:?} has no reason beside it",
                file.display()
            );
            assert!(joined.contains("Envoy NACKs it"), "{}", file.display());
        }
    }
    assert!(seen > 0, "{}: no {key}", file.display());
}

#[test]
fn every_resource_follows_its_schema_and_pins_the_module() {
    let mut kinds = std::collections::BTreeSet::new();
    for name in MODULES {
        let d = committed_digests(name).unwrap();
        for (rel, _) in render(name, &d).unwrap() {
            let text = committed(&rel);
            check_file(&rel, &text).unwrap();
            if rel.extension().is_some_and(|e| e == "json") {
                let v: Value = serde_json::from_str(&text).unwrap();
                let kind = v["Kind"].as_str().unwrap().to_owned();
                kinds.insert(kind.clone());
                if kind != "service-defaults" {
                    continue;
                }
                let sd = schema::service_defaults(&v).unwrap();
                assert_eq!(sd.protocol, schema::Protocol::Http);
                let [ext] = sd.envoy_extensions.as_slice() else {
                    panic!("{}: one extension", rel.display())
                };
                let pc = &ext.arguments.plugin_config;
                assert_eq!(pc.root_id.as_deref(), Some(name));
                let remote = pc.vm_config.code.remote.as_ref().unwrap();
                assert_eq!(remote.sha256, d.module, "{}", rel.display());
                let resource = match (name, ext.arguments.listener_type) {
                    ("suite", schema::ListenerType::Inbound) => "mesh-suite-inbound",
                    ("suite", schema::ListenerType::Outbound) => "mesh-suite-outbound",
                    _ => name,
                };
                assert_eq!(ext.required, !fails_open(resource), "{}", rel.display());
                assert!(sd.meta["failure-policy"].len() > 40);
                assert!(sd.meta["support"].contains("below 1.40"));
                let config: Value =
                    serde_json::from_str(pc.configuration.as_deref().unwrap()).unwrap();
                validate_config(name, &config).unwrap();
                continue;
            }
            for doc in docs(&text) {
                let kind = doc["kind"].as_str().unwrap().to_owned();
                kinds.insert(kind.clone());
                let resource = doc["metadata"]["name"].as_str().unwrap().to_owned();
                match kind.as_str() {
                    "WasmPlugin" => {
                        let r = schema::wasm_plugin(&doc).unwrap();
                        let m = r.spec.module();
                        assert_eq!(m.sha256.as_deref(), Some(d.image.as_str()));
                        assert_eq!(m.url, format!("oci://{}", image(name)));
                        assert_eq!(m.plugin_name.as_deref(), Some(name));
                        assert_eq!(m.fails_open(), fails_open(&resource), "{resource}");
                        assert_eq!(
                            r.spec
                                .phase
                                .map(|p| format!("{p:?}").to_uppercase())
                                .as_deref(),
                            Some(phase(&resource))
                        );
                        validate_config(name, &Value::Object(m.plugin_config.unwrap())).unwrap();
                        assert_reason_beside(&text, "failStrategy", &rel);
                    }
                    "TrafficExtension" => {
                        let r = schema::traffic_extension(&doc).unwrap();
                        assert_eq!(r.spec.wasm.sha256.as_deref(), Some(d.image.as_str()));
                        assert_eq!(r.spec.wasm.fails_open(), fails_open(&resource));
                        assert_eq!(
                            r.spec
                                .phase
                                .map(|p| format!("{p:?}").to_uppercase())
                                .as_deref(),
                            Some(phase(&resource))
                        );
                        validate_config(name, &Value::Object(r.spec.wasm.plugin_config.unwrap()))
                            .unwrap();
                        assert_reason_beside(&text, "failStrategy", &rel);
                    }
                    "EnvoyExtensionPolicy" => {
                        let r = schema::extension_policy(&doc).unwrap();
                        let [w] = r.spec.wasm.as_slice() else {
                            panic!("one wasm entry")
                        };
                        assert_eq!(w.root_id.as_deref(), Some(name));
                        assert_eq!(w.fail_open, Some(fails_open(&resource)));
                        match w.code.kind {
                            schema::CodeType::Image => {
                                let i = w.code.image.as_ref().unwrap();
                                assert_eq!(i.url, image(name));
                                assert_eq!(i.sha256.as_deref(), Some(d.image.as_str()));
                            }
                            schema::CodeType::Http => {
                                let h = w.code.http.as_ref().unwrap();
                                assert_eq!(h.sha256.as_deref(), Some(d.module.as_str()));
                            }
                        }
                        validate_config(name, w.config.as_ref().unwrap()).unwrap();
                        assert_reason_beside(&text, "failOpen", &rel);
                    }
                    "ConfigMap" => assert_eq!(name, "telemetry"),
                    other => panic!("{other}"),
                }
            }
        }
    }
    let all: Vec<&str> = kinds.iter().map(String::as_str).collect();
    assert_eq!(
        all,
        [
            "ConfigMap",
            "EnvoyExtensionPolicy",
            "TrafficExtension",
            "WasmPlugin",
            "service-defaults",
            "service-resolver",
            "service-router"
        ]
    );
}

#[test]
fn the_canary_routes_agree_with_its_subsets() {
    let config = read_config("canary").unwrap();
    let router: Value = serde_json::from_str(&committed(Path::new(
        "envoy-config/canary/consul/service-router-reviews.json",
    )))
    .unwrap();
    let router = schema::service_router(&router).unwrap();
    let resolver: Value = serde_json::from_str(&committed(Path::new(
        "envoy-config/canary/consul/service-resolver-reviews.json",
    )))
    .unwrap();
    let resolver = schema::service_resolver(&resolver).unwrap();
    let subsets: Vec<&str> = config["services"][0]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for s in &subsets {
        let r = router
            .routes
            .iter()
            .find(|r| r.destination.service_subset == *s)
            .unwrap();
        assert_eq!(r.matches.http.header[0].name, config["route_header"]);
        assert_eq!(r.matches.http.header[0].exact, *s);
        assert!(resolver.subsets.contains_key(*s));
    }
    assert_eq!(resolver.default_subset, "v1");
}

/// A valid resource of each kind, then changes each schema must refuse.
#[test]
fn the_schemas_refuse_unknown_fields_and_values() {
    let read = |rel: &str| docs(&committed(Path::new(rel)))[0].clone();
    let wp = read("envoy-config/ratelimit/istio/wasmplugin.yaml");
    let te = read("envoy-config/ratelimit/istio/trafficextension.yaml");
    let eg = read("envoy-config/ratelimit/envoy-gateway/extension-policy-image.yaml");
    let sd: Value = serde_json::from_str(&committed(Path::new(
        "envoy-config/ratelimit/consul/service-defaults-reviews.json",
    )))
    .unwrap();
    schema::wasm_plugin(&wp).unwrap();
    schema::traffic_extension(&te).unwrap();
    schema::extension_policy(&eg).unwrap();
    schema::service_defaults(&sd).unwrap();

    let with = |doc: &Value, pointer: &str, key: &str, value: Value| {
        let mut d = doc.clone();
        d.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        d
    };
    let refused: Vec<(&str, anyhow::Result<()>)> = vec![
        (
            "wasmplugin unknown",
            schema::wasm_plugin(&with(&wp, "/spec", "vmId", json!("x"))).map(|_| ()),
        ),
        (
            "wasmplugin phase",
            schema::wasm_plugin(&with(&wp, "/spec", "phase", json!("AUTHORIZATION"))).map(|_| ()),
        ),
        (
            "wasmplugin failStrategy",
            schema::wasm_plugin(&with(&wp, "/spec", "failStrategy", json!("FAIL_SOMETIMES")))
                .map(|_| ()),
        ),
        (
            "wasmplugin pull policy",
            schema::wasm_plugin(&with(&wp, "/spec", "imagePullPolicy", json!("Never"))).map(|_| ()),
        ),
        (
            "wasmplugin mode",
            schema::wasm_plugin(&with(&wp, "/spec", "match", json!([{"mode": "INBOUND"}])))
                .map(|_| ()),
        ),
        (
            "wasmplugin type",
            schema::wasm_plugin(&with(&wp, "/spec", "type", json!("TCP"))).map(|_| ()),
        ),
        (
            "wasmplugin sha",
            schema::wasm_plugin(&with(&wp, "/spec", "sha256", json!("sha256:abc"))).map(|_| ()),
        ),
        (
            "wasmplugin scheme",
            schema::wasm_plugin(&with(&wp, "/spec", "url", json!("ftp://x/y"))).map(|_| ()),
        ),
        (
            "wasmplugin both targets",
            schema::wasm_plugin(&with(
                &wp,
                "/spec",
                "targetRefs",
                json!([{"kind": "Gateway", "name": "g"}]),
            ))
            .map(|_| ()),
        ),
        (
            "trafficextension top-level url",
            schema::traffic_extension(&with(&te, "/spec", "url", json!("oci://x/y:1"))).map(|_| ()),
        ),
        (
            "trafficextension wasm unknown",
            schema::traffic_extension(&with(&te, "/spec/wasm", "phase", json!("STATS")))
                .map(|_| ()),
        ),
        (
            "eg priority",
            schema::extension_policy(&with(&eg, "/spec/wasm/0", "priority", json!(10))).map(|_| ()),
        ),
        (
            "eg code type",
            schema::extension_policy(&with(&eg, "/spec/wasm/0/code", "type", json!("File")))
                .map(|_| ()),
        ),
        (
            "eg code mismatch",
            schema::extension_policy(&with(&eg, "/spec/wasm/0/code", "type", json!("HTTP")))
                .map(|_| ()),
        ),
        (
            "eg pull policy",
            schema::extension_policy(&with(
                &eg,
                "/spec/wasm/0/code",
                "pullPolicy",
                json!("Never"),
            ))
            .map(|_| ()),
        ),
        (
            "eg image scheme",
            schema::extension_policy(&with(
                &eg,
                "/spec/wasm/0/code/image",
                "url",
                json!("oci://r/x:1"),
            ))
            .map(|_| ()),
        ),
        (
            "eg unknown",
            schema::extension_policy(&with(
                &eg,
                "/spec/wasm/0",
                "failStrategy",
                json!("FAIL_OPEN"),
            ))
            .map(|_| ()),
        ),
        (
            "consul listener",
            schema::service_defaults(&with(
                &sd,
                "/EnvoyExtensions/0/Arguments",
                "ListenerType",
                json!("sideways"),
            ))
            .map(|_| ()),
        ),
        (
            "consul unknown",
            schema::service_defaults(&with(
                &sd,
                "/EnvoyExtensions/0/Arguments/PluginConfig",
                "Config",
                json!("{}"),
            ))
            .map(|_| ()),
        ),
        (
            "consul runtime",
            schema::service_defaults(&with(
                &sd,
                "/EnvoyExtensions/0/Arguments/PluginConfig/VmConfig",
                "Runtime",
                json!("node"),
            ))
            .map(|_| ()),
        ),
        (
            "consul configuration object",
            schema::service_defaults(&with(
                &sd,
                "/EnvoyExtensions/0/Arguments/PluginConfig",
                "Configuration",
                json!({}),
            ))
            .map(|_| ()),
        ),
        (
            "consul both codes",
            schema::service_defaults(&with(
                &sd,
                "/EnvoyExtensions/0/Arguments/PluginConfig/VmConfig/Code",
                "Local",
                json!({"Filename": "/x.wasm"}),
            ))
            .map(|_| ()),
        ),
        (
            "consul timeout",
            schema::service_defaults(&with(
                &sd,
                "/EnvoyExtensions/0/Arguments/PluginConfig/VmConfig/Code/Remote/HttpURI",
                "Timeout",
                json!("10 seconds"),
            ))
            .map(|_| ()),
        ),
        (
            "consul meta too long",
            schema::service_defaults(&with(&sd, "/Meta", "why", json!("x".repeat(513))))
                .map(|_| ()),
        ),
        (
            "consul tcp service",
            schema::service_defaults(&with(&sd, "", "Protocol", json!("tcp"))).map(|_| ()),
        ),
    ];
    for (what, r) in refused {
        assert!(r.is_err(), "{what} was accepted");
    }
}

#[test]
fn a_configuration_the_filter_refuses_is_not_rendered() {
    assert!(validate_config("ratelimit", &json!({"rules": [], "bogus": 1})).is_err());
    assert!(validate_config("intentions", &json!({"trust_domain": "Bad Domain"})).is_err());
    assert!(validate_config("suite", &json!({"tracing": {}})).is_err());
    validate_config("suite", &json!({})).unwrap();
}
