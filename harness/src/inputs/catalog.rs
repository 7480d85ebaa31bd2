//! The catalogs in `images/`: which kernels and toolchains exist and where
//! each comes from. Data only; fetching lives in `provision`.

use crate::diagnostic::{parse_toml, FileError};
use crate::ids::KernelId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

mod kubernetes;
mod source;

pub use kubernetes::{
    EtcdEntry, KindEntry, KubernetesCatalog, KubernetesRelease, LocalKubernetesEntry,
};
pub use source::{
    EnvironmentSource, KernelSource, KernelTree, PackageUrl, Source, GUEST_CLUSTER_SUFFIX,
};

pub const KERNELS_FILE: &str = "kernels.toml";
pub const TOOLCHAINS_FILE: &str = "toolchains.toml";
pub const EMULATORS_FILE: &str = "emulators.toml";
pub const KUBERNETES_FILE: &str = "kubernetes.toml";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelEntry {
    pub id: KernelId,
    /// The upstream version line, e.g. "6.1".
    pub version: String,
    pub description: String,
    /// For a kernel built to stand in for ones kmatrix cannot fetch here:
    /// which, and why it is a fair stand-in.
    #[serde(default)]
    pub stands_in_for: Option<String>,
    /// Where the distribution publishes each package's sha256 (an RPM
    /// repository's `repodata/repomd.xml`), for a user to check the pin
    /// kmatrix records on first use against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<String>,
    /// Other names `--kernel` takes for it, clearer ones (Ubuntu's day-one
    /// build against its newest, `ubuntu-22.04-day-one`); not part of its
    /// identity, so cell ids do not hash them.
    #[serde(default, skip_serializing)]
    pub aliases: Vec<String>,
    pub source: Source,
}

impl KernelEntry {
    /// What its aliases say it is: "day one" or "newest" (for headings).
    pub fn build_word(&self) -> Option<&'static str> {
        self.aliases.iter().find_map(|a| {
            if a.ends_with("-day-one") {
                Some("day one")
            } else if a.ends_with("-newest") {
                Some("newest")
            } else {
                None
            }
        })
    }
}

impl KernelEntry {
    /// The most exact release the catalog alone knows, for ordering kernels
    /// that have not booted yet: a by-URL package names its build
    /// (`linux-image-unsigned-5.15.0-204-generic_…` → `5.15.0-204-generic`,
    /// `kernel-3.10.0-1160.el7…rpm` → `3.10.0-1160.el7`); otherwise the
    /// catalog's version line.
    pub fn release_hint(&self) -> String {
        if let Source::Kernel(KernelSource::PackageUrls { urls }) = &self.source {
            let file = urls.first().map(PackageUrl::file_name).unwrap_or_default();
            let build = file
                .strip_prefix("linux-image-unsigned-")
                .or_else(|| file.strip_prefix("linux-image-"))
                .map(|rest| rest.split('_').next().unwrap_or(rest))
                .or_else(|| {
                    ["kernel-core-", "kernel-uek-", "kernel-"]
                        .iter()
                        .find_map(|prefix| file.strip_prefix(prefix))
                        .map(|rest| rest.trim_end_matches(".rpm").trim_end_matches(".x86_64"))
                });
            if let Some(build) = build.filter(|b| b.starts_with(char::is_numeric)) {
                return build.to_string();
            }
        }
        self.version.clone()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolchainEntry {
    pub id: String,
    pub kind: ToolchainKind,
    /// The release, e.g. "1.24", as the component's build used it.
    pub version: String,
    pub suite: String,
    /// Debian packages unpacked together into one root.
    pub packages: Vec<String>,
    /// GOROOT relative to the unpacked root.
    pub goroot: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ToolchainKind {
    Go,
}

/// An emulator made of Debian packages, run from the unpacked tree.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmulatorEntry {
    pub id: String,
    /// The one used when `--emulator` is not given.
    #[serde(default)]
    pub default: bool,
    pub description: String,
    pub suite: String,
    /// Debian packages unpacked together into one tree.
    pub packages: Vec<String>,
    /// The system emulator, relative to the tree.
    pub binary: String,
    /// Its firmware folder (`-L`), relative to the tree.
    pub firmware: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmulatorsFile {
    emulator: Vec<EmulatorEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelsFile {
    kernel: Vec<KernelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolchainsFile {
    toolchain: Vec<ToolchainEntry>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
    pub kernels: BTreeMap<KernelId, KernelEntry>,
    pub toolchains: BTreeMap<String, ToolchainEntry>,
    /// Empty when the project has no `emulators.toml` (the host's QEMU is used).
    pub emulators: BTreeMap<String, EmulatorEntry>,
    /// `None` when the project has no `kubernetes.toml` (no Kubernetes environments).
    pub kubernetes: Option<KubernetesCatalog>,
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Catalog, FileError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path)
                .map(|text| (path.clone(), text))
                .map_err(|e| {
                    FileError::whole_file(
                        &path,
                        format!("cannot read catalog: {e}"),
                        "run kmatrix from the project root, or pass --images DIR",
                    )
                })
        };
        let (kernels_path, text) = read(KERNELS_FILE)?;
        let kernels: KernelsFile = parse_toml(
            &kernels_path,
            &text,
            "each [[kernel]] needs id, version, description and source = { kind = \"debian-package\", suite, package }",
        )?;
        let (toolchains_path, text) = read(TOOLCHAINS_FILE)?;
        let toolchains: ToolchainsFile = parse_toml(
            &toolchains_path,
            &text,
            "each [[toolchain]] needs id, kind = \"go\", version, suite, packages and goroot",
        )?;
        let emulators_path = dir.join(EMULATORS_FILE);
        let emulators = match fs::read_to_string(&emulators_path) {
            Ok(text) => {
                let file: EmulatorsFile = parse_toml(
                    &emulators_path,
                    &text,
                    "each [[emulator]] needs id, description, suite, packages, binary and firmware",
                )?;
                if file.emulator.iter().filter(|e| e.default).count() > 1 {
                    return Err(FileError::whole_file(
                        &emulators_path,
                        "more than one emulator says default = true",
                        "mark exactly one [[emulator]] as the default",
                    ));
                }
                unique_by_id(&emulators_path, file.emulator, |e| e.id.clone())?
            }
            Err(_) => BTreeMap::new(),
        };
        let kubernetes_path = dir.join(KUBERNETES_FILE);
        let kubernetes = match fs::read_to_string(&kubernetes_path) {
            Ok(text) => Some(parse_toml::<KubernetesCatalog>(
                &kubernetes_path,
                &text,
                "kubernetes.toml needs [local] (version, staging_version, toolchain, binaries, etcd, node_suite, node_packages) and [kind] (node_image, suite, package)",
            )?),
            Err(_) => None,
        };
        let mut kernels = unique_by_id(&kernels_path, kernels.kernel, |k| k.id.clone())?;
        check_aliases(&kernels_path, &kernels)?;
        if kubernetes.is_some() {
            add_guest_clusters(&mut kernels);
        }
        Ok(Catalog {
            dir: dir.to_path_buf(),
            emulators,
            kubernetes,
            kernels,
            toolchains: unique_by_id(&toolchains_path, toolchains.toolchain, |t| t.id.clone())?,
        })
    }

    /// The catalog's own kernel ids: the derived `<kernel>+k8s` ones are
    /// left out (one per bootable kernel, they would double every list).
    pub fn kernel_ids(&self) -> Vec<&str> {
        self.kernels
            .values()
            .filter(|k| {
                !matches!(
                    k.source,
                    Source::Environment(EnvironmentSource::GuestKubernetes { .. })
                )
            })
            .map(|k| k.id.as_str())
            .collect()
    }

    /// Kernel ids given on the command line (`--kernel`), checked once here:
    /// an unknown one is bad input naming the catalog and the known ids. A
    /// path (it holds `/`) is a kernel image of the user's, added to this
    /// catalog under an id of its own (`inputs::kernel_path`).
    pub fn kernel_ids_from(&mut self, given: &[String]) -> Result<Vec<KernelId>, FileError> {
        let mut ids = Vec::new();
        for given in given {
            if super::kernel_path::is_path(given) {
                let entry = super::kernel_path::entry(given)?;
                ids.push(entry.id.to_string());
                self.kernels.insert(entry.id.clone(), entry);
            } else if let Some(entry) = self.kernels.values().find(|k| k.aliases.contains(given)) {
                ids.push(entry.id.to_string());
            } else {
                ids.push(given.clone());
            }
        }
        ids.iter()
            .map(|id| {
                self.kernels
                    .get_key_value(id.as_str())
                    .map(|(known, _)| known.clone())
                    .ok_or_else(|| {
                        FileError::whole_file(
                            &self.dir.join(KERNELS_FILE),
                            format!("unknown kernel id `{id}` (from --kernel)"),
                            format!(
                                "use one of: {} (`kmatrix list` shows them), or a bootable kernel's id + `{GUEST_CLUSTER_SUFFIX}` for the local cluster inside its guest",
                                self.kernel_ids().join(", ")
                            ),
                        )
                    })
            })
            .collect()
    }

    /// The emulator `--emulator ID` names, or the default one.
    pub fn emulator(&self, id: Option<&str>) -> Result<Option<&EmulatorEntry>, FileError> {
        match id {
            None => Ok(self
                .emulators
                .values()
                .find(|e| e.default)
                .or_else(|| self.emulators.values().next())),
            Some(id) => self.emulators.get(id).map(Some).ok_or_else(|| {
                FileError::whole_file(
                    &self.dir.join(EMULATORS_FILE),
                    format!("unknown emulator `{id}` (from --emulator)"),
                    format!(
                        "use `host` or one of: {}",
                        self.emulators
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }),
        }
    }

    /// The entry of a kernel id that came from this catalog.
    pub fn kernel(&self, id: &KernelId) -> &KernelEntry {
        self.kernels
            .get(id)
            .expect("kernel ids come from the catalog")
    }
}

/// Adds `<kernel>+k8s` for every kernel QEMU boots: the local cluster
/// inside that kernel's guest, selected with `--kernel` like any other.
fn add_guest_clusters(kernels: &mut BTreeMap<KernelId, KernelEntry>) {
    let derived: Vec<KernelEntry> = kernels
        .values()
        .filter(|k| k.source.boots_a_guest() && !k.source.is_kubernetes())
        .map(|k| KernelEntry {
            id: KernelId::new(format!("{}{GUEST_CLUSTER_SUFFIX}", k.id)),
            version: k.version.clone(),
            description: format!(
                "the local Kubernetes cluster inside {}'s QEMU guest (opt-in per scenario: [kubernetes] guest = true)",
                k.id
            ),
            stands_in_for: None,
            checksums: None,
            aliases: Vec::new(),
            source: Source::Environment(EnvironmentSource::GuestKubernetes {
                kernel: k.id.clone(),
            }),
        })
        .collect();
    for entry in derived {
        kernels.entry(entry.id.clone()).or_insert(entry);
    }
}

/// An alias names one kernel: never an id, never two kernels.
fn check_aliases(path: &Path, kernels: &BTreeMap<KernelId, KernelEntry>) -> Result<(), FileError> {
    let mut seen = std::collections::BTreeSet::new();
    for alias in kernels.values().flat_map(|k| &k.aliases) {
        if kernels.contains_key(alias.as_str()) || !seen.insert(alias) {
            return Err(FileError::whole_file(
                path,
                format!("alias `{alias}` is another kernel's id or alias"),
                "give every alias once, and never a kernel's id",
            ));
        }
    }
    Ok(())
}

fn unique_by_id<K: Ord + Clone + std::fmt::Display, T>(
    path: &Path,
    entries: Vec<T>,
    id: impl Fn(&T) -> K,
) -> Result<BTreeMap<K, T>, FileError> {
    let mut map = BTreeMap::new();
    for entry in entries {
        let key = id(&entry);
        if map.insert(key.clone(), entry).is_some() {
            return Err(FileError::whole_file(
                path,
                format!("id `{key}` appears twice"),
                "give every entry its own id",
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
