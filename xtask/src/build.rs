//! `cargo xtask build`: every filter crate for wasm32-wasip1 in release, copied to
//! `target/filters/<name>.wasm`.

use crate::util::{cargo, crates_under, ensure_targets, kib, root, run};
use std::path::PathBuf;

pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Builds the modules and returns their paths.
pub fn build() -> anyhow::Result<Vec<PathBuf>> {
    ensure_targets(&[WASM_TARGET])?;
    let names = crates_under("filters")?;
    let out_dir = root().join("target/filters");
    std::fs::create_dir_all(&out_dir)?;
    // Modules that link other filter crates get their own cargo run: in one run, feature
    // unification would turn on the linked crates' entry points (feature `export`) too. Each
    // group is copied out before the next run, which may rebuild a dependency's cdylib.
    let (composite, single): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.as_str() == "suite");
    let mut paths = Vec::new();
    for group in [single, composite] {
        if group.is_empty() {
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--target", WASM_TARGET]);
        for n in &group {
            cmd.args(["-p", &format!("filter-{n}")]);
        }
        run(&mut cmd)?;
        for n in group {
            let built = root()
                .join("target")
                .join(WASM_TARGET)
                .join("release")
                .join(format!("filter_{n}.wasm"));
            let dest = out_dir.join(format!("{n}.wasm"));
            std::fs::copy(&built, &dest)
                .map_err(|e| anyhow::anyhow!("copying {}: {e}", built.display()))?;
            paths.push(dest);
        }
    }
    println!("modules:");
    for p in &paths {
        println!("  {:<40} {:>8.1} KiB", p.display(), kib(p));
    }
    Ok(paths)
}
