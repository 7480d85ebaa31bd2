//! What a local Kubernetes cluster is made of: the server binaries built
//! from the catalog's source tarball with its Go toolchain (one cache entry,
//! about 7 minutes cold on 2 cores, then reused), and the node's Debian
//! parts (etcd, containerd, runc, CNI plugins) unpacked from their packages.

use super::make_ext4;
use super::Provisioner;
use crate::hashing::sha256_bytes;
use crate::inputs::catalog::{EtcdEntry, LocalKubernetesEntry};
use crate::inputs::scenario::{GoModuleSpec, GuestSpec};
use crate::sources::k8sbuild;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Bumped when the build recipe changes, so cached binaries are rebuilt.
const BUILD_RECIPE: &str = "3";
/// Bumped when the guest node disk's layout changes.
const GUEST_DISK_RECIPE: &str = "3";
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
    /// Kubernetes' version, e.g. "v1.34.4".
    pub version: String,
    /// kubelet, kube-apiserver, ..., kubectl, kubeadm and `pause`.
    pub bin: PathBuf,
    /// The Debian packages' unpacked root (`usr/bin/containerd`,
    /// `usr/sbin/runc`, `usr/lib/cni/`).
    pub node: PathBuf,
    /// `host_packages` unpacked from `host_suite`: what the host's cluster
    /// runs instead of the node tree's (runc, conntrack).
    pub host_runtime: Option<PathBuf>,
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
        let host_runtime = match &entry.host_suite {
            Some(suite) if !entry.host_packages.is_empty() => Some(self.rootfs(&GuestSpec {
                suite: suite.clone(),
                packages: entry.host_packages.clone(),
                ..node_tree(&entry, &[])
            })?),
            _ => None,
        };
        Ok(ClusterParts {
            version: entry.version,
            bin,
            node,
            host_runtime,
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
                parts.bin.display()
            )
            .as_bytes(),
        );
        let image = self.events.step("guest node disk", || {
            self.cache
                .get_or_make("kubernetes-guest-disk", &key, |dir| {
                    let root = dir.join("root");
                    // `cp -a`: the tree's symlinks (ld.so, alternatives) stay links.
                    fs::create_dir_all(root.join(GUEST_BIN_DIR))?;
                    crate::files::copy_preserving(&tree, &root)?;
                    // trixie's packages live under /usr only; the start
                    // script and the chroot want /bin/busybox, ld.so in /lib64.
                    super::image::merged_usr_links(&root)?;
                    // The kubelet (1.33+) reads /etc/passwd at start (its
                    // user-namespace manager): "open /etc/passwd: no such file".
                    fs::create_dir_all(root.join("etc"))?;
                    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
                    fs::write(root.join("etc/group"), "root:x:0:\n")?;
                    crate::files::copy_preserving(&parts.bin, &root.join(GUEST_BIN_DIR))?;
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
        self.pinned_binaries_key(entry)
            .is_some_and(|key| self.cache.lookup("kubernetes-built", &key).is_some())
    }

    /// The binaries' cache key, when both modules are pinned in the lock.
    fn pinned_binaries_key(&self, entry: &LocalKubernetesEntry) -> Option<String> {
        let [kube, etcd] = cluster_modules(entry);
        Some(binaries_key(
            entry,
            &self.module_pin(&kube)?,
            &self.module_pin(&etcd)?,
        ))
    }

    fn kubernetes_binaries(&self, entry: &LocalKubernetesEntry) -> Result<PathBuf> {
        let [kube, etcd] = cluster_modules(entry);
        let pins = (self.module_pin(&kube), self.module_pin(&etcd));
        if let (Some(kube_h1), Some(etcd_h1)) = &pins {
            let key = binaries_key(entry, kube_h1, etcd_h1);
            if let Some(built) = self.cache.lookup("kubernetes-built", &key) {
                return Ok(built.with_file_name("bin"));
            }
        }
        // Fetched (and pinned, or checked against the pin) before anything is built.
        let kube_files = self.verified_module(&kube, pins.0.as_deref())?;
        let etcd_files = self.verified_module(&etcd, pins.1.as_deref())?;
        let kube_go = self.toolchain(&entry.toolchain)?;
        let etcd_go = self.toolchain(&entry.etcd.toolchain)?;
        let key = binaries_key(entry, &kube_files.sum, &etcd_files.sum);
        let label = format!("build kubernetes {}", entry.version);
        let manifest = self.events.step(&label, || {
            self.cache.get_or_make("kubernetes-built", &key, |dir| {
                k8sbuild::check_build_tools()?;
                let bin = dir.join("bin");
                let kube_dir = PathBuf::from(&kube_files.dir);
                k8sbuild::build_programs(
                    &k8sbuild::ModuleProgramsBuild {
                        name: "kubernetes",
                        goroot: &kube_go.goroot,
                        module_dir: &kube_dir,
                        path: LocalKubernetesEntry::MODULE,
                        version: &entry.version,
                        companions: &entry.staging_version,
                        packages: entry
                            .binaries
                            .iter()
                            .map(|b| {
                                (
                                    format!("{}/cmd/{b}", LocalKubernetesEntry::MODULE),
                                    b.clone(),
                                )
                            })
                            .collect(),
                        ldflags: kubernetes_ldflags(&entry.version, &kube_files.time)?,
                        env: self.module_caches(),
                        proxy: super::gomodule::proxy(),
                    },
                    dir,
                    &bin,
                    &self.events,
                )?;
                k8sbuild::build_programs(
                    &k8sbuild::ModuleProgramsBuild {
                        name: "etcd",
                        goroot: &etcd_go.goroot,
                        module_dir: Path::new(&etcd_files.dir),
                        path: EtcdEntry::MODULE,
                        version: &entry.etcd.version,
                        companions: &entry.etcd.version,
                        packages: vec![(EtcdEntry::MODULE.to_string(), "etcd".to_string())],
                        // etcd's scripts/build-binary.sh stamps the commit;
                        // the proxy does not say which, so none is claimed.
                        ldflags: "-s -w".into(),
                        env: self.module_caches(),
                        proxy: super::gomodule::proxy(),
                    },
                    dir,
                    &bin,
                    &self.events,
                )?;
                k8sbuild::build_pause(&kube_dir, &bin, &dir.join("build-pause.log"))?;
                k8sbuild::record_binaries(&bin, dir)
            })
        })?;
        Ok(manifest.with_file_name("bin"))
    }
}

/// The modules the binaries are built from: Kubernetes', etcd's.
fn cluster_modules(entry: &LocalKubernetesEntry) -> [GoModuleSpec; 2] {
    [
        build_module_spec(
            LocalKubernetesEntry::MODULE,
            &entry.version,
            &entry.toolchain,
        ),
        build_module_spec(
            EtcdEntry::MODULE,
            &entry.etcd.version,
            &entry.etcd.toolchain,
        ),
    ]
}

/// A module to fetch and pin like a version's module (its h1 in the lock).
fn build_module_spec(path: &str, version: &str, toolchain: &str) -> GoModuleSpec {
    GoModuleSpec {
        path: path.into(),
        version: version.into(),
        package: ".".into(),
        toolchain: toolchain.into(),
        cgo: false,
        flags: Vec::new(),
        install: None,
        env: Vec::new(),
        harness: None,
        base: None,
        also: Vec::new(),
    }
}

/// What upstream's hack/lib/version.sh (`kube::version::ldflags`) stamps
/// into every binary, with `-s -w` as hack/lib/golang.sh adds. The commit
/// is not known here (the proxy does not say), so it is zeros; the build
/// date is the tag's publication time, so a rebuild is the same binary.
fn kubernetes_ldflags(version: &str, published: &str) -> Result<String> {
    let mut parts = version.trim_start_matches('v').split('.');
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
        anyhow::bail!("kubernetes.toml: version {version:?} is not vMAJOR.MINOR.PATCH");
    };
    let date = if published.is_empty() {
        "1970-01-01T00:00:00Z"
    } else {
        published
    };
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for package in [
        "k8s.io/client-go/pkg/version",
        "k8s.io/component-base/version",
    ] {
        for (name, value) in [
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitCommit", "0000000000000000000000000000000000000000"),
            ("gitTreeState", "clean"),
            ("buildDate", date),
        ] {
            flags.push(format!("-X {package}.{name}={value}"));
        }
    }
    Ok(flags.join(" "))
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

fn binaries_key(entry: &LocalKubernetesEntry, kube_h1: &str, etcd_h1: &str) -> String {
    sha256_bytes(
        format!(
            "{kube_h1}\0{etcd_h1}\0{}\0{BUILD_RECIPE}",
            serde_json::to_string(entry).expect("a catalog entry serializes"),
        )
        .as_bytes(),
    )
}
