//! What a local Kubernetes cluster is made of: the server binaries built
//! from the catalog's source tarball with its Go toolchain (one cache entry,
//! about 7 minutes cold on 2 cores, then reused), and the node's Debian
//! parts (etcd, containerd, runc, CNI plugins) unpacked from their packages.

use super::make_ext4;
use super::Provisioner;
use crate::hashing::sha256_bytes;
use crate::inputs::catalog::LocalKubernetesEntry;
use crate::inputs::scenario::GuestSpec;
use crate::sources::{fetch, k8sbuild};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

/// Bumped when the build recipe changes, so cached binaries are rebuilt.
const BUILD_RECIPE: &str = "1";
/// Bumped when the guest node disk's layout changes.
const GUEST_DISK_RECIPE: &str = "1";
/// Where the Kubernetes binaries are on the guest node disk.
pub const GUEST_BIN_DIR: &str = "opt/kmatrix/bin";

/// What the node needs of a guest kernel: the disk and network drivers,
/// overlayfs for containerd, the pod bridge and veths, and everything
/// kube-proxy's iptables rules use (legacy iptables, whose `xt_*` matches
/// every kernel of the catalog has). Missing ones become facts; the
/// cluster says what failed if one mattered.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "ext4",
    "overlay",
    "bridge",
    "br_netfilter",
    "veth",
    "nf_conntrack",
    "nf_nat",
    "ip_tables",
    "iptable_filter",
    "iptable_nat",
    "iptable_mangle",
    "ipt_REJECT",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_comment",
    "xt_mark",
    "xt_addrtype",
    "xt_multiport",
    "xt_statistic",
    "xt_nat",
    "xt_tcpudp",
    "xt_physdev",
    "nf_conntrack_netlink",
    // kube-proxy's IPVS mode (a variant's `kube_proxy = "ipvs"`).
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "dummy",
    "xt_set",
    "ip_set_hash_ip",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_set_hash_ipportnet",
    "ip_set_hash_net",
    "ip_set_bitmap_port",
];

/// The local cluster's parts as a guest runs them: one read-only ext4
/// disk holding the node's Debian tree and the Kubernetes binaries.
#[derive(Debug, Clone)]
pub struct GuestNodeDisk {
    pub image: PathBuf,
    /// Guest memory for this cluster.
    pub memory_mb: u32,
}

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
        let node = self.rootfs(&node_tree(&entry, &[]))?;
        Ok(ClusterParts {
            version: entry.version,
            bin,
            node,
        })
    }

    /// The disk a guest runs the local cluster from (`<kernel>+k8s`):
    /// the node's packages, `guest_packages`, and the binaries under
    /// [`GUEST_BIN_DIR`], made once and cached.
    pub fn guest_node_disk(&self, parts: &ClusterParts) -> Result<GuestNodeDisk> {
        let entry = self.local_kubernetes_entry()?.clone();
        let tree = self.rootfs(&node_tree(&entry, &entry.guest_packages))?;
        let key = sha256_bytes(
            format!(
                "{}\0{}\0{GUEST_DISK_RECIPE}",
                tree.display(),
                binaries_key(&entry)
            )
            .as_bytes(),
        );
        let image = self.events.step("guest node disk", || {
            self.cache
                .get_or_make("kubernetes-guest-disk", &key, |dir| {
                    let root = dir.join("root");
                    // `cp -a`: the tree's symlinks (ld.so, alternatives) stay links.
                    fs::create_dir_all(root.join(GUEST_BIN_DIR))?;
                    copy_preserving(&tree, &root)?;
                    copy_preserving(&parts.bin, &root.join(GUEST_BIN_DIR))?;
                    make_ext4(&root, &dir.join("node.ext4"))?;
                    fs::remove_dir_all(&root)?;
                    Ok(PathBuf::from("node.ext4"))
                })
        })?;
        Ok(GuestNodeDisk {
            image,
            memory_mb: entry.guest_memory_mb,
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

/// The node's Debian packages (and `extra`), unpacked without their docs.
fn node_tree(entry: &LocalKubernetesEntry, extra: &[String]) -> GuestSpec {
    let mut packages = entry.node_packages.clone();
    packages.extend(extra.iter().cloned());
    GuestSpec {
        suite: entry.node_suite.clone(),
        packages,
        exclude: vec![
            "usr/share/doc*".into(),
            "usr/share/man*".into(),
            "usr/share/locale*".into(),
        ],
    }
}

/// `cp -a from/. to`: symlinks, modes and owners as they are.
fn copy_preserving(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .context("cannot run cp")?;
    anyhow::ensure!(
        status.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
    Ok(())
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
