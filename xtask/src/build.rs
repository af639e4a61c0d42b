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
    for p in &paths {
        drop_unused_callbacks(p, p, None)?;
    }
    optimize(&paths)?;
    println!("modules:");
    for p in &paths {
        println!("  {:<40} {:>8.1} KiB", p.display(), kib(p));
    }
    Ok(paths)
}

/// Section where `sdk_shim::export_root_filter!` records the filter's `HttpFilter::CALLBACKS`.
const CALLBACKS_SECTION: &str = "mesh.callbacks";

/// The exports a filter declaring callback bits `bits` does not need (the table is
/// `sdk_shim::Callbacks::EXPORTS`, next to the adapter that forwards them).
fn unused_exports(bits: u8) -> Vec<&'static str> {
    sdk_shim::Callbacks::from_bits(bits).unused_exports()
}

/// Writes to `dest` the module at `path` without the exports of callbacks its filter does not
/// use (read from its `mesh.callbacks` section, which is dropped, or forced with `bits`), so
/// Envoy skips them. A module without the section is copied as it is.
pub fn drop_unused_callbacks(
    path: &std::path::Path,
    dest: &std::path::Path,
    bits: Option<u8>,
) -> anyhow::Result<()> {
    let mut module = walrus::Module::from_file(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e:#}", path.display()))?;
    let section = module.customs.remove_raw(CALLBACKS_SECTION);
    let bits = match (bits, section) {
        (Some(bits), _) => bits,
        (None, Some(section)) => match section.data[..] {
            [bits] => bits,
            _ => anyhow::bail!(
                "{}: section {CALLBACKS_SECTION} is not one byte",
                path.display()
            ),
        },
        (None, None) => {
            if path != dest {
                std::fs::copy(path, dest)?;
            }
            return Ok(());
        }
    };
    let unused = unused_exports(bits);
    let drop: Vec<walrus::ExportId> = module
        .exports
        .iter()
        .filter(|e| unused.contains(&e.name.as_str()))
        .map(|e| e.id())
        .collect();
    for id in drop {
        module.exports.delete(id);
    }
    walrus::passes::gc::run(&mut module);
    module
        .emit_wasm_file(dest)
        .map_err(|e| anyhow::anyhow!("writing {}: {e:#}", dest.display()))?;
    let kept: Vec<&str> = module
        .exports
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.starts_with("proxy_on_"))
        .collect();
    println!("{}: callbacks exported: {}", dest.display(), kept.join(" "));
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_headers_filter_keeps_only_that_forwarded_callback() {
        let unused = unused_exports(1);
        assert!(!unused.contains(&"proxy_on_request_headers"));
        for name in [
            "proxy_on_response_headers",
            "proxy_on_log",
            "proxy_on_http_call_response",
            "proxy_on_response_body",
            "proxy_on_done",
        ] {
            assert!(unused.contains(&name), "{name}");
        }
    }

    #[test]
    fn lifecycle_exports_are_never_dropped() {
        let unused = unused_exports(0);
        for name in [
            "proxy_on_context_create",
            "proxy_on_delete",
            "proxy_on_configure",
            "proxy_on_vm_start",
            "proxy_on_tick",
            "proxy_on_memory_allocate",
        ] {
            assert!(!unused.contains(&name), "{name}");
        }
        assert_eq!(
            unused_exports(15).len(),
            sdk_shim::Callbacks::NEVER_FORWARDED.len()
        );
    }
}
