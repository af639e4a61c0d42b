//! `cargo xtask build`: every filter crate for wasm32-wasip1 in release, copied to
//! `target/filters/<name>.wasm`.

use crate::util::{cargo, crates_under, ensure_targets, kib, root, run};
use std::path::PathBuf;

pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Builds the modules and returns their paths.
pub fn build() -> anyhow::Result<Vec<PathBuf>> {
    ensure_targets(&[WASM_TARGET])?;
    let names = crates_under("filters")?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", WASM_TARGET]);
    for n in &names {
        cmd.args(["-p", &format!("filter-{n}")]);
    }
    run(&mut cmd)?;
    let out_dir = root().join("target/filters");
    std::fs::create_dir_all(&out_dir)?;
    let mut paths = Vec::new();
    println!("modules:");
    for n in &names {
        let built = root()
            .join("target")
            .join(WASM_TARGET)
            .join("release")
            .join(format!("filter_{n}.wasm"));
        let dest = out_dir.join(format!("{n}.wasm"));
        std::fs::copy(&built, &dest)
            .map_err(|e| anyhow::anyhow!("copying {}: {e}", built.display()))?;
        println!("  {:<40} {:>8.1} KiB", dest.display(), kib(&dest));
        paths.push(dest);
    }
    Ok(paths)
}
