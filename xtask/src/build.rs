//! `cargo xtask build`: every filter crate for wasm32-wasip1 in release, copied to
//! `target/filters/<name>.wasm`.

use crate::util::{cargo, crates_under, ensure_debian_tools, ensure_targets, have, kib, root, run};
use std::path::PathBuf;
use std::process::Command;

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
    optimize(&paths)?;
    println!("modules:");
    for p in &paths {
        println!("  {:<40} {:>8.1} KiB", p.display(), kib(p));
    }
    Ok(paths)
}

/// Wasm features the Rust target emits; stripped modules carry no feature section, so
/// Binaryen must be told.
const FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Binaryen's `wasm-opt -O3` on each module: a sixth smaller than what rustc and LLVM leave
/// (duplicate functions merged, dead code dropped) at full speed (`-Oz` saves 3% more and
/// gives up inlining). Installed from Debian's `binaryen` when missing; where it cannot be
/// installed or fails on a module, that module ships as built, with a warning.
fn optimize(paths: &[PathBuf]) -> anyhow::Result<()> {
    if let Err(e) = ensure_debian_tools(&[("wasm-opt", "binaryen")]) {
        if !have("wasm-opt") {
            eprintln!("warning: wasm-opt is missing and could not be installed ({e:#}); modules are not size-optimized");
            return Ok(());
        }
    }
    for p in paths {
        let tmp = p.with_extension("opt.wasm");
        let optimized = run(Command::new("wasm-opt")
            .arg("-O3")
            .args(FEATURES)
            .arg(p)
            .arg("-o")
            .arg(&tmp));
        match optimized {
            Ok(()) => std::fs::rename(&tmp, p)?,
            // A toolchain emitting a feature this Binaryen does not know must not stop the
            // build: the module works as rustc left it, only larger.
            Err(e) => eprintln!(
                "warning: wasm-opt failed on {} ({e:#}); keeping the module as built",
                p.display()
            ),
        }
    }
    Ok(())
}
