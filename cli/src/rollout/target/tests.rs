#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use super::*;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

/// The weights of `reviews` in a rendered target.
fn weights(path: &Path, text: &str, output: Output) -> Vec<(String, i64)> {
    let dir = std::env::temp_dir().join(format!("mfctl-target-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(path.file_name().unwrap());
    std::fs::write(&copy, text).unwrap();
    let t = Target::load(&copy, output, None, "reviews", "v2", None).unwrap();
    let mut doc = t.doc.clone();
    t.with_service(&mut doc, |svc| {
        Ok(svc["subsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["weight"].as_i64().unwrap(),
                )
            })
            .collect())
    })
    .unwrap()
}

#[test]
fn the_shipped_ecds_file_gets_new_weights_and_stays_valid() {
    let path = repo("envoy-config/canary/ecds/canary.yaml");
    let t = Target::load(&path, Output::Ecds, None, "reviews", "v2", None).unwrap();
    assert_eq!(t.stable(), "v1");
    let info = t.service_info().unwrap();
    assert_eq!(
        info,
        ServiceInfo {
            stat_label: "reviews".into(),
            guarded: true,
            weights: (10, 90)
        }
    );
    let text = t.render(25).unwrap();
    assert_eq!(
        weights(&path, &text, Output::Ecds),
        [("v1".to_owned(), 75), ("v2".to_owned(), 25)]
    );
    // The module settings are kept.
    assert!(text.contains("target/filters/canary.wasm"), "{text}");
    let promoted = t.render(100).unwrap();
    assert_eq!(
        weights(&path, &promoted, Output::Ecds),
        [("v1".to_owned(), 0), ("v2".to_owned(), 100)]
    );
}

#[test]
fn the_suites_canary_part_is_the_one_changed() {
    let path = repo("envoy-config/suite/ecds/suite.yaml");
    let t = Target::load(&path, Output::Ecds, None, "reviews", "v2", None).unwrap();
    let text = t.render(50).unwrap();
    assert_eq!(
        weights(&path, &text, Output::Ecds),
        [("v1".to_owned(), 50), ("v2".to_owned(), 50)]
    );
    // The other capabilities' parts are still there.
    assert!(text.contains("ratelimit"), "{text}");
}

#[test]
fn wasmplugins_and_extension_policies_are_rendered_with_the_weights() {
    for (file, output) in [
        (
            "envoy-config/canary/istio/wasmplugin.yaml",
            Output::Wasmplugin,
        ),
        (
            "envoy-config/canary/istio/trafficextension.yaml",
            Output::Wasmplugin,
        ),
        (
            "envoy-config/canary/envoy-gateway/extension-policy-http.yaml",
            Output::ExtensionPolicy,
        ),
    ] {
        let path = repo(file);
        let t = Target::load(&path, output, None, "reviews", "v2", None).unwrap();
        let text = t.render(5).unwrap();
        assert_eq!(
            weights(&path, &text, output),
            [("v1".to_owned(), 95), ("v2".to_owned(), 5)],
            "{file}"
        );
        assert!(text.contains("kind:"), "{file}: {text}");
    }
}

#[test]
fn a_target_of_the_wrong_kind_or_without_the_subsets_is_refused() {
    let ecds = repo("envoy-config/canary/ecds/canary.yaml");
    let plugin = repo("envoy-config/canary/istio/wasmplugin.yaml");
    let err = |p: &Path, o: Output, svc: &str, canary: &str, stable: Option<&str>| {
        Target::load(p, o, None, svc, canary, stable).unwrap_err()
    };
    assert!(err(&ecds, Output::Wasmplugin, "reviews", "v2", None)
        .ends_with("a WasmPlugin is expected here, not a document without kind"),);
    assert!(err(&plugin, Output::Ecds, "reviews", "v2", None)
        .ends_with("not an ECDS file (no resources list)"));
    assert!(err(&ecds, Output::Ecds, "ratings", "v2", None)
        .ends_with("the canary configuration has no service with host \"ratings\""));
    assert!(err(&ecds, Output::Ecds, "reviews", "v3", None)
        .ends_with("service \"reviews\" has no subset \"v3\""));
    assert!(err(&ecds, Output::Ecds, "reviews", "v2", Some("v9"))
        .ends_with("service \"reviews\" has no subset \"v9\""));
    let rl = repo("envoy-config/ratelimit/ecds/ratelimit.yaml");
    assert!(err(&rl, Output::Ecds, "reviews", "v2", None)
        .ends_with("no canary or suite filter with a configuration"));
}

#[test]
fn a_third_subset_with_weight_is_refused_and_one_at_zero_is_kept() {
    let dir = std::env::temp_dir().join(format!("mfctl-three-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("canary.yaml");
    let config = |w3: u32| {
        json!({"services": [{"host": "reviews", "subsets": [
            {"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}, {"name": "v3", "weight": w3}]}]})
    };
    let write = |w3: u32| {
        let mut doc: Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo("envoy-config/canary/ecds/canary.yaml")).unwrap(),
        )
        .unwrap();
        crate::apply::set_plugin_config(&mut doc, None, &config(w3).to_string()).unwrap();
        std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    };
    write(5);
    let e = Target::load(&file, Output::Ecds, None, "reviews", "v2", None).unwrap_err();
    assert!(
        e.ends_with("several other subsets: name the stable one with --stable"),
        "{e}"
    );
    let e = Target::load(&file, Output::Ecds, None, "reviews", "v2", Some("v1")).unwrap_err();
    assert!(
        e.contains("subset \"v3\" of \"reviews\" has weight 5"),
        "{e}"
    );
    write(0);
    let t = Target::load(&file, Output::Ecds, None, "reviews", "v2", Some("v1")).unwrap();
    let text = t.render(40).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let cfg: Value = serde_json::from_str(
        doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let w: Vec<i64> = cfg["services"][0]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["weight"].as_i64().unwrap())
        .collect();
    assert_eq!(w, [60, 40, 0]);
}
