//! What a cell's kernel axis names: a kernel kmatrix boots in QEMU, the
//! host's kernel under a Docker engine (`docker`), or a Kubernetes cluster
//! (`k8s-local`, `kind`, or `<kernel>+k8s` inside a kernel's guest). Backends are chosen by this, so the rest of the
//! run treats each as one more column.

use super::cluster::{ClusterParts, GuestNodeDisk};
use super::{KernelArtifact, Provisioner};
use crate::ids::KernelId;
use crate::inputs::catalog::{EnvironmentSource, Source};
use crate::sources::{engine, k8sbuild};
use anyhow::Result;
use kmatrix_metadata::ContainerEngine;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Environment {
    /// A kernel booted in a guest.
    Kernel(KernelArtifact),
    /// Containers on a Docker engine's host kernel.
    Engine {
        id: KernelId,
        facts: ContainerEngine,
    },
    /// Workloads on a Kubernetes cluster.
    Cluster { id: KernelId, cluster: ClusterKind },
}

#[derive(Debug, Clone)]
pub enum ClusterKind {
    /// The single-node cluster kmatrix assembles on this host.
    Local(ClusterParts),
    /// kind on the user's Docker engine, with this node image.
    Kind { node_image: String, kind: PathBuf },
    /// The local cluster inside a QEMU guest of a kernel (`<kernel>+k8s`).
    Guest(Box<GuestCluster>),
}

#[derive(Debug, Clone)]
pub struct GuestCluster {
    pub kernel: KernelArtifact,
    pub parts: ClusterParts,
    pub disk: GuestNodeDisk,
}

impl Environment {
    pub fn id(&self) -> &KernelId {
        match self {
            Environment::Kernel(kernel) => &kernel.id,
            Environment::Engine { id, .. } => id,
            Environment::Cluster { id, .. } => id,
        }
    }

    /// The kernel to boot (a cluster inside a guest boots one too); `None`
    /// on the host's kernel.
    pub fn kernel(&self) -> Option<&KernelArtifact> {
        match self {
            Environment::Kernel(kernel) => Some(kernel),
            Environment::Cluster {
                cluster: ClusterKind::Guest(guest),
                ..
            } => Some(&guest.kernel),
            Environment::Engine { .. } | Environment::Cluster { .. } => None,
        }
    }

    pub fn is_container(&self) -> bool {
        matches!(self, Environment::Engine { .. })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Environment::Cluster { .. })
    }

    /// Where it came from, in words.
    pub fn origin(&self) -> String {
        match self {
            Environment::Kernel(kernel) => kernel.origin.clone(),
            Environment::Engine { facts, .. } => engine::describe(facts),
            Environment::Cluster {
                cluster: ClusterKind::Local(parts),
                ..
            } => format!(
                "a single-node Kubernetes {} cluster on this host, built from the k8s.io/kubernetes module",
                parts.version
            ),
            Environment::Cluster {
                cluster: ClusterKind::Kind { node_image, .. },
                ..
            } => format!("a kind cluster of {node_image}"),
            Environment::Cluster {
                cluster: ClusterKind::Guest(guest),
                ..
            } => format!(
                "a single-node Kubernetes {} cluster inside a QEMU guest of {} ({})",
                guest.parts.version, guest.kernel.id, guest.kernel.origin
            ),
        }
    }
}

impl Provisioner<'_> {
    /// The environment `id`: a kernel fetched or built, or a reachable
    /// container engine (an `Err` naming why none answers, within seconds).
    pub fn environment(&self, id: &KernelId) -> Result<Environment> {
        let environment = match &self.catalog.kernel(id).source {
            Source::Kernel(_) => return Ok(Environment::Kernel(self.kernel(id)?)),
            Source::Environment(environment) => environment,
        };
        match environment {
            EnvironmentSource::DockerEngine => Ok(Environment::Engine {
                id: id.clone(),
                facts: self
                    .engine()
                    .map_err(|why| anyhow::anyhow!("{why}"))?
                    .facts
                    .clone(),
            }),
            EnvironmentSource::LocalKubernetes => Ok(Environment::Cluster {
                id: id.clone(),
                cluster: ClusterKind::Local(self.cluster_parts()?),
            }),
            EnvironmentSource::Kind => {
                let entry = self.catalog.kubernetes.as_ref().map(|k| &k.kind);
                let kind = super::host::kind(entry).map_err(|why| anyhow::anyhow!("{why}"))?;
                Ok(Environment::Cluster {
                    id: id.clone(),
                    cluster: ClusterKind::Kind {
                        node_image: entry.expect("available checked it").node_image.clone(),
                        kind,
                    },
                })
            }
            EnvironmentSource::GuestKubernetes { kernel } => {
                let kernel = self.kernel(kernel)?;
                let parts = self.cluster_parts()?;
                let disk = self.guest_node_disk(&parts)?;
                Ok(Environment::Cluster {
                    id: id.clone(),
                    cluster: ClusterKind::Guest(Box::new(GuestCluster {
                        kernel,
                        parts,
                        disk,
                    })),
                })
            }
        }
    }

    /// Whether what an environment needs is in the cache (the engine and
    /// kind are the user's: never).
    pub(super) fn environment_is_cached(&self, environment: &EnvironmentSource) -> Result<bool> {
        Ok(match environment {
            EnvironmentSource::DockerEngine | EnvironmentSource::Kind => false,
            EnvironmentSource::LocalKubernetes => self.kubernetes_binaries_cached(),
            EnvironmentSource::GuestKubernetes { kernel } => {
                self.kubernetes_binaries_cached() && self.kernel_is_cached(kernel)?
            }
        })
    }

    /// Whether an environment could be had here now (`Ok(how)`) or why
    /// not: the one place that answers it, from host probes and the cache.
    pub(super) fn environment_availability(
        &self,
        environment: &EnvironmentSource,
    ) -> Result<String, String> {
        match environment {
            EnvironmentSource::LocalKubernetes => k8sbuild::check_build_tools()
                .and_then(|_| super::host::local_cluster_tools())
                .map(|_| {
                    "to be built from Debian's kubernetes source (about 7 minutes on 2 cores), then started on this host".to_string()
                })
                .map_err(|e| format!("{e:#}")),
            EnvironmentSource::GuestKubernetes { kernel } => {
                let kernel = self.kernel_availability(kernel)?;
                k8sbuild::check_build_tools()
                    .map(|_| format!("its kernel {kernel}; the cluster's binaries cached or built from Debian's kubernetes source"))
                    .map_err(|e| format!("{e:#}"))
            }
            EnvironmentSource::Kind => {
                super::host::kind(self.catalog.kubernetes.as_ref().map(|k| &k.kind))
                    .map(|kind| format!("kind at {}", kind.display()))
            }
            EnvironmentSource::DockerEngine => self
                .engine()
                .map(|engine| format!("reachable: {}", engine::describe(&engine.facts)))
                .map_err(str::to_string),
        }
    }
}
