//! OCI images of the modules, in the two formats Istio's agent and Envoy Gateway pull, written
//! reproducibly; a registry client (API v2) to push them and to pull them back the way Istio's
//! agent does. `cargo xtask package` and the delivery e2e test share it.
//!
//! - compat: one `application/vnd.oci.image.layer.v1.tar+gzip` layer, a tar holding
//!   `plugin.wasm`, and an OCI image config;
//! - artifact: the two layers `application/vnd.module.wasm.config.v1+json` and
//!   `application/vnd.module.wasm.content.layer.v1+wasm` (the raw module, last).
//!
//! Reproducible: the tar entry has mtime 0, uid/gid 0, mode 0644 and no user names; gzip has
//! mtime 0, no file name, OS byte 255 and level 9 (flate2's own deflate, pinned by Cargo.lock);
//! JSON is written from structs in a fixed field order; no timestamps or build metadata. The
//! same module bytes give the same manifest digests.

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const TAR_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The file a compat image's layer holds.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The annotation naming a manifest in an image layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The two image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Compat,
    Artifact,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Compat, Format::Artifact];

    /// Its ref name in the layout's index.json (`oci:target/oci/<name>:compat` for skopeo).
    pub fn name(self) -> &'static str {
        match self {
            Format::Compat => "compat",
            Format::Artifact => "artifact",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .with_context(|| format!("unknown image format {s:?} (compat or artifact)"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The wasm image spec's config (Istio reads none of it; it tells a human what the image is).
#[derive(Serialize)]
struct WasmConfig {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "abiVersions")]
    abi_versions: [&'static str; 1],
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A blob and its descriptor.
#[derive(Debug, Clone)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            descriptor: Descriptor {
                media_type: media_type.to_owned(),
                digest: digest(&bytes),
                size: bytes.len() as u64,
                annotations: BTreeMap::new(),
            },
            bytes,
        }
    }
}

/// One image: its manifest and every blob it references (config first, then the layers).
#[derive(Debug, Clone)]
pub struct Image {
    pub format: Format,
    pub manifest: Blob,
    pub blobs: Vec<Blob>,
}

impl Image {
    /// The manifest digest (`sha256:<hex>`), what Istio's `sha256` and Envoy Gateway's
    /// `image.sha256` pin (without the `sha256:` prefix).
    pub fn digest(&self) -> &str {
        &self.manifest.descriptor.digest
    }
}

/// The gzip tar layer of a compat image: `plugin.wasm` only, fixed metadata.
pub fn compat_layer(module: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(module.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    tar.append_data(&mut header, PLUGIN_FILE, module)?;
    let tar = tar.into_inner()?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    Ok((tar, gz.finish()?))
}

fn manifest(config: &Blob, layers: &[&Blob]) -> anyhow::Result<Blob> {
    let m = Manifest {
        schema_version: 2,
        media_type: MANIFEST.to_owned(),
        config: config.descriptor.clone(),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
    };
    Ok(Blob::new(MANIFEST, serde_json::to_vec(&m)?))
}

/// The image of `module` in `format`.
pub fn image(module: &[u8], format: Format) -> anyhow::Result<Image> {
    match format {
        Format::Compat => {
            let (tar, gz) = compat_layer(module)?;
            let layer = Blob::new(TAR_GZIP_LAYER, gz);
            let config = ImageConfig {
                architecture: "wasm",
                os: "wasip1",
                rootfs: RootFs {
                    kind: "layers",
                    diff_ids: vec![digest(&tar)],
                },
            };
            let config = Blob::new(IMAGE_CONFIG, serde_json::to_vec(&config)?);
            Ok(Image {
                format,
                manifest: manifest(&config, &[&layer])?,
                blobs: vec![config, layer],
            })
        }
        Format::Artifact => {
            let config = WasmConfig {
                kind: "envoy_proxy",
                abi_versions: ["proxy_abi_version_0_2_1"],
            };
            let config = Blob::new(WASM_CONFIG, serde_json::to_vec(&config)?);
            let layer = Blob::new(WASM_LAYER, module.to_vec());
            // The config is also the first of the two layers, as the wasm image spec's
            // artifact variant has it (Istio's agent wants exactly two layers).
            Ok(Image {
                format,
                manifest: manifest(&config, &[&config, &layer])?,
                blobs: vec![config, layer],
            })
        }
    }
}

/// What `cargo xtask package` tells about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged {
    /// `sha256:<hex>` of the module: what HTTP delivery (`vm_config.code.remote.sha256`,
    /// Envoy Gateway `http.sha256`, Consul `SHA256`) pins, without the prefix.
    pub module: String,
    pub compat: String,
    pub artifact: String,
}

impl Packaged {
    pub fn manifest(&self, format: Format) -> &str {
        match format {
            Format::Compat => &self.compat,
            Format::Artifact => &self.artifact,
        }
    }
}

/// Writes the OCI image layout `dir` (replacing it) holding both images of `module`, each
/// named in index.json by its format.
pub fn write_layout(dir: &Path, module: &[u8]) -> anyhow::Result<Packaged> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut manifests = Vec::new();
    for format in Format::ALL {
        let img = image(module, format)?;
        for b in img.blobs.iter().chain([&img.manifest]) {
            let hex = b.descriptor.digest.trim_start_matches("sha256:");
            std::fs::write(blobs_dir.join(hex), &b.bytes)?;
        }
        let mut d = img.manifest.descriptor.clone();
        d.annotations
            .insert(REF_NAME.to_owned(), format.name().to_owned());
        manifests.push(d);
    }
    let index = Index {
        schema_version: 2,
        media_type: INDEX.to_owned(),
        manifests,
    };
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    read_layout(dir)
}

/// The digests of the layout `dir` written by [`write_layout`].
pub fn read_layout(dir: &Path) -> anyhow::Result<Packaged> {
    let index: Index = serde_json::from_slice(
        &std::fs::read(dir.join("index.json"))
            .with_context(|| format!("reading {}/index.json", dir.display()))?,
    )?;
    let find = |format: Format| {
        index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(format.name()))
            .map(|d| d.digest.clone())
            .with_context(|| format!("{} has no {} image", dir.display(), format.name()))
    };
    let artifact = find(Format::Artifact)?;
    let manifest: Manifest = serde_json::from_slice(&layout_blob(dir, &artifact)?)?;
    let module = manifest
        .layers
        .iter()
        .find(|l| l.media_type == WASM_LAYER)
        .map(|l| l.digest.clone())
        .context("the artifact has no module layer")?;
    Ok(Packaged {
        module,
        compat: find(Format::Compat)?,
        artifact,
    })
}

/// A blob of the layout `dir`, checked against its digest.
pub fn layout_blob(dir: &Path, digest_: &str) -> anyhow::Result<Vec<u8>> {
    let hex = digest_
        .strip_prefix("sha256:")
        .with_context(|| format!("{digest_:?} is not a sha256 digest"))?;
    let bytes = std::fs::read(dir.join("blobs/sha256").join(hex))?;
    ensure!(digest(&bytes) == digest_, "blob {digest_} is corrupt");
    Ok(bytes)
}

/// The image of `format` in the layout `dir`.
pub fn layout_image(dir: &Path, format: Format) -> anyhow::Result<Image> {
    let packaged = read_layout(dir)?;
    let manifest_bytes = layout_blob(dir, packaged.manifest(format))?;
    let m: Manifest = serde_json::from_slice(&manifest_bytes)?;
    let mut blobs = Vec::new();
    for d in std::iter::once(&m.config).chain(&m.layers) {
        if blobs.iter().any(|b: &Blob| b.descriptor.digest == d.digest) {
            continue;
        }
        blobs.push(Blob {
            descriptor: d.clone(),
            bytes: layout_blob(dir, &d.digest)?,
        });
    }
    Ok(Image {
        format,
        manifest: Blob::new(MANIFEST, manifest_bytes),
        blobs,
    })
}

/// `REGISTRY/REPO:TAG` (or `REGISTRY/REPO@sha256:...` to pull).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
}

impl Reference {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.strip_prefix("oci://").unwrap_or(s);
        let Some((registry, rest)) = s.split_once('/') else {
            bail!("{s:?}: expected REGISTRY/REPOSITORY:TAG");
        };
        let (repository, reference) = if let Some((r, d)) = rest.split_once('@') {
            (r, d)
        } else {
            match rest.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, t),
                _ => bail!("{s:?}: the reference has no tag (REGISTRY/REPOSITORY:TAG)"),
            }
        };
        ensure!(
            !registry.is_empty() && !repository.is_empty() && !reference.is_empty(),
            "{s:?}: expected REGISTRY/REPOSITORY:TAG"
        );
        ensure!(
            repository
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)),
            "{s:?}: a repository name is lowercase letters, digits and ._-/"
        );
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
        })
    }

    /// The registry's base URL: plain HTTP for loopback registries or when `plain_http`.
    pub fn base_url(&self, plain_http: bool) -> String {
        let host = self.registry.split(':').next().unwrap_or("");
        let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let scheme = if plain_http || local { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

/// A registry client over the distribution API v2, anonymous or with basic credentials
/// (`REGISTRY_USERNAME` / `REGISTRY_PASSWORD`), which it also trades for a bearer token when
/// the registry asks for one.
pub struct Registry {
    base: String,
    repository: String,
    http: reqwest::blocking::Client,
    basic: Option<(String, String)>,
    token: Option<String>,
}

impl Registry {
    pub fn new(reference: &Reference, plain_http: bool) -> Self {
        let basic = match (
            std::env::var("REGISTRY_USERNAME"),
            std::env::var("REGISTRY_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) if !u.is_empty() => Some((u, p)),
            _ => None,
        };
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new());
        Self {
            base: reference.base_url(plain_http),
            repository: reference.repository.clone(),
            http,
            basic,
            token: None,
        }
    }

    /// Uses `user` / `password` in place of the environment's credentials.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.basic = Some((user.to_owned(), password.to_owned()));
        self.token = None;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Sends the request `make` builds, authenticating once if the registry answers 401.
    fn send(
        &mut self,
        make: &dyn Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let authed = |r: reqwest::blocking::RequestBuilder, s: &Self| match (&s.token, &s.basic) {
            (Some(t), _) => r.bearer_auth(t),
            (None, Some((u, p))) => r.basic_auth(u, Some(p)),
            (None, None) => r,
        };
        let resp = authed(make(&self.http), self).send()?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED || self.token.is_some() {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            ensure!(
                self.basic.is_some(),
                "{} wants credentials ({challenge}): set REGISTRY_USERNAME and REGISTRY_PASSWORD",
                self.base
            );
            return Ok(resp);
        };
        let mut realm = None;
        let mut query = Vec::new();
        for (k, v) in challenge_params(params) {
            if k == "realm" {
                realm = Some(v);
            } else {
                query.push((k, v));
            }
        }
        let realm = realm.context("the registry's bearer challenge has no realm")?;
        let mut req = self.http.get(&realm).query(&query);
        if let Some((u, p)) = &self.basic {
            req = req.basic_auth(u, Some(p));
        }
        let tok: serde_json::Value = req.send()?.error_for_status()?.json()?;
        let token = tok
            .get("token")
            .or_else(|| tok.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .context("the token endpoint answered no token")?;
        self.token = Some(token.to_owned());
        Ok(authed(make(&self.http), self).send()?)
    }

    fn upload(&mut self, blob: &Blob) -> anyhow::Result<()> {
        let d = blob.descriptor.digest.clone();
        let url = self.url(&format!("blobs/{d}"));
        if self.send(&|c| c.head(&url))?.status().is_success() {
            return Ok(());
        }
        let start = self.url("blobs/uploads/");
        let resp = self.send(&|c| c.post(&start))?;
        ensure!(
            resp.status() == reqwest::StatusCode::ACCEPTED,
            "starting the upload of {d}: {}",
            resp.status()
        );
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("the registry gave no upload location")?
            .to_owned();
        let mut put = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={d}"));
        let bytes = blob.bytes.clone();
        let resp = self.send(&|c| {
            c.put(&put)
                .header("content-type", "application/octet-stream")
                .body(bytes.clone())
        })?;
        ensure!(
            resp.status() == reqwest::StatusCode::CREATED,
            "uploading {d}: {} {}",
            resp.status(),
            resp.text().unwrap_or_default()
        );
        Ok(())
    }

    /// Pushes `image` as `tag`; returns the manifest digest the registry reports.
    pub fn push(&mut self, image: &Image, tag: &str) -> anyhow::Result<String> {
        for b in &image.blobs {
            self.upload(b)?;
        }
        let url = self.url(&format!("manifests/{tag}"));
        let body = image.manifest.bytes.clone();
        let resp = self.send(&|c| {
            c.put(&url)
                .header("content-type", MANIFEST)
                .body(body.clone())
        })?;
        ensure!(
            resp.status() == reqwest::StatusCode::CREATED,
            "pushing the manifest: {} {}",
            resp.status(),
            resp.text().unwrap_or_default()
        );
        let reported = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(image.digest())
            .to_owned();
        ensure!(
            reported == image.digest(),
            "the registry stored manifest {reported}, not {}",
            image.digest()
        );
        Ok(reported)
    }

    fn get(&mut self, path: &str, accept: &str) -> anyhow::Result<Vec<u8>> {
        let url = self.url(path);
        let accept = accept.to_owned();
        let resp = self.send(&|c| c.get(&url).header("accept", &accept))?;
        ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
        Ok(resp.bytes()?.to_vec())
    }

    /// Fetches the module of `reference` the way Istio's agent does: the manifest (its digest
    /// checked against `expected`, bare hex as in a WasmPlugin's `sha256`, when given), then a
    /// single tar+gzip layer's `plugin.wasm` (compat) or, with exactly two layers, the raw
    /// `application/vnd.module.wasm.content.layer.v1+wasm` one (artifact). Every blob is
    /// checked against its digest.
    pub fn pull_module(
        &mut self,
        reference: &str,
        expected: Option<&str>,
    ) -> anyhow::Result<Pulled> {
        let accept = format!("{MANIFEST}, {DOCKER_MANIFEST}");
        let bytes = self.get(&format!("manifests/{reference}"), &accept)?;
        let manifest_digest = digest(&bytes);
        if let Some(want) = expected {
            ensure!(
                manifest_digest.trim_start_matches("sha256:") == want,
                "the manifest's digest {manifest_digest} is not the pinned {want}"
            );
        }
        let m: Manifest = serde_json::from_slice(&bytes)?;
        let blob = |s: &mut Self, d: &Descriptor| -> anyhow::Result<Vec<u8>> {
            let b = s.get(&format!("blobs/{}", d.digest), "*/*")?;
            ensure!(digest(&b) == d.digest, "blob {} does not match", d.digest);
            Ok(b)
        };
        let (format, module) = match m.layers.as_slice() {
            [one] if one.media_type == TAR_GZIP_LAYER || one.media_type == DOCKER_LAYER => {
                let gz = blob(self, one)?;
                (Format::Compat, plugin_from_tar_gz(&gz)?)
            }
            [_, _] => {
                let layer = m
                    .layers
                    .iter()
                    .find(|l| l.media_type == WASM_LAYER)
                    .with_context(|| format!("no layer of type {WASM_LAYER}"))?;
                (Format::Artifact, blob(self, layer)?)
            }
            other => bail!(
                "neither format: {} layers of types {:?}",
                other.len(),
                other.iter().map(|l| &l.media_type).collect::<Vec<_>>()
            ),
        };
        Ok(Pulled {
            format,
            manifest_digest,
            manifest: m,
            module,
        })
    }
}

/// The `key="value"` pairs of an authentication challenge; a quoted value may hold commas
/// (`scope="repository:x:pull,push"`).
fn challenge_params(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.push((key, value.to_owned()));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

/// A module pulled from a registry.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub format: Format,
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub module: Vec<u8>,
}

/// `plugin.wasm` (by base name, anywhere in the archive) from a gzip tar.
pub fn plugin_from_tar_gz(gz: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let is_plugin = entry.path()?.file_name().is_some_and(|n| n == PLUGIN_FILE);
        if is_plugin {
            let mut out = Vec::new();
            entry.read_to_end(&mut out)?;
            return Ok(out);
        }
    }
    bail!("{PLUGIN_FILE} is not in the layer")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module";

    #[test]
    fn the_same_module_gives_the_same_manifests() {
        for f in Format::ALL {
            let a = image(MODULE, f).unwrap();
            let b = image(MODULE, f).unwrap();
            assert_eq!(a.manifest.bytes, b.manifest.bytes);
            let c = image(b"\0asm\x01\0\0\0 another", f).unwrap();
            assert_ne!(a.digest(), c.digest());
        }
    }

    #[test]
    fn the_compat_layer_holds_only_plugin_wasm_with_fixed_metadata() {
        let (_, gz) = compat_layer(MODULE).unwrap();
        // gzip header: magic, deflate, no flags, mtime 0, max compression, OS unknown.
        assert_eq!(
            gz.get(..10).unwrap(),
            [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]
        );
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, [("plugin.wasm".to_owned(), 0, 0, 0, 0o644)]);
        assert_eq!(plugin_from_tar_gz(&gz).unwrap(), MODULE);
    }

    #[test]
    fn the_artifact_has_exactly_the_two_wasm_layers_the_module_last() {
        let img = image(MODULE, Format::Artifact).unwrap();
        let m: Manifest = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(m.media_type, MANIFEST);
        assert_eq!(m.config.media_type, WASM_CONFIG);
        let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(types, [WASM_CONFIG, WASM_LAYER]);
        assert_eq!(m.layers[1].digest, digest(MODULE));
        assert!(!img
            .manifest
            .bytes
            .windows(16)
            .any(|w| w == b"application/wasm"));
    }

    #[test]
    fn a_layout_names_both_images_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("oci-layout-{}", std::process::id()));
        let p = write_layout(&dir, MODULE).unwrap();
        assert_eq!(p.module, digest(MODULE));
        assert_eq!(p.compat, image(MODULE, Format::Compat).unwrap().digest());
        assert_eq!(
            std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let again = write_layout(&dir, MODULE).unwrap();
        assert_eq!(p, again);
        for f in Format::ALL {
            let img = layout_image(&dir, f).unwrap();
            assert_eq!(img.digest(), p.manifest(f));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A registry that wants a bearer token: the client trades the challenge for a token at the
    /// realm (with the challenge's service and scope) and sends it on every request after.
    #[test]
    fn a_bearer_challenge_is_answered_with_a_token_from_its_realm() {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let (mut auth, mut len) = (String::new(), 0usize);
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_owned(),
                        "content-length" => len = v.trim().parse().unwrap(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                log.lock().unwrap().push(format!("{} {auth}", line.trim()));
                let (status, extra, payload) = if line.starts_with("GET /token?") {
                    ("200 OK", String::new(), r#"{"token":"t0k"}"#.to_owned())
                } else if auth != "Bearer t0k" {
                    let challenge = format!(
                        "www-authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"reg\",scope=\"repository:m/x:pull,push\"\r\n"
                    );
                    ("401 Unauthorized", challenge, String::new())
                } else if line.starts_with("PUT /v2/m/x/manifests/") {
                    let d = format!("docker-content-digest: {}\r\n", digest(&body));
                    ("201 Created", d, String::new())
                } else {
                    ("200 OK", String::new(), String::new())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{payload}",
                    payload.len()
                );
            }
        });
        let reference = Reference::parse(&format!("127.0.0.1:{port}/m/x:1")).unwrap();
        let img = image(MODULE, Format::Compat).unwrap();
        let mut reg = Registry::new(&reference, false).with_credentials("u", "p");
        assert_eq!(reg.push(&img, "1").unwrap(), img.digest());
        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with("HEAD /v2/m/x/blobs/") && seen[0].ends_with(" Basic dTpw"));
        assert!(seen[1].starts_with("GET /token?"), "{seen:?}");
        assert!(
            seen[1].contains("service=reg")
                && seen[1].contains("scope=repository%3Am%2Fx%3Apull%2Cpush"),
            "{seen:?}"
        );
        assert!(seen[1].ends_with(" Basic dTpw"), "{seen:?}");
        assert!(
            seen[2..].iter().all(|r| r.ends_with(" Bearer t0k")),
            "{seen:?}"
        );
        assert!(seen.last().unwrap().starts_with("PUT /v2/m/x/manifests/1 "));
    }

    #[test]
    fn references_parse() {
        let r = Reference::parse("127.0.0.1:5000/mesh/canary:0.1.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "mesh/canary");
        assert_eq!(r.reference, "0.1.0");
        assert_eq!(r.base_url(false), "http://127.0.0.1:5000");
        let r = Reference::parse("oci://ghcr.io/org/x@sha256:ab").unwrap();
        assert_eq!(r.reference, "sha256:ab");
        assert_eq!(r.base_url(false), "https://ghcr.io");
        assert!(Reference::parse("ghcr.io/org/x").is_err());
        assert!(Reference::parse("ghcr.io/Org/x:1").is_err());
    }
}
