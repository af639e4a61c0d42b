//! `cargo xtask validate`: `envoy --mode validate` on every bootstrap in `envoy-config/`.

use crate::util::root;
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every YAML file under `envoy-config/` that is an Envoy bootstrap (has `static_resources`).
pub fn bootstraps() -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(&root().join("envoy-config"), &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&p)?;
            // Multi-document files (Kubernetes resources) are not bootstraps.
            if let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
                if doc.get("static_resources").is_some() {
                    out.push(p);
                }
            }
        }
    }
    Ok(())
}

pub fn validate() -> anyhow::Result<()> {
    let envoy = mesh_e2e::install::envoy_bin()?;
    let mut failed = Vec::new();
    let files = bootstraps()?;
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap_or(f).to_path_buf();
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "-l", "error", "-c"])
            .arg(&rel)
            .current_dir(root())
            .output()?;
        if out.status.success() {
            println!("  ok      {}", rel.display());
        } else {
            println!("  FAILED  {}", rel.display());
            eprintln!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            failed.push(rel);
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} bootstraps failed validation",
            failed.len(),
            files.len()
        );
    }
    println!("{} bootstraps valid", files.len());
    Ok(())
}
