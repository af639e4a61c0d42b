//! The upstream schema facts of the resources we ship, as serde types: unknown fields are
//! rejected and enums are closed, so a resource that parses here has only fields and values
//! its mesh defines. Sources: Istio `extensions.istio.io/v1alpha1` WasmPlugin and
//! TrafficExtension, Envoy Gateway `gateway.envoyproxy.io/v1alpha1` EnvoyExtensionPolicy,
//! Consul config entries (`service-defaults` with `builtin/wasm`, `service-router`,
//! `service-resolver`).

// Every field of the upstream schemas is declared so that it parses; not all are read.
#![allow(dead_code)]

use anyhow::{bail, ensure};
use serde::Deserialize;
use std::collections::BTreeMap;

type Json = serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A Kubernetes resource of kind `S`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource<S> {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

impl<S> Resource<S> {
    fn check_type(&self, api_version: &str, kind: &str) -> anyhow::Result<()> {
        ensure!(
            self.api_version == api_version && self.kind == kind,
            "expected {api_version} {kind}, found {} {}",
            self.api_version,
            self.kind
        );
        Ok(())
    }
}

// --- Istio -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(rename = "matchLabels")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    #[serde(default)]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, rename = "sectionName")]
    pub section_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Phase {
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
    #[serde(rename = "AUTHN")]
    Authn,
    #[serde(rename = "AUTHZ")]
    Authz,
    #[serde(rename = "STATS")]
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FailStrategy {
    #[serde(rename = "FAIL_CLOSE")]
    Close,
    #[serde(rename = "FAIL_OPEN")]
    Open,
    #[serde(rename = "FAIL_RELOAD")]
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PullPolicy {
    #[serde(rename = "UNSPECIFIED_POLICY")]
    Unspecified,
    IfNotPresent,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PluginType {
    #[serde(rename = "UNSPECIFIED_PLUGIN_TYPE")]
    Unspecified,
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "NETWORK")]
    Network,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TrafficMode {
    #[serde(rename = "UNDEFINED")]
    Undefined,
    #[serde(rename = "CLIENT")]
    Client,
    #[serde(rename = "SERVER")]
    Server,
    #[serde(rename = "CLIENT_AND_SERVER")]
    ClientAndServer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    pub number: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSelector {
    #[serde(default)]
    pub mode: Option<TrafficMode>,
    #[serde(default)]
    pub ports: Vec<PortSelector>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, rename = "valueFrom")]
    pub value_from: Option<EnvValueSource>,
}

#[derive(Debug, Clone, Deserialize)]
pub enum EnvValueSource {
    #[serde(rename = "INLINE")]
    Inline,
    #[serde(rename = "HOST")]
    Host,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    #[serde(default)]
    pub env: Vec<EnvVar>,
}

/// The module fields a WasmPlugin has at its top and a TrafficExtension in its `wasm` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmModule {
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default, rename = "imagePullPolicy")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, rename = "imagePullSecret")]
    pub image_pull_secret: Option<String>,
    #[serde(default, rename = "pluginConfig")]
    pub plugin_config: Option<serde_json::Map<String, Json>>,
    #[serde(default, rename = "pluginName")]
    pub plugin_name: Option<String>,
    #[serde(default, rename = "failStrategy")]
    pub fail_strategy: Option<FailStrategy>,
    #[serde(default, rename = "vmConfig")]
    pub vm_config: Option<VmConfig>,
    #[serde(default, rename = "type")]
    pub plugin_type: Option<PluginType>,
}

impl WasmModule {
    /// FAIL_CLOSE is Istio's default.
    pub fn fails_open(&self) -> bool {
        self.fail_strategy == Some(FailStrategy::Open)
    }

    fn check(&self) -> anyhow::Result<()> {
        let scheme = self.url.split_once("://").map_or("oci", |(s, _)| s);
        ensure!(
            matches!(scheme, "oci" | "file" | "http" | "https"),
            "url {:?}: scheme {scheme:?} is not oci, file, http or https",
            self.url
        );
        if let Some(s) = &self.sha256 {
            check_hex(s, "sha256")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmPluginSpec {
    #[serde(default)]
    pub selector: Option<Selector>,
    #[serde(default, rename = "targetRef")]
    pub target_ref: Option<TargetRef>,
    #[serde(default, rename = "targetRefs")]
    pub target_refs: Vec<TargetRef>,
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default, rename = "imagePullPolicy")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, rename = "imagePullSecret")]
    pub image_pull_secret: Option<String>,
    #[serde(default, rename = "pluginConfig")]
    pub plugin_config: Option<serde_json::Map<String, Json>>,
    #[serde(default, rename = "pluginName")]
    pub plugin_name: Option<String>,
    #[serde(default, rename = "failStrategy")]
    pub fail_strategy: Option<FailStrategy>,
    #[serde(default, rename = "vmConfig")]
    pub vm_config: Option<VmConfig>,
    #[serde(default, rename = "type")]
    pub plugin_type: Option<PluginType>,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default, rename = "match")]
    pub traffic: Vec<TrafficSelector>,
}

impl WasmPluginSpec {
    /// Its module fields, as a TrafficExtension's `wasm` block has them.
    pub fn module(&self) -> WasmModule {
        WasmModule {
            url: self.url.clone(),
            sha256: self.sha256.clone(),
            image_pull_policy: self.image_pull_policy,
            image_pull_secret: self.image_pull_secret.clone(),
            plugin_config: self.plugin_config.clone(),
            plugin_name: self.plugin_name.clone(),
            fail_strategy: self.fail_strategy,
            vm_config: self.vm_config.clone(),
            plugin_type: self.plugin_type,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficExtensionSpec {
    #[serde(default)]
    pub selector: Option<Selector>,
    #[serde(default, rename = "targetRefs")]
    pub target_refs: Vec<TargetRef>,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default, rename = "match")]
    pub traffic: Vec<TrafficSelector>,
    pub wasm: WasmModule,
}

fn one_target(selector: bool, refs: usize) -> anyhow::Result<()> {
    ensure!(
        !(selector && refs > 0),
        "selector and targetRefs are exclusive"
    );
    Ok(())
}

pub fn wasm_plugin(doc: &Json) -> anyhow::Result<Resource<WasmPluginSpec>> {
    let r: Resource<WasmPluginSpec> = serde_json::from_value(doc.clone())?;
    r.check_type("extensions.istio.io/v1alpha1", "WasmPlugin")?;
    one_target(
        r.spec.selector.is_some(),
        r.spec.target_refs.len() + usize::from(r.spec.target_ref.is_some()),
    )?;
    r.spec.module().check()?;
    Ok(r)
}

pub fn traffic_extension(doc: &Json) -> anyhow::Result<Resource<TrafficExtensionSpec>> {
    let r: Resource<TrafficExtensionSpec> = serde_json::from_value(doc.clone())?;
    r.check_type("extensions.istio.io/v1alpha1", "TrafficExtension")?;
    one_target(r.spec.selector.is_some(), r.spec.target_refs.len())?;
    r.spec.wasm.check()?;
    Ok(r)
}

// --- Envoy Gateway -----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionPolicySpec {
    #[serde(default, rename = "targetRefs")]
    pub target_refs: Vec<TargetRef>,
    #[serde(default, rename = "targetSelectors")]
    pub target_selectors: Vec<Json>,
    pub wasm: Vec<GatewayWasm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayWasm {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "rootID")]
    pub root_id: Option<String>,
    pub code: WasmCodeSource,
    #[serde(default)]
    pub config: Option<Json>,
    /// Envoy Gateway's default is false (fail closed).
    #[serde(default, rename = "failOpen")]
    pub fail_open: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CodeType {
    #[serde(rename = "HTTP")]
    Http,
    Image,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum GatewayPullPolicy {
    IfNotPresent,
    Always,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmCodeSource {
    #[serde(rename = "type")]
    pub kind: CodeType,
    #[serde(default)]
    pub http: Option<HttpCode>,
    #[serde(default)]
    pub image: Option<ImageCode>,
    #[serde(default, rename = "pullPolicy")]
    pub pull_policy: Option<GatewayPullPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCode {
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCode {
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default, rename = "pullSecretRef")]
    pub pull_secret_ref: Option<Json>,
}

pub fn extension_policy(doc: &Json) -> anyhow::Result<Resource<ExtensionPolicySpec>> {
    let r: Resource<ExtensionPolicySpec> = serde_json::from_value(doc.clone())?;
    r.check_type("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy")?;
    ensure!(
        !r.spec.target_refs.is_empty() || !r.spec.target_selectors.is_empty(),
        "targetRefs or targetSelectors is required"
    );
    for w in &r.spec.wasm {
        let c = &w.code;
        match (c.kind, &c.http, &c.image) {
            (CodeType::Http, Some(h), None) => {
                ensure!(
                    h.url.starts_with("http://") || h.url.starts_with("https://"),
                    "http.url {:?} is not an http(s) URL",
                    h.url
                );
                if let Some(s) = &h.sha256 {
                    check_hex(s, "http.sha256")?;
                }
            }
            (CodeType::Image, None, Some(i)) => {
                ensure!(
                    !i.url.contains("://"),
                    "image.url {:?} takes no scheme",
                    i.url
                );
                if let Some(s) = &i.sha256 {
                    check_hex(s, "image.sha256")?;
                }
            }
            _ => bail!("code.type must match the one of http or image that is set"),
        }
        ensure!(
            c.pull_policy.is_none() || c.kind == CodeType::Image,
            "pullPolicy is for Image code only"
        );
    }
    Ok(r)
}

// --- Consul ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefaults {
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(default, rename = "Namespace")]
    pub namespace: Option<String>,
    #[serde(default, rename = "Partition")]
    pub partition: Option<String>,
    #[serde(default, rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Protocol")]
    pub protocol: Protocol,
    #[serde(rename = "EnvoyExtensions")]
    pub envoy_extensions: Vec<EnvoyExtension>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvoyExtension {
    #[serde(rename = "Name")]
    pub name: String,
    /// Whether a failure to apply the extension fails the proxy's configuration: `false` is
    /// failing open.
    #[serde(default, rename = "Required")]
    pub required: bool,
    #[serde(rename = "Arguments")]
    pub arguments: WasmArguments,
    #[serde(default, rename = "ConsulVersion")]
    pub consul_version: Option<String>,
    #[serde(default, rename = "EnvoyVersion")]
    pub envoy_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerType {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmProtocol {
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmArguments {
    #[serde(rename = "Protocol")]
    pub protocol: WasmProtocol,
    #[serde(rename = "ListenerType")]
    pub listener_type: ListenerType,
    #[serde(rename = "PluginConfig")]
    pub plugin_config: ConsulPluginConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulPluginConfig {
    #[serde(default, rename = "Name")]
    pub name: Option<String>,
    #[serde(default, rename = "RootID")]
    pub root_id: Option<String>,
    #[serde(default, rename = "Configuration")]
    pub configuration: Option<String>,
    #[serde(rename = "VmConfig")]
    pub vm_config: ConsulVmConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    V8,
    Wamr,
    Wavm,
    Wasmtime,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulVmConfig {
    #[serde(default, rename = "VmID")]
    pub vm_id: Option<String>,
    #[serde(default, rename = "Runtime")]
    pub runtime: Option<Runtime>,
    #[serde(rename = "Code")]
    pub code: ConsulCode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulCode {
    #[serde(default, rename = "Local")]
    pub local: Option<ConsulLocal>,
    #[serde(default, rename = "Remote")]
    pub remote: Option<ConsulRemote>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulLocal {
    #[serde(rename = "Filename")]
    pub filename: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulRemote {
    #[serde(rename = "HttpURI")]
    pub http_uri: HttpUri,
    #[serde(rename = "SHA256")]
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUri {
    #[serde(rename = "Service")]
    pub service: ConsulServiceRef,
    #[serde(rename = "URI")]
    pub uri: String,
    #[serde(default, rename = "Timeout")]
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulServiceRef {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(default, rename = "Namespace")]
    pub namespace: Option<String>,
    #[serde(default, rename = "Partition")]
    pub partition: Option<String>,
}

/// Consul's limits on config entry metadata: at most 64 pairs, keys of 128 characters,
/// values of 512.
fn check_meta(meta: &BTreeMap<String, String>) -> anyhow::Result<()> {
    ensure!(meta.len() <= 64, "Meta has more than 64 keys");
    for (k, v) in meta {
        ensure!(
            k.len() <= 128,
            "Meta key {k:?} is longer than 128 characters"
        );
        ensure!(
            v.len() <= 512,
            "Meta value of {k:?} is longer than 512 characters"
        );
    }
    Ok(())
}

pub fn service_defaults(doc: &Json) -> anyhow::Result<ServiceDefaults> {
    let d: ServiceDefaults = serde_json::from_value(doc.clone())?;
    ensure!(d.kind == "service-defaults", "Kind is {:?}", d.kind);
    check_meta(&d.meta)?;
    for e in &d.envoy_extensions {
        ensure!(e.name == "builtin/wasm", "extension {:?}", e.name);
        let code = &e.arguments.plugin_config.vm_config.code;
        match (&code.local, &code.remote) {
            (Some(_), None) => {}
            (None, Some(r)) => {
                check_hex(&r.sha256, "SHA256")?;
                if let Some(t) = &r.http_uri.timeout {
                    check_duration(t)?;
                }
            }
            _ => bail!("Code takes exactly one of Local and Remote"),
        }
        if e.arguments.protocol == WasmProtocol::Http {
            ensure!(
                d.protocol != Protocol::Tcp,
                "an http wasm extension needs an L7 Protocol"
            );
        }
    }
    Ok(d)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRouter {
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(default, rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Routes")]
    pub routes: Vec<Route>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(rename = "Match")]
    pub matches: RouteMatch,
    #[serde(rename = "Destination")]
    pub destination: RouteDestination,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(rename = "HTTP")]
    pub http: HttpMatch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, rename = "Header")]
    pub header: Vec<HeaderMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Exact")]
    pub exact: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "ServiceSubset")]
    pub service_subset: String,
}

pub fn service_router(doc: &Json) -> anyhow::Result<ServiceRouter> {
    let r: ServiceRouter = serde_json::from_value(doc.clone())?;
    ensure!(r.kind == "service-router", "Kind is {:?}", r.kind);
    check_meta(&r.meta)?;
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceResolver {
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(default, rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "DefaultSubset")]
    pub default_subset: String,
    #[serde(rename = "Subsets")]
    pub subsets: BTreeMap<String, Subset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    #[serde(rename = "Filter")]
    pub filter: String,
}

pub fn service_resolver(doc: &Json) -> anyhow::Result<ServiceResolver> {
    let r: ServiceResolver = serde_json::from_value(doc.clone())?;
    ensure!(r.kind == "service-resolver", "Kind is {:?}", r.kind);
    check_meta(&r.meta)?;
    ensure!(
        r.subsets.contains_key(&r.default_subset),
        "DefaultSubset {:?} is not a subset",
        r.default_subset
    );
    Ok(r)
}

fn check_hex(s: &str, field: &str) -> anyhow::Result<()> {
    ensure!(
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{field} {s:?} is not 64 lowercase hex digits"
    );
    Ok(())
}

/// A Go duration as Consul takes it (`5s`, `1m30s`, `250ms`).
fn check_duration(s: &str) -> anyhow::Result<()> {
    let mut rest = s;
    ensure!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        ensure!(digits > 0, "duration {s:?}");
        rest = rest.get(digits..).unwrap_or("");
        let unit = ["ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(unit) = unit else {
            bail!("duration {s:?} has no unit");
        };
        rest = rest.get(unit.len()..).unwrap_or("");
    }
    Ok(())
}
