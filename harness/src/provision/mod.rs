//! Provisioning: turns catalog entries and scenario versions into files on
//! disk — kernels, Go toolchains and reproducers, guest root filesystems,
//! BPF objects, the guest agent — each cached by the hash of its inputs and
//! pinned in the lock file. One file per kind of artifact; the shared
//! pinning (fetch as locked, verify, record) is `pinning.rs`. Sources of
//! bytes live in `crate::sources`; what is made is reported as events.

mod agent;
mod artifact;
mod bpf;
pub mod buildinfo;
pub mod cluster;
mod emulator;
mod environment;
mod go;
mod gomodule;
pub mod host;
mod image;
mod kernel;
mod pinning;
mod rootfs;

pub use emulator::{version_of, Emulator, EmulatorChoice, HOST_QEMU};
pub use environment::{ClusterKind, Environment, GuestCluster};
pub use go::GoToolchain;
pub use image::{make_ext4, ImageArtifact, HOSTS};
pub use kernel::{BootImage, KernelArtifact};

use crate::events::Events;
use crate::ids::{KernelId, ScenarioId};
use crate::inputs::scenario::{KubeProxyMode, Scenario};
use crate::inputs::{Catalog, Lock};
use crate::plan::{bpf_object_guest_path, reproducer_guest_path, Cell};
use crate::sources::apt::Apt;
use crate::sources::cache::Cache;
use crate::sources::oci::source::ImageError;
use crate::verdict::{Classified, Verdict};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Provisioner<'a> {
    pub cache: &'a Cache,
    catalog: &'a Catalog,
    apt: Apt,
    lock: Mutex<Lock>,
    /// Refuse to re-resolve a locked version that vanished (like `cargo --locked`).
    locked_only: bool,
    events: Events,
    /// The user's Docker engine (the `docker` environment and an image
    /// source), asked for once; `Err` says why none answers.
    engine: std::sync::OnceLock<Result<crate::sources::engine::Engine, String>>,
}

/// Everything a plan's cells need on disk, or why a piece could not be had
/// (as the verdict its cells get: `unavailable` when out of reach here,
/// `infra-error` when a build broke).
pub struct Provisioned {
    pub agent: PathBuf,
    /// Each kernel of the axis: booted in a guest, or a container engine.
    pub environments: BTreeMap<KernelId, Result<Environment, Classified>>,
    /// Host files by the guest path cells name them by (reproducers, BPF objects).
    pub files: BTreeMap<String, Result<PathBuf, Classified>>,
    /// Guest root filesystems by scenario.
    pub rootfs: BTreeMap<ScenarioId, Result<PathBuf, Classified>>,
    /// Real artifacts by their guest mount point.
    pub artifacts: BTreeMap<String, Result<ImageArtifact, Classified>>,
}

impl Provisioned {
    /// The kernel of the first of `cells` that will boot a guest (what the
    /// KVM probe boots), if any will.
    pub fn first_kernel(&self, cells: &[Cell]) -> Option<&KernelArtifact> {
        cells
            .iter()
            .filter(|c| self.missing_for(c).is_none())
            .find_map(|c| self.environments.get(&c.kernel)?.as_ref().ok()?.kernel())
    }

    /// Why `cell` cannot boot, if one of its artifacts is missing or its
    /// environment cannot give it what it needs.
    pub fn missing_for(&self, cell: &Cell) -> Option<Classified> {
        let environment = self.environments.get(&cell.kernel);
        if let Some(Ok(Environment::Engine { .. })) = environment {
            if let Some(why) = beyond_a_container(cell) {
                return Some(why);
            }
        }
        if let Some(Ok(Environment::Cluster { cluster, .. })) = environment {
            if let Some(why) = beyond_a_cluster(cell, cluster) {
                return Some(why);
            }
        }
        let kernel = environment.and_then(|k| k.as_ref().err());
        let file = || {
            cell.artifacts
                .iter()
                .find_map(|a| self.files.get(a).and_then(|f| f.as_ref().err()))
        };
        let rootfs = || {
            self.rootfs
                .get(&cell.scenario)
                .and_then(|r| r.as_ref().err())
        };
        let artifact = || {
            let mount = &cell.artifact.as_ref()?.mount;
            self.artifacts.get(mount).and_then(|a| a.as_ref().err())
        };
        kernel
            .or_else(file)
            .or_else(rootfs)
            .or_else(artifact)
            .cloned()
    }
}

/// What a cell needs that a Kubernetes workload here cannot have.
fn beyond_a_cluster(cell: &Cell, cluster: &ClusterKind) -> Option<Classified> {
    let in_a_guest = matches!(cluster, ClusterKind::Guest(_));
    let Some(work) = &cell.kubernetes else {
        return Some(Classified::new(
            Verdict::Unavailable,
            "the scenario has no [kubernetes] workload (manifests under kubernetes/)",
        ));
    };
    if in_a_guest && !work.guest {
        return Some(Classified::new(
            Verdict::Unavailable,
            "the scenario does not opt into a cluster inside a guest (its node takes minutes to become Ready under TCG): set `guest = true` in its [kubernetes]",
        ));
    }
    if in_a_guest {
        // The guest boots with the cell's command line and loads what it
        // asks of its own kernel, as a QEMU cell does.
        return None;
    }
    if work.kube_proxy == Some(KubeProxyMode::Ipvs) && matches!(cluster, ClusterKind::Kind { .. }) {
        return Some(Classified::new(
            Verdict::Unavailable,
            "asks for kube-proxy in IPVS mode: kmatrix starts kind clusters with kind's default (iptables)",
        ));
    }
    if work.kube_proxy == Some(KubeProxyMode::Ipvs) && !Path::new("/sys/module/ip_vs").exists() {
        return Some(Classified::new(
            Verdict::Unavailable,
            "asks for kube-proxy in IPVS mode: this host's kernel has no ip_vs loaded, and kmatrix loads nothing into the host's kernel (run it on a <kernel>+k8s cluster)",
        ));
    }
    beyond_a_container(cell)
}

/// What a cell needs that a container on the host's kernel cannot have.
/// (Kernel modules are judged in the container, from what the host has.)
fn beyond_a_container(cell: &Cell) -> Option<Classified> {
    if !cell.kernel_args.is_empty() {
        return Some(Classified::new(
            Verdict::Unavailable,
            format!(
                "needs the kernel command line `{}`; a container runs on the host's kernel as it was booted",
                cell.kernel_args.join(" ")
            ),
        ));
    }
    if cell.loads_bpf() {
        return Some(Classified::new(
            Verdict::Unavailable,
            "loads a BPF program onto an interface: in a container it would go into the host's kernel, which kmatrix never changes",
        ));
    }
    None
}

impl<'a> Provisioner<'a> {
    pub fn new(
        cache: &'a Cache,
        catalog: &'a Catalog,
        locked_only: bool,
        events: Events,
    ) -> Result<Self> {
        Ok(Provisioner {
            cache,
            catalog,
            apt: Apt::new(cache.root()),
            lock: Mutex::new(Lock::load(&catalog.dir)?),
            locked_only,
            events,
            engine: std::sync::OnceLock::new(),
        })
    }

    /// The user's Docker engine, or why none answers.
    pub(crate) fn engine(&self) -> Result<&crate::sources::engine::Engine, &str> {
        self.engine
            .get_or_init(|| crate::sources::engine::Engine::connect().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(String::as_str)
    }

    /// The lock file as it stands now (provisioning may have added pins).
    pub fn lock_snapshot(&self) -> Lock {
        self.lock.lock().expect("lock file").clone()
    }

    /// Makes (or finds in the cache) what `cells` need before they can be
    /// planned for good: the agent, each version's reproducer and BPF
    /// object, each kernel. Root filesystems come later ([`Self::add_rootfs`]),
    /// only for cells still to run.
    pub fn prepare(&self, scenarios: &[Scenario], cells: &[Cell]) -> Result<Provisioned> {
        let events = &self.events;
        let agent = events.step("building the guest agent", || self.agent())?;
        let mut files = BTreeMap::new();
        for scenario in scenarios {
            for version in &scenario.versions {
                let guest = reproducer_guest_path(&scenario.id, &version.id);
                if !cells.iter().any(|c| c.artifacts.contains(&guest)) {
                    continue;
                }
                let label = format!(
                    "{} {}: Go toolchain {} and reproducer",
                    scenario.id, version.id, version.toolchain
                );
                let built = events.step(&label, || {
                    self.toolchain(&version.toolchain)
                        .map_err(|e| Classified::new(Verdict::Unavailable, format!("{e:#}")))?;
                    self.reproducer(scenario, version)
                        .map_err(|e| Classified::new(Verdict::InfraError, format!("{e:#}")))
                });
                files.insert(guest, built);
                if let Some(source) = &version.bpf_object {
                    let label = format!("{} {}: BPF object", scenario.id, version.id);
                    let built = events.step(&label, || {
                        self.bpf_object(source)
                            .map_err(|e| Classified::new(Verdict::InfraError, format!("{e:#}")))
                    });
                    files.insert(bpf_object_guest_path(&scenario.id, &version.id), built);
                }
            }
        }
        let mut environments = BTreeMap::new();
        for kernel in cells.iter().map(|c| &c.kernel).collect::<BTreeSet<_>>() {
            let fetched = events.step(&format!("kernel {kernel}"), || {
                self.environment(kernel)
                    .map_err(|e| Classified::new(Verdict::Unavailable, format!("{e:#}")))
            });
            environments.insert(kernel.clone(), fetched);
        }
        let mut artifacts = BTreeMap::new();
        for cell in cells {
            let Some(artifact) = &cell.artifact else {
                continue;
            };
            if artifacts.contains_key(&artifact.mount) {
                continue;
            }
            let label = format!("{} {}: artifact", cell.scenario, cell.version);
            let made = events.step(&label, || {
                self.artifact(&artifact.artifact, &artifact.command)
                    .map_err(|e| match e.downcast_ref::<ImageError>() {
                        Some(ImageError::Unavailable(why)) => {
                            Classified::new(Verdict::Unavailable, why.clone())
                        }
                        _ => Classified::new(Verdict::InfraError, format!("{e:#}")),
                    })
            });
            artifacts.insert(artifact.mount.clone(), made);
        }
        Ok(Provisioned {
            agent,
            environments,
            files,
            rootfs: BTreeMap::new(),
            artifacts,
        })
    }

    /// Adds the guest root filesystems of scenarios with cells in `pending`.
    pub fn add_rootfs(
        &self,
        provisioned: &mut Provisioned,
        scenarios: &[Scenario],
        pending: &[Cell],
    ) {
        let events = &self.events;
        for scenario in scenarios {
            let Some(guest) = &scenario.guest else {
                continue;
            };
            if !pending.iter().any(|c| c.scenario == scenario.id) {
                continue;
            }
            let label = format!(
                "{}: guest root filesystem ({})",
                scenario.id,
                guest.packages.join(", ")
            );
            let built = events.step(&label, || {
                self.rootfs(guest)
                    .map_err(|e| Classified::new(Verdict::Unavailable, format!("{e:#}")))
            });
            provisioned.rootfs.insert(scenario.id.clone(), built);
        }
    }

    /// Decides what QEMU boots of each kernel with cells in `pending` (its
    /// PVH `vmlinux` or its compressed image): a run with nothing left to
    /// do examines no kernel.
    pub fn add_boot_images(&self, provisioned: &mut Provisioned, pending: &[Cell]) {
        for (id, environment) in provisioned.environments.iter_mut() {
            if !pending.iter().any(|c| &c.kernel == id) {
                continue;
            }
            if let Ok(Environment::Kernel(kernel)) = environment {
                kernel.boot = self.boot_image(&kernel.image);
            }
        }
    }
}
