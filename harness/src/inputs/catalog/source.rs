//! What an entry of the kernel axis is. A **kernel** ([`KernelSource`]: a
//! Debian package, packages by URL, a source build, or an image the user
//! gives) boots in QEMU; an **environment** ([`EnvironmentSource`]: the
//! Docker engine's host, a local cluster, kind, the local cluster inside a
//! kernel's guest) is not a kernel of kmatrix's own. `--kernel` takes
//! either; [`Source`] says which.
//!
//! kernels.toml spells both with one `source = { kind = ... }` table
//! ([`SourceSpec`]); cell ids hash that same spelling, so they do not
//! depend on how the types are arranged here.

use crate::ids::KernelId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Appended to a kernel's id for the local cluster inside its guest.
pub const GUEST_CLUSTER_SUFFIX: &str = "+k8s";

/// An entry of the kernel axis: a kernel, or an environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(from = "SourceSpec", into = "SourceSpec")]
pub enum Source {
    Kernel(KernelSource),
    Environment(EnvironmentSource),
}

/// A kernel kmatrix boots in QEMU, and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelSource {
    /// A Debian package; `package` may be a metapackage, which is followed to
    /// the `linux-image-*` package it depends on.
    DebianPackage { suite: String, package: String },
    /// Packages by URL (.deb or .rpm), unpacked together: the first holds
    /// /boot/vmlinuz-*, the others modules (Ubuntu's linux-modules-*).
    PackageUrls { urls: Vec<PackageUrl> },
    /// Built from source: `make <base_config>`, then the fragments (files in
    /// images/, later ones win), then `make olddefconfig bzImage`.
    SourceBuild {
        source: KernelTree,
        base_config: String,
        fragments: Vec<String>,
    },
    /// A kernel image given as a path on the command line (never written
    /// in kernels.toml): see `inputs::kernel_path`.
    LocalImage {
        image: PathBuf,
        /// The folder holding `modules.dep`, if the build has modules.
        modules: Option<PathBuf>,
        /// The image's, when the run was planned: part of each cell's id.
        sha256: String,
    },
}

/// Where cells run when the entry is not a kernel of kmatrix's own.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvironmentSource {
    /// Containers on the kernel of the Docker engine's host (`DOCKER_HOST`,
    /// else the default socket).
    DockerEngine,
    /// A single-node Kubernetes cluster kmatrix assembles on the host's
    /// kernel (`kubernetes.toml`'s `[local]`).
    LocalKubernetes,
    /// A kind cluster on the user's Docker engine (`kubernetes.toml`'s `[kind]`).
    Kind,
    /// The local cluster inside a QEMU guest of `kernel`: id `<kernel>+k8s`,
    /// derived for every bootable kernel when `kubernetes.toml` exists.
    GuestKubernetes { kernel: KernelId },
}

/// One package of a by-URL kernel: its URL alone (pinned on first use in
/// the lock file), or its URL with the sha256 its publisher gives, for
/// packages no index lists (trusty's pool outlived its `dists/`), checked
/// on fetch before the lock file has an entry, and against the entry after.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum PackageUrl {
    Url(String),
    Pinned { url: String, sha256: String },
}

impl PackageUrl {
    pub fn url(&self) -> &str {
        match self {
            PackageUrl::Url(url) | PackageUrl::Pinned { url, .. } => url,
        }
    }

    /// The package's file name (the URL's last segment).
    pub fn file_name(&self) -> &str {
        self.url().rsplit('/').next().unwrap_or(self.url())
    }

    pub fn sha256(&self) -> Option<&str> {
        match self {
            PackageUrl::Url(_) => None,
            PackageUrl::Pinned { sha256, .. } => Some(sha256),
        }
    }
}

impl From<&str> for PackageUrl {
    fn from(url: &str) -> Self {
        PackageUrl::Url(url.to_string())
    }
}

/// Where a kernel source tarball comes from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KernelTree {
    /// Debian's linux-source-X package (it carries /usr/src/linux-source-X.tar.xz).
    DebianPackage { suite: String, package: String },
    /// A tarball, e.g. from kernel.org.
    Url { url: String },
}

impl Source {
    /// The kernel, when the entry is one.
    pub fn kernel(&self) -> Option<&KernelSource> {
        match self {
            Source::Kernel(kernel) => Some(kernel),
            Source::Environment(_) => None,
        }
    }

    /// Whether cells here run in a QEMU guest (not on the host's kernel).
    pub fn boots_a_guest(&self) -> bool {
        matches!(
            self,
            Source::Kernel(_) | Source::Environment(EnvironmentSource::GuestKubernetes { .. })
        )
    }

    /// Whether cells here run as Kubernetes workloads.
    pub fn is_kubernetes(&self) -> bool {
        matches!(
            self,
            Source::Environment(
                EnvironmentSource::LocalKubernetes
                    | EnvironmentSource::Kind
                    | EnvironmentSource::GuestKubernetes { .. }
            )
        )
    }

    /// A kernel of its own, booted in a QEMU guest (not an engine or a
    /// cluster, which run on another kernel or inside one of these).
    pub fn boots_in_qemu(&self) -> bool {
        matches!(self, Source::Kernel(_))
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Kernel(kernel) => kernel.describe(),
            Source::Environment(environment) => environment.describe(),
        }
    }
}

impl KernelSource {
    pub fn describe(&self) -> String {
        match self {
            KernelSource::DebianPackage { suite, package } => {
                format!("Debian {suite} package {package}")
            }
            KernelSource::PackageUrls { urls } => format!(
                "packages by URL: {}",
                urls.iter()
                    .map(PackageUrl::file_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            KernelSource::SourceBuild {
                source,
                base_config,
                fragments,
            } => {
                let from = match source {
                    KernelTree::DebianPackage { suite, package } => {
                        format!("Debian {suite} {package}")
                    }
                    KernelTree::Url { url } => url.clone(),
                };
                format!(
                    "built from {from}: {base_config} + {}",
                    fragments.join(" + ")
                )
            }
            KernelSource::LocalImage { image, modules, .. } => match modules {
                Some(modules) => format!(
                    "the image {} with the modules in {}",
                    image.display(),
                    modules.display()
                ),
                None => format!("the image {} (no modules)", image.display()),
            },
        }
    }
}

impl EnvironmentSource {
    pub fn describe(&self) -> String {
        match self {
            EnvironmentSource::DockerEngine => format!(
                "containers on the Docker engine's host kernel ({})",
                crate::sources::engine::endpoint()
            ),
            EnvironmentSource::LocalKubernetes => {
                "a local Kubernetes cluster on the host's kernel, built from Debian's source".into()
            }
            EnvironmentSource::Kind => "a kind cluster on the Docker engine".into(),
            EnvironmentSource::GuestKubernetes { kernel } => {
                format!("the local Kubernetes cluster inside a QEMU guest of {kernel}")
            }
        }
    }
}

/// kernels.toml's `source = { kind = "..." }`, one flat table for kernels
/// and environments alike; what cell ids hash.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum SourceSpec {
    DebianPackage {
        suite: String,
        package: String,
    },
    PackageUrls {
        urls: Vec<PackageUrl>,
    },
    SourceBuild {
        source: KernelTree,
        base_config: String,
        fragments: Vec<String>,
    },
    DockerEngine {},
    LocalKubernetes {},
    Kind {},
    GuestKubernetes {
        kernel: KernelId,
    },
    #[serde(skip_deserializing)]
    LocalImage {
        image: PathBuf,
        modules: Option<PathBuf>,
        sha256: String,
    },
}

impl From<SourceSpec> for Source {
    fn from(spec: SourceSpec) -> Source {
        match spec {
            SourceSpec::DebianPackage { suite, package } => {
                Source::Kernel(KernelSource::DebianPackage { suite, package })
            }
            SourceSpec::PackageUrls { urls } => Source::Kernel(KernelSource::PackageUrls { urls }),
            SourceSpec::SourceBuild {
                source,
                base_config,
                fragments,
            } => Source::Kernel(KernelSource::SourceBuild {
                source,
                base_config,
                fragments,
            }),
            SourceSpec::LocalImage {
                image,
                modules,
                sha256,
            } => Source::Kernel(KernelSource::LocalImage {
                image,
                modules,
                sha256,
            }),
            SourceSpec::DockerEngine {} => Source::Environment(EnvironmentSource::DockerEngine),
            SourceSpec::LocalKubernetes {} => {
                Source::Environment(EnvironmentSource::LocalKubernetes)
            }
            SourceSpec::Kind {} => Source::Environment(EnvironmentSource::Kind),
            SourceSpec::GuestKubernetes { kernel } => {
                Source::Environment(EnvironmentSource::GuestKubernetes { kernel })
            }
        }
    }
}

impl From<Source> for SourceSpec {
    fn from(source: Source) -> SourceSpec {
        match source {
            Source::Kernel(KernelSource::DebianPackage { suite, package }) => {
                SourceSpec::DebianPackage { suite, package }
            }
            Source::Kernel(KernelSource::PackageUrls { urls }) => SourceSpec::PackageUrls { urls },
            Source::Kernel(KernelSource::SourceBuild {
                source,
                base_config,
                fragments,
            }) => SourceSpec::SourceBuild {
                source,
                base_config,
                fragments,
            },
            Source::Kernel(KernelSource::LocalImage {
                image,
                modules,
                sha256,
            }) => SourceSpec::LocalImage {
                image,
                modules,
                sha256,
            },
            Source::Environment(EnvironmentSource::DockerEngine) => SourceSpec::DockerEngine {},
            Source::Environment(EnvironmentSource::LocalKubernetes) => {
                SourceSpec::LocalKubernetes {}
            }
            Source::Environment(EnvironmentSource::Kind) => SourceSpec::Kind {},
            Source::Environment(EnvironmentSource::GuestKubernetes { kernel }) => {
                SourceSpec::GuestKubernetes { kernel }
            }
        }
    }
}
