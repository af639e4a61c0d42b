//! `cargo xtask package`: every module (and the suite) as an OCI image layout in
//! `target/oci/<name>/` holding both formats Istio and Envoy Gateway pull (compat and
//! artifact), reproducibly; prints the digests, fills them into the mesh resources, and
//! pushes with `--push REGISTRY/REPO:TAG`.

use crate::resources::{self, Digests};
use crate::util::root;
use anyhow::{bail, Context};
use mesh_e2e::oci::{self, Format, Reference, Registry};

const USAGE: &str = "usage: cargo xtask package [NAME...] [--no-build] [--no-resources]
                            [--push REGISTRY/REPO:TAG] [--format compat|artifact] [--plain-http]

  NAME             modules to package (default: all of target/filters)
  --no-build       package the modules already in target/filters
  --no-resources   do not write the digests into envoy-config/<name>/ resources
  --push REF       push each module's image to REF; with several modules REF must hold
                   `{name}` (e.g. 127.0.0.1:5000/mesh-filters/{name}:0.1.0)
  --format F       the format pushed (default compat; both are in the layout)
  --plain-http     talk HTTP to the registry (loopback registries always do)
  credentials: REGISTRY_USERNAME / REGISTRY_PASSWORD (basic, or traded for a bearer token)";

pub fn package(args: &[String]) -> anyhow::Result<()> {
    let mut names = Vec::new();
    let mut build = true;
    let mut write_resources = true;
    let mut push: Option<String> = None;
    let mut format = Format::Compat;
    let mut plain_http = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-build" => build = false,
            "--no-resources" => write_resources = false,
            "--plain-http" => plain_http = true,
            "--push" => push = Some(it.next().context("--push needs REGISTRY/REPO:TAG")?.clone()),
            "--format" => format = Format::parse(it.next().context("--format needs a value")?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => bail!("unknown option {s:?}\n\n{USAGE}"),
            s => names.push(s.to_owned()),
        }
    }
    if build {
        crate::build::build()?;
    }
    if names.is_empty() {
        names = resources::MODULES.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(p) = &push {
        if names.len() > 1 && !p.contains("{name}") {
            bail!(
                "--push {p:?} with {} modules: put {{name}} in the repository",
                names.len()
            );
        }
    }
    println!("\nOCI image layouts (compat and artifact images) in target/oci/:");
    for name in &names {
        let module = mesh_e2e::module_path(name)?;
        let bytes = std::fs::read(&module)?;
        let dir = root().join("target/oci").join(name);
        let p = oci::write_layout(&dir, &bytes)?;
        println!("  {name}");
        println!("    module sha256     {}", p.module);
        println!("    compat manifest   {}", p.compat);
        println!("    artifact manifest {}", p.artifact);
        if write_resources && resources::MODULES.contains(&name.as_str()) {
            resources::write(name, &Digests::from_packaged(&p))?;
        }
        if let Some(target) = &push {
            let reference = Reference::parse(&target.replace("{name}", name))?;
            let image = oci::layout_image(&dir, format)?;
            let digest =
                Registry::new(&reference, plain_http).push(&image, &reference.reference)?;
            println!(
                "    pushed {} image to {reference} ({digest})",
                format.name()
            );
        }
    }
    if write_resources {
        println!("\nthe digests are in envoy-config/<name>/{{istio,envoy-gateway,consul}}/");
    }
    Ok(())
}
