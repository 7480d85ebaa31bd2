//! What a local Kubernetes cluster is made of: the server binaries built
//! from the catalog's source tarball with its Go toolchain (one cache entry,
//! about 7 minutes cold on 2 cores, then reused), and the node's Debian
//! parts (etcd, containerd, runc, CNI plugins) unpacked from their packages.

use super::Provisioner;
use crate::hashing::sha256_bytes;
use crate::inputs::catalog::LocalKubernetesEntry;
use crate::inputs::scenario::GuestSpec;
use crate::sources::{fetch, k8sbuild};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Bumped when the build recipe changes, so cached binaries are rebuilt.
const BUILD_RECIPE: &str = "1";

/// Everything on disk a local cluster runs from.
#[derive(Debug, Clone)]
pub struct ClusterParts {
    /// Kubernetes' version, e.g. "v1.20.2".
    pub version: String,
    /// kubelet, kube-apiserver, ..., kubectl, kubeadm and `pause`.
    pub bin: PathBuf,
    /// The Debian packages' unpacked root (`usr/bin/etcd`, `usr/bin/containerd`,
    /// `usr/sbin/runc`, `usr/lib/cni/`).
    pub node: PathBuf,
}

impl Provisioner<'_> {
    fn local_kubernetes_entry(&self) -> Result<&LocalKubernetesEntry> {
        self.catalog
            .kubernetes
            .as_ref()
            .map(|k| &k.local)
            .context("this project has no images/kubernetes.toml: no Kubernetes environments")
    }

    /// The local cluster's parts, built or fetched on first use.
    pub fn cluster_parts(&self) -> Result<ClusterParts> {
        let entry = self.local_kubernetes_entry()?.clone();
        let bin = self.kubernetes_binaries(&entry)?;
        let node = self.rootfs(&GuestSpec {
            suite: entry.node_suite.clone(),
            packages: entry.node_packages.clone(),
            exclude: vec![
                "usr/share/doc*".into(),
                "usr/share/man*".into(),
                "usr/share/locale*".into(),
            ],
        })?;
        Ok(ClusterParts {
            version: entry.version,
            bin,
            node,
        })
    }

    /// Whether the binaries are already built (so a cluster starts in seconds).
    pub fn kubernetes_binaries_cached(&self) -> bool {
        let Ok(entry) = self.local_kubernetes_entry() else {
            return false;
        };
        self.cache
            .lookup("kubernetes-built", &binaries_key(entry))
            .is_some()
    }

    fn kubernetes_binaries(&self, entry: &LocalKubernetesEntry) -> Result<PathBuf> {
        let file = entry
            .source_url
            .rsplit('/')
            .next()
            .unwrap_or("kubernetes.tar.gz")
            .to_string();
        let key = binaries_key(entry);
        if let Some(built) = self.cache.lookup("kubernetes-built", &key) {
            return Ok(built.with_file_name("bin"));
        }
        let tarball = self.events.step(&format!("fetch {file}"), || {
            self.cache
                .get_or_make("kubernetes-sources", &entry.source_sha256, |dir| {
                    fetch::download(
                        &entry.source_url,
                        &dir.join(&file),
                        Some(&entry.source_sha256),
                        &self.events,
                    )?;
                    Ok(PathBuf::from(&file))
                })
        })?;
        let toolchain = self.toolchain(&entry.toolchain)?;
        let label = format!("build kubernetes {}", entry.version);
        let manifest = self.events.step(&label, || {
            self.cache.get_or_make("kubernetes-built", &key, |dir| {
                k8sbuild::build(
                    &k8sbuild::K8sBuild {
                        tarball: &tarball,
                        goroot: &toolchain.goroot,
                        version: &entry.version,
                        binaries: &entry.binaries,
                    },
                    dir,
                    &self.events,
                )
            })
        })?;
        Ok(manifest.with_file_name("bin"))
    }
}

fn binaries_key(entry: &LocalKubernetesEntry) -> String {
    sha256_bytes(
        format!(
            "{}\0{}\0{}\0{}\0{BUILD_RECIPE}",
            entry.source_sha256,
            entry.toolchain,
            entry.version,
            entry.binaries.join(" ")
        )
        .as_bytes(),
    )
}
