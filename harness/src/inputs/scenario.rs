//! Scenarios: one folder per case under `scenarios/`, holding `scenario.toml`
//! and the reproducer's sources. Loading validates everything a run relies
//! on, so a bad scenario fails before anything boots.

use super::Catalog;
use crate::diagnostic::FileError;
use crate::ids::{KernelId, ScenarioId};
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use toml::Spanned;

mod kubernetes;
mod loading;
mod placeholders;
mod validate;
mod version;

pub use loading::{folders, load, load_all, load_each};
use validate::Validator;

use kubernetes::KubernetesFileSpec;
pub use kubernetes::KubernetesSpec;
use placeholders::unknown_placeholder;
pub use placeholders::{
    ARTIFACT_PLACEHOLDER, BPF_OBJECT_PLACEHOLDER, GUEST_RUNTIME_PACKAGE, PLACEHOLDERS,
    REPRODUCER_PLACEHOLDER, SERVICE_PLACEHOLDER,
};

use version::VersionSpec;
pub use version::{
    Artifact, DebianPackageSpec, GoModuleSpec, ModuleProgram, RealArtifact, RealNeeds, Version,
};

pub const SCENARIO_FILE: &str = "scenario.toml";
/// Every scenario has this variant: the component as shipped.
pub const BASELINE_VARIANT: &str = "baseline";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    scenario: Meta,
    /// Absent when every probe runs the versions' real artifacts.
    #[serde(default)]
    reproducer: Option<ReproducerSpec>,
    version: Vec<VersionSpec>,
    variant: Vec<VariantSpec>,
    probe: Vec<ProbeSpec>,
    #[serde(default)]
    signature: Vec<SignatureSpec>,
    #[serde(default)]
    guest: Option<GuestSpec>,
    /// How the versions run as Kubernetes workloads (`k8s-local`, `kind`).
    #[serde(default)]
    kubernetes: Option<KubernetesFileSpec>,
}

/// A guest root filesystem made of Debian packages (and everything they
/// depend on), for reproductions that need real userspace daemons.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    pub suite: String,
    pub packages: Vec<String>,
    /// Paths (relative to /) left out to keep the initramfs small; a
    /// trailing `*` matches a prefix.
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    id: Spanned<String>,
    component: String,
    title: String,
    issue: Spanned<String>,
    summary: String,
    kernels: Vec<Spanned<String>>,
    #[serde(default)]
    references: Vec<String>,
    /// Kernel modules the probes need, loaded (with dependencies) before the cells run.
    #[serde(default)]
    modules: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReproducerSpec {
    language: Spanned<String>,
    source: Spanned<String>,
    /// The toolchain and go.mod line for versions that give none (versions
    /// that are real artifacts: the reproducer is then the scenario's driver).
    #[serde(default)]
    toolchain: Option<Spanned<String>>,
    #[serde(default)]
    go_directive: Option<Spanned<String>>,
    /// Go libraries from Debian's golang-*-dev packages, vendored into the build.
    #[serde(default)]
    go_packages: Option<GoPackages>,
    /// Why the versions built from this reproducer are stand-ins: what
    /// keeps the component's own code from running here.
    #[serde(default)]
    stand_in: Option<String>,
}

/// Debian packages holding Go library sources (under /usr/share/gocode/src).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GoPackages {
    pub suite: String,
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantSpec {
    id: Spanned<String>,
    description: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Extra kernel command-line words for this variant (e.g. `ipv6.disable=1`).
    #[serde(default)]
    kernel_args: Vec<String>,
    /// A Kubernetes-only variant: kube-proxy's mode on the cluster it runs
    /// on (`ipvs`; `iptables` is every cluster's default). Left out of
    /// the plan on kernels that are not clusters.
    #[serde(default)]
    kube_proxy: Option<KubeProxyMode>,
    /// Only with these versions (a setting only some releases read, e.g.
    /// one a release renamed); empty: with every version.
    #[serde(default = "every_version")]
    versions: Spanned<Vec<String>>,
}

fn every_version() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

/// kube-proxy's modes kmatrix can start a cluster with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeProxyMode {
    Iptables,
    Ipvs,
}

impl KubeProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KubeProxyMode::Iptables => "iptables",
            KubeProxyMode::Ipvs => "ipvs",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSpec {
    id: Spanned<String>,
    run: Spanned<Vec<String>>,
    timeout_secs: Spanned<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pass_exit_code: i32,
    #[serde(default)]
    pass_stdout: Option<Spanned<String>>,
    /// An exit status by which the reproducer says "this kernel lacks what
    /// the path needs": the cell is `unavailable` there, not failed.
    #[serde(default)]
    unavailable_exit_code: Option<i32>,
    /// The case cannot be judged without this probe: where it is
    /// `unavailable`, so is the cell, whatever the other probes did.
    #[serde(default)]
    needed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSpec {
    id: Spanned<String>,
    verdict: Spanned<String>,
    pattern: Spanned<String>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: ScenarioId,
    pub dir: PathBuf,
    pub component: String,
    pub title: String,
    pub issue: String,
    pub summary: String,
    /// The kernels run when no `--kernel` is given.
    pub kernels: Vec<KernelId>,
    pub references: Vec<String>,
    pub modules: Vec<String>,
    /// The reproducer's sources; `None` when the scenario has none.
    pub reproducer_dir: Option<PathBuf>,
    pub go_packages: Option<GoPackages>,
    pub guest: Option<GuestSpec>,
    pub versions: Vec<Version>,
    pub variants: Vec<Variant>,
    pub probes: Vec<Probe>,
    pub signatures: Vec<Signature>,
    pub kubernetes: Option<KubernetesSpec>,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub id: String,
    pub description: String,
    pub env: BTreeMap<String, String>,
    pub kernel_args: Vec<String>,
    /// Only on Kubernetes environments, with kube-proxy in this mode.
    pub kube_proxy: Option<KubeProxyMode>,
    /// Planned only with these versions; empty: with all.
    pub versions: Vec<String>,
}

impl Scenario {
    /// The variants the plan pairs with `version` (a variant's `versions`
    /// may name only some).
    pub fn variants_with<'a>(&'a self, version: &'a str) -> impl Iterator<Item = &'a Variant> {
        self.variants
            .iter()
            .filter(move |v| v.versions.is_empty() || v.versions.iter().any(|id| id == version))
    }
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub id: String,
    pub run: Vec<String>,
    pub timeout_secs: u64,
    pub env: BTreeMap<String, String>,
    pub pass_exit_code: i32,
    pub pass_stdout: Option<Regex>,
    pub unavailable_exit_code: Option<i32>,
    /// Where this probe is `unavailable`, the cell is too.
    pub needed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVerdict {
    Fail,
    Crash,
    /// The harness's own machinery failed (a container runtime that could
    /// not start the container): never the component's fault.
    InfraError,
}

#[derive(Debug, Clone)]
pub struct Signature {
    pub id: String,
    pub verdict: SignatureVerdict,
    pub pattern: Regex,
}

impl Scenario {
    pub fn variant(&self, id: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.id == id)
    }
}
