//! `kubernetes.toml`: the Kubernetes environments' parts, and the releases
//! `--kubernetes` chooses between.

use crate::diagnostic::FileError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `kubernetes.toml`: how the Kubernetes environments are made.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesCatalog {
    /// The default release and the node's parts.
    pub local: LocalKubernetesEntry,
    pub kind: KindEntry,
    /// More releases (`[[release]]`), each chosen with `--kubernetes`: they
    /// take `[local]`'s place with their own module tags, toolchain and
    /// etcd; the node's parts stay. Not serialized: a cell hashes the one
    /// release it runs on (`local` after [`KubernetesCatalog::select`]), so
    /// adding a release leaves the other releases' cells as they were.
    #[serde(default, rename = "release", skip_serializing)]
    pub releases: Vec<KubernetesRelease>,
}

/// A Kubernetes release besides `[local]`'s, e.g. one that needs a newer Go.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesRelease {
    pub version: String,
    pub staging_version: String,
    pub toolchain: String,
    pub etcd: EtcdEntry,
}

impl KubernetesCatalog {
    /// Every release, the default first.
    pub fn release_versions(&self) -> Vec<&str> {
        std::iter::once(self.local.version.as_str())
            .chain(self.releases.iter().map(|r| r.version.as_str()))
            .collect()
    }

    /// Makes `version` the release every cluster of this run is built
    /// from; an unknown one is an error naming `file` and the known ones.
    pub fn select(&mut self, version: &str, file: &Path) -> Result<(), FileError> {
        if version == self.local.version {
            return Ok(());
        }
        let Some(release) = self.releases.iter().find(|r| r.version == version) else {
            let known = self.release_versions();
            return Err(FileError::whole_file(
                file,
                format!("no Kubernetes release `{version}`"),
                format!(
                    "use one of: {} (the first is the default), or add a [[release]] with version, staging_version, toolchain and etcd",
                    known.join(", ")
                ),
            ));
        };
        let release = release.clone();
        self.local.version = release.version;
        self.local.staging_version = release.staging_version;
        self.local.toolchain = release.toolchain;
        self.local.etcd = release.etcd;
        Ok(())
    }
}

/// The local cluster: server binaries built from Kubernetes' Go module at a
/// release tag, etcd from its module at the tag that release names, the
/// node's other parts from Debian packages.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalKubernetesEntry {
    /// The release, e.g. "v1.34.4": the `k8s.io/kubernetes` module's tag,
    /// stamped into the binaries.
    pub version: String,
    /// The version its staging modules (k8s.io/api, …) are published under.
    pub staging_version: String,
    /// A Go toolchain of `toolchains.toml`.
    pub toolchain: String,
    /// `k8s.io/kubernetes/cmd/<name>` for each.
    pub binaries: Vec<String>,
    pub etcd: EtcdEntry,
    pub node_suite: String,
    pub node_packages: Vec<String>,
    /// Node programs the host's cluster takes from another suite: they run
    /// on the host's C library there (inside a guest the node tree brings
    /// its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_suite: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_packages: Vec<String>,
    /// What the node needs besides, inside a guest (`<kernel>+k8s`), where
    /// the host's tools are not there: a shell, iptables, mount.
    #[serde(default)]
    pub guest_packages: Vec<String>,
    /// The guest's memory for `<kernel>+k8s` (the control plane and the pods).
    #[serde(default = "default_guest_memory_mb")]
    pub guest_memory_mb: u32,
}

/// etcd, built from `go.etcd.io/etcd/server/v3` at the tag the Kubernetes
/// release names (its build/dependencies.yaml).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EtcdEntry {
    pub version: String,
    pub toolchain: String,
}

impl EtcdEntry {
    /// The module (and main package) etcd's release binary is built from.
    pub const MODULE: &'static str = "go.etcd.io/etcd/server/v3";
}

impl LocalKubernetesEntry {
    /// The module the server binaries are built from.
    pub const MODULE: &'static str = "k8s.io/kubernetes";
}

fn default_guest_memory_mb() -> u32 {
    3072
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KindEntry {
    pub node_image: String,
    /// Where a `kind` binary comes from when none is on PATH.
    pub suite: String,
    pub package: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> KubernetesCatalog {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/kubernetes.toml"),
        )
        .expect("the project's kubernetes.toml");
        toml::from_str(&text).expect("it parses")
    }

    #[test]
    fn a_release_takes_the_defaults_place_and_the_node_parts_stay() {
        let default = catalog();
        let file = Path::new("images/kubernetes.toml");
        let mut selected = default.clone();
        selected.select(&default.local.version, file).unwrap();
        assert_eq!(selected, default, "the default release changes nothing");

        let other = default.releases.first().expect("a second release");
        selected.select(&other.version.clone(), file).unwrap();
        assert_eq!(selected.local.version, other.version);
        assert_eq!(selected.local.staging_version, other.staging_version);
        assert_eq!(selected.local.toolchain, other.toolchain);
        assert_eq!(selected.local.etcd, other.etcd);
        assert_eq!(selected.local.node_packages, default.local.node_packages);
        assert_eq!(selected.local.binaries, default.local.binaries);
        // Cells hash the serialized catalog: the releases list is not in it,
        // so adding one leaves the default release's cells as they were.
        let json = serde_json::to_value(&default).unwrap();
        assert_eq!(
            json.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["kind", "local"]
        );
    }

    #[test]
    fn an_unknown_release_names_the_file_and_the_known_ones() {
        let mut catalog = catalog();
        let error = catalog
            .select("v1.99.0", Path::new("images/kubernetes.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("images/kubernetes.toml"), "{error}");
        assert!(error.contains("no Kubernetes release `v1.99.0`"), "{error}");
        for known in catalog.release_versions() {
            assert!(error.contains(known), "{error}");
        }
    }
}
