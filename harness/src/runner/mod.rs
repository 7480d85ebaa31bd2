//! The runner: takes the cells to run, the provisioned artifacts and a
//! [`Backend`], boots each kernel once for all its cells (VMs in parallel up
//! to `jobs`), classifies every cell as the guest finishes it, retries
//! failing cells when asked, and reports all of it as [`RunEvent`]s. It
//! writes no files and draws nothing: the reporters do.

mod boot;
mod container;
mod guest;
mod retry;
pub mod schedule;

pub use guest::record_without_guest;

use crate::backend::{entropy_seed, Backends, GuestDisk, GuestFile};
use crate::cancel::Cancel;
use crate::events::{Events, RunEvent};
use crate::ids::ScenarioId;
use crate::inputs::scenario::{KubeProxyMode, Signature};
use crate::plan::Cell;
use crate::provision::{Environment, Provisioned};
use kmatrix_agent::{Job, JobCell, JobDisk, JobProbe};
use kmatrix_metadata::{BootStats, CellRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};

/// What the runner needs besides the backend.
pub struct RunContext<'a> {
    /// QEMU for kernels, the container backend for `docker`.
    pub backends: Backends<'a>,
    pub provisioned: &'a Provisioned,
    pub signatures: BTreeMap<ScenarioId, Vec<Signature>>,
    /// The run directory: boot logs go under it, records name consoles relative to it.
    pub run_dir: PathBuf,
    /// Where this pass keeps its boots' logs (`boots/`, `boots-retry-1/`, ...).
    pub boots_dir: PathBuf,
    /// Scratch for what boots need only while they run (decompressed
    /// modules, initramfs images): outside the results directory, removed
    /// with the run.
    pub scratch: PathBuf,
    pub jobs: usize,
    /// What earlier runs measured: the longest boot is taken first, so the
    /// VMs running in parallel finish together.
    pub durations: schedule::Durations,
    pub events: Events,
    pub interrupted: &'a Cancel,
    /// `kmatrix shell`: instead of running the cells, one boot of their
    /// guest with a shell on the terminal; this root (busybox) laid under it.
    pub shell: Option<PathBuf>,
}

/// What the fleet's threads send back: a finished cell, or a boot group's
/// statistics once its cells are done.
pub(crate) enum FleetMessage {
    Record(Box<CellRecord>),
    Stats(String, BootStats),
}

/// Everything one kernel's boots need.
pub(crate) struct KernelWork {
    pub environment: Environment,
    /// What every cell of this boot shares.
    pub group: BootGroup,
    pub cells: Vec<Cell>,
}

/// What cells must share to share a boot: the environment, the kernel
/// command line, on a cluster kube-proxy's mode, and in a guest the kernel
/// modules loaded before the cells run (a cell never sees another
/// scenario's modules, so its facts do not depend on its neighbours).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootGroup {
    pub environment: String,
    pub kernel_args: Vec<String>,
    pub kube_proxy: Option<KubeProxyMode>,
    /// Sorted; empty off a guest (a container or cluster loads nothing).
    pub modules: Vec<String>,
}

impl BootGroup {
    /// The group of `cell` in `environment`.
    pub fn of(cell: &Cell, environment: &Environment) -> BootGroup {
        let mut modules = match environment {
            Environment::Kernel(_) => cell.modules.clone(),
            _ => Vec::new(),
        };
        modules.sort();
        modules.dedup();
        BootGroup {
            environment: environment.id().to_string(),
            kernel_args: cell.kernel_args.clone(),
            kube_proxy: cell.kubernetes.as_ref().and_then(|k| k.kube_proxy),
            modules,
        }
    }

    /// The group's name (its boot folders are `NAME-N`, its `run.json`
    /// entry `NAME`): the environment, plus what sets it apart.
    pub fn name(&self) -> String {
        let mut name = self.environment.clone();
        if !self.kernel_args.is_empty() {
            name = format!(
                "{name}+{}",
                self.kernel_args.join("+").replace(['=', '/', ' '], "_")
            );
        }
        if let Some(mode) = self.kube_proxy {
            name = format!("{name}+kube-proxy-{}", mode.as_str());
        }
        if let Some(first) = self.modules.first() {
            let hash = crate::hashing::sha256_bytes(self.modules.join(",").as_bytes());
            name = format!("{name}+mod-{first}-{}", &hash[..6]);
        }
        name
    }
}

/// Runs `cells` and reports each as a [`RunEvent::CellFinished`]; with
/// `retries`, failing cells run again and one that passes once is `flaky`.
/// Returns how many boots and guest deaths each boot group had.
pub fn run(cells: Vec<Cell>, retries: u32, context: &RunContext) -> BTreeMap<String, BootStats> {
    let mut bootable = Vec::new();
    for cell in cells {
        match context.provisioned.missing_for(&cell) {
            Some(why) => finished(&context.events, record_without_guest(&cell, why)),
            None => bootable.push(cell),
        }
    }
    let by_id: BTreeMap<String, Cell> = bootable
        .iter()
        .map(|c| (c.id.to_string(), c.clone()))
        .collect();
    let work = context.group_into_boots(&bootable);
    let mut failed_now = Vec::new();
    let mut stats = context.run_fleet(work, |record| {
        if record.verdict.is_failure() {
            failed_now.push(record.clone());
        }
        finished(&context.events, record);
    });
    let retried = retry::retry_failures(context, retries, failed_now, &by_id);
    for (group, more) in retried {
        stats.entry(group).or_default().absorb(more);
    }
    stats
}

fn finished(events: &Events, record: CellRecord) {
    events.send(RunEvent::CellFinished(Box::new(record)));
}

impl RunContext<'_> {
    fn signatures_of(&self, cell: &Cell) -> &[Signature] {
        self.signatures
            .get(&cell.scenario)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Host files the cells name by guest path (reproducers, BPF objects).
    fn files_for(&self, cells: &[Cell]) -> Vec<GuestFile> {
        cells
            .iter()
            .flat_map(|c| c.artifacts.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|guest| {
                let host = self.provisioned.files.get(&guest)?.as_ref().ok()?.clone();
                Some(GuestFile {
                    guest_path: guest,
                    host_path: host,
                })
            })
            .collect()
    }

    /// The artifact disks of the cells, each once, and the bundle configs
    /// their containers run from (written into the run's scratch).
    /// Each boot group (`group`: kernel and command line) writes its own
    /// copies: boots of other kernels run at the same time.
    fn artifacts_for(
        &self,
        cells: &[Cell],
        group: &str,
    ) -> anyhow::Result<(Vec<GuestDisk>, Vec<GuestFile>)> {
        let mut disks: Vec<GuestDisk> = Vec::new();
        let mut files = Vec::new();
        for cell in cells {
            let Some(artifact) = &cell.artifact else {
                continue;
            };
            let Some(Ok(image)) = self.provisioned.artifacts.get(&artifact.mount) else {
                continue;
            };
            if !disks.iter().any(|d| d.mount_point == artifact.mount) {
                disks.push(GuestDisk {
                    host_path: image.disk.clone(),
                    tree: image.root.clone(),
                    mount_point: artifact.mount.clone(),
                });
            }
            let host = self
                .scratch
                .join(group)
                .join("bundles")
                .join(artifact.bundle.trim_start_matches('/').replace('/', "_"))
                .join("config.json");
            std::fs::create_dir_all(host.parent().expect("a folder"))?;
            std::fs::write(&host, container::bundle_config(artifact, image)?)?;
            files.push(GuestFile {
                guest_path: format!("{}/config.json", artifact.bundle),
                host_path: host,
            });
        }
        if !disks.is_empty() {
            let hosts = self.scratch.join(group).join("hosts");
            std::fs::write(&hosts, crate::provision::HOSTS)?;
            files.push(GuestFile {
                guest_path: container::GUEST_HOSTS.into(),
                host_path: hosts,
            });
        }
        Ok((disks, files))
    }

    /// Facts the cell's artifact says of itself (Go build info), with the
    /// cell's environment applied.
    fn artifact_facts(&self, cell: &Cell) -> BTreeMap<String, String> {
        let Some(artifact) = &cell.artifact else {
            return BTreeMap::new();
        };
        let Some(Ok(image)) = self.provisioned.artifacts.get(&artifact.mount) else {
            return BTreeMap::new();
        };
        let mut facts = BTreeMap::from([(
            "artifact".to_string(),
            format!("{} ({})", image.reference, image.digest),
        )]);
        if let Some(build) = &image.build_info {
            facts.extend(build.facts(&artifact.env));
        }
        facts
    }

    /// The root filesystems of the cells' scenarios, each once.
    /// The cells' Kubernetes workloads (none off a cluster).
    fn workloads_for(&self, cells: &[Cell]) -> Vec<crate::backend::Workload> {
        cells
            .iter()
            .filter_map(|cell| {
                Some(crate::backend::Workload {
                    cell_id: cell.id.to_string(),
                    kube: cell.kubernetes.clone()?,
                    probes: cell.probes.clone(),
                    reproducer: cell
                        .artifacts
                        .first()
                        .and_then(|a| self.provisioned.files.get(a)?.as_ref().ok().cloned()),
                    real_image: cell.artifact.as_ref().and_then(|a| {
                        self.provisioned
                            .artifacts
                            .get(&a.mount)?
                            .as_ref()
                            .ok()
                            .cloned()
                    }),
                })
            })
            .collect()
    }

    fn rootfs_for(&self, cells: &[Cell]) -> Vec<PathBuf> {
        cells
            .iter()
            .filter_map(|c| {
                self.provisioned
                    .rootfs
                    .get(&c.scenario)?
                    .as_ref()
                    .ok()
                    .cloned()
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Groups cells into boots: one per [`BootGroup`].
    fn group_into_boots<'c>(&self, cells: impl IntoIterator<Item = &'c Cell>) -> Vec<KernelWork> {
        let mut work: BTreeMap<BootGroup, KernelWork> = BTreeMap::new();
        for cell in cells {
            let Some(Ok(environment)) = self.provisioned.environments.get(&cell.kernel) else {
                continue;
            };
            let group = BootGroup::of(cell, environment);
            work.entry(group.clone())
                .or_insert_with(|| KernelWork {
                    environment: environment.clone(),
                    group,
                    cells: Vec::new(),
                })
                .cells
                .push(cell.clone());
        }
        work.into_values().collect()
    }

    /// Boots the kernels in parallel (up to `jobs` VMs); every finished cell
    /// comes back to the calling thread, which hands it to `on_record`.
    fn run_fleet(
        &self,
        work: Vec<KernelWork>,
        mut on_record: impl FnMut(CellRecord),
    ) -> BTreeMap<String, BootStats> {
        let queue = Mutex::new(self.schedule(work));
        let (sender, receiver) = mpsc::channel::<FleetMessage>();
        let mut stats = BTreeMap::new();
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.max(1) {
                let sender = sender.clone();
                let queue = &queue;
                scope.spawn(move || loop {
                    let next = queue.lock().expect("queue").pop();
                    let Some(kernel_work) = next else { break };
                    if self.interrupted.is_cancelled() {
                        break;
                    }
                    boot::run_kernel(kernel_work, self, &sender);
                });
            }
            drop(sender);
            for message in receiver {
                match message {
                    FleetMessage::Record(record) => on_record(*record),
                    FleetMessage::Stats(group, group_stats) => {
                        stats.insert(group, group_stats);
                    }
                }
            }
        });
        stats
    }

    /// Orders boots so the longest is taken first (workers pop from the end).
    fn schedule(&self, mut work: Vec<KernelWork>) -> Vec<KernelWork> {
        work.sort_by_key(|w| self.expected_cost(w));
        work
    }

    /// What a kernel's boots are expected to cost, from earlier runs.
    fn expected_cost(&self, work: &KernelWork) -> u64 {
        self.durations.expected(&work.group.name(), &work.cells)
    }

    /// The same context with boot logs in another folder of the run directory.
    fn with_boots_dir(&self, name: &str) -> RunContext<'_> {
        RunContext {
            backends: self.backends,
            provisioned: self.provisioned,
            signatures: self.signatures.clone(),
            run_dir: self.run_dir.clone(),
            boots_dir: self.run_dir.join(name),
            scratch: self.scratch.clone(),
            jobs: self.jobs,
            durations: self.durations.clone(),
            events: self.events.clone(),
            interrupted: self.interrupted,
            shell: self.shell.clone(),
        }
    }
}

pub(crate) fn job_for(cells: &[Cell], modules: &[String], disks: &[GuestDisk]) -> Job {
    Job {
        entropy_seed_hex: entropy_seed(),
        modules: modules.to_vec(),
        disks: disks
            .iter()
            .enumerate()
            .map(|(n, disk)| JobDisk {
                device: format!("/dev/vd{}", (b'a' + n as u8) as char),
                mount_point: disk.mount_point.clone(),
                fstype: "ext4".into(),
            })
            .collect(),
        sealed_binaries: vec![crate::plan::GUEST_RUNTIME.to_string()],
        cells: cells
            .iter()
            .map(|cell| JobCell {
                cell_id: cell.id.to_string(),
                probes: cell
                    .probes
                    .iter()
                    .map(|p| JobProbe {
                        probe_id: p.probe_id.clone(),
                        argv: p.argv.clone(),
                        env: p.env.clone(),
                        timeout_ms: p.expect.timeout_ms,
                    })
                    .collect(),
            })
            .collect(),
        shell: false,
    }
}

/// `path` relative to the run directory, as records name console logs.
fn relative(path: &std::path::Path, run_dir: &std::path::Path) -> String {
    path.strip_prefix(run_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
pub(crate) mod tests;
