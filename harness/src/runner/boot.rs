//! One kernel's cells: one boot for all of them, and more boots only when a
//! guest died. Cells are classified as the guest finishes them.
//!
//! A guest death is evidence, not a verdict. When the guest dies during a
//! cell, that cell is booted again alone, twice. It is blamed (`crash`, or
//! `timeout` for a hang) only when it takes the guest down every time, with
//! the same signature each time, while a control boot of the same kernel
//! that runs no cell survives. A cell that finishes alone gets the verdict
//! of that run; one whose deaths differ, or whose control boot dies too, is
//! `infra-error` with the evidence in its signature. Every boot and death
//! is counted per kernel for `run.json`.

use super::guest::{record_without_guest, BootFacts, GuestView};
use super::{job_for, FleetMessage, KernelWork, RunContext};
use crate::backend::{Backend, BootEnd, BootOutcome, BootRequest, GuestDisk, GuestFile};
use crate::events::RunEvent;
use crate::inputs::scenario::KubeProxyMode;
use crate::plan::Cell;
use crate::provision::cluster::GUEST_MODULES;
use crate::provision::Environment;
use crate::sources::modules;
use crate::verdict::{kernel_crash, Classified};
use kmatrix_agent::GuestEvent;
use kmatrix_metadata::{BootStats, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc;

/// Boots in a row that never reach the agent (or stop between cells)
/// before the kernel's remaining cells are an infrastructure error.
const MAX_FAILED_STARTS: u32 = 3;

/// Boots of a cell alone after the guest died during it.
const ISOLATION_BOOTS: u32 = 2;

/// Guest deaths on one kernel before its remaining cells are given up as an
/// unstable emulator (each death costs up to three more boots).
const MAX_DEATHS_PER_KERNEL: u32 = 8;

/// Runs every cell of one kernel and reports its boot statistics last.
pub(super) fn run_kernel(
    work: KernelWork,
    context: &RunContext,
    results: &mpsc::Sender<FleetMessage>,
) {
    let KernelWork {
        environment,
        group,
        cells,
    } = work;
    // Each group's boots get their own log folders.
    let boot_name = group.name();
    let kernel_args = group.kernel_args;
    let kube_proxy = group.kube_proxy;
    let (disks, bundle_files) = match context.artifacts_for(&cells, &boot_name) {
        Ok(found) => found,
        Err(e) => {
            return not_bootable(
                cells,
                &format!("cannot write the container bundles: {e:#}"),
                results,
            )
        }
    };
    let mut wanted_modules: BTreeSet<String> = cells
        .iter()
        .flat_map(|c| c.modules.iter().cloned())
        .collect();
    // Host module file → guest path, and what the job names to load.
    let (module_files, module_paths): (Vec<(PathBuf, String)>, Vec<String>) =
        match environment.kernel() {
            Some(kernel) => {
                if !disks.is_empty() {
                    // Artifact disks: the virtio block driver and their file system.
                    wanted_modules.extend(["virtio_pci", "virtio_blk", "ext4"].map(String::from));
                }
                if environment.is_cluster() {
                    // A cluster inside this kernel's guest: what its node needs.
                    wanted_modules.extend(GUEST_MODULES.iter().map(|m| m.to_string()));
                }
                let wanted_modules: Vec<String> = wanted_modules.into_iter().collect();
                match modules::plan(
                    kernel.modules.as_deref(),
                    &wanted_modules,
                    &context.scratch.join(format!("{boot_name}-modules")),
                ) {
                    Ok(plan) => {
                        let paths = plan.files.iter().map(|(_, g)| g.clone()).collect();
                        (plan.files, paths)
                    }
                    Err(e) => {
                        return not_bootable(
                            cells,
                            &format!("cannot prepare kernel modules: {e:#}"),
                            results,
                        )
                    }
                }
            }
            // A container loads nothing: the agent reports what the host has
            // of each module by name.
            None => (Vec::new(), wanted_modules.into_iter().collect()),
        };
    let mut files = context.files_for(&cells);
    files.extend(bundle_files);
    files.extend(module_files.iter().map(|(host, guest)| GuestFile {
        guest_path: guest.clone(),
        host_path: host.clone(),
    }));
    let mut session = Session {
        context,
        results,
        rootfs: context.rootfs_for(&cells),
        module_paths,
        files,
        disks,
        backend: context.backends.for_environment(&environment),
        environment,
        kernel_args,
        kube_proxy,
        boot_name,
        attempts: BTreeMap::new(),
        stats: BootStats::default(),
        boot_number: 0,
    };
    session.run(cells);
    let _ = results.send(FleetMessage::Stats(session.boot_name, session.stats));
}

/// Records every cell as an infrastructure error: the boot could not be prepared.
fn not_bootable(cells: Vec<Cell>, why: &str, results: &mpsc::Sender<FleetMessage>) {
    for cell in cells {
        let record = record_without_guest(&cell, Classified::new(Verdict::InfraError, why));
        let _ = results.send(FleetMessage::Record(Box::new(record)));
    }
}

/// Where a guest died, as far as the agent's events tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Death {
    /// The agent never said hello (the kernel did not come up).
    BeforeStart,
    /// The agent was up and no cell was running.
    BetweenCells,
    /// During this cell.
    During(String),
}

/// One boot's result, after its finished cells were recorded.
struct Boot {
    guest: GuestView,
    outcome: BootOutcome,
    /// `None` when the guest completed (or the user interrupted).
    death: Option<Death>,
}

struct Session<'a> {
    context: &'a RunContext<'a>,
    results: &'a mpsc::Sender<FleetMessage>,
    environment: Environment,
    backend: &'a dyn Backend,
    kernel_args: Vec<String>,
    kube_proxy: Option<KubeProxyMode>,
    boot_name: String,
    files: Vec<GuestFile>,
    disks: Vec<GuestDisk>,
    rootfs: Vec<PathBuf>,
    module_paths: Vec<String>,
    attempts: BTreeMap<String, u32>,
    stats: BootStats,
    boot_number: u32,
}

impl Session<'_> {
    fn interrupted(&self) -> bool {
        self.context.interrupted.is_cancelled()
    }

    fn run(&mut self, mut cells: Vec<Cell>) {
        if self.context.shell.is_some() {
            return self.shell(&cells);
        }
        let mut failed_starts = 0;
        while !cells.is_empty() && !self.interrupted() {
            if self.stats.deaths >= MAX_DEATHS_PER_KERNEL {
                let why = format!(
                    "not run: the emulator is unstable on this kernel ({} guest deaths in {} boots: {}); an infrastructure fault, not the component's",
                    self.stats.deaths,
                    self.stats.boots,
                    self.stats.death_signatures.join("; ")
                );
                self.give_up(std::mem::take(&mut cells), &why, None);
                break;
            }
            let boot = self.boot(&cells, "");
            cells.retain(|c| !boot.guest.done.contains(c.id.as_str()));
            let Some(death) = boot.death else {
                if !cells.is_empty() && !self.interrupted() {
                    // The agent said it was done without finishing every cell.
                    failed_starts += 1;
                }
                if failed_starts >= MAX_FAILED_STARTS {
                    let why = "the agent finished without running these cells".to_string();
                    self.give_up(std::mem::take(&mut cells), &why, Some(&boot.outcome));
                }
                continue;
            };
            match death {
                Death::BeforeStart | Death::BetweenCells => {
                    failed_starts += 1;
                    if failed_starts >= MAX_FAILED_STARTS {
                        let why = if death == Death::BeforeStart {
                            format!(
                                "guest never started after {failed_starts} boots: {}{}",
                                boot.outcome.end.describe(),
                                kernel_crash(&boot.outcome.console)
                                    .map(|c| format!("; console: {c}"))
                                    .unwrap_or_default()
                            )
                        } else {
                            format!(
                                "guest stopped between cells: {}",
                                boot.outcome.end.describe()
                            )
                        };
                        self.give_up(std::mem::take(&mut cells), &why, Some(&boot.outcome));
                    }
                }
                Death::During(cell_id) => {
                    let Some(position) = cells.iter().position(|c| c.id == cell_id) else {
                        continue;
                    };
                    let cell = cells.remove(position);
                    self.judge(cell, death_signature(&boot.outcome));
                }
            }
        }
    }

    /// The guest died during `cell` (with `first` as its signature): boot it
    /// alone, and blame it only if it always takes the guest down the same
    /// way while a control boot without it survives.
    fn judge(&mut self, cell: Cell, first: String) {
        let mut signatures = vec![first];
        let mut last = None;
        for _ in 0..ISOLATION_BOOTS {
            if self.interrupted() {
                return;
            }
            let boot = self.boot(std::slice::from_ref(&cell), " alone");
            if boot.guest.done.contains(cell.id.as_str()) {
                // It ran to the end in a fresh boot: that run's verdict stands.
                return;
            }
            let Some(death) = &boot.death else {
                return; // interrupted
            };
            signatures.push(match death {
                Death::During(_) => death_signature(&boot.outcome),
                Death::BeforeStart => format!("never started: {}", death_signature(&boot.outcome)),
                Death::BetweenCells => {
                    format!("stopped between cells: {}", death_signature(&boot.outcome))
                }
            });
            last = Some(boot);
        }
        let Some(last) = last else { return };
        if self.interrupted() {
            return;
        }
        let control = self.boot(&[], " control");
        if control.death.is_none() && self.interrupted() {
            return;
        }
        let same = signatures.iter().all(|s| *s == signatures[0]);
        let verdict = if same && control.death.is_none() {
            match (kernel_crash(&last.outcome.console), &last.outcome.end) {
                (Some(crash), _) => Classified::new(Verdict::Crash, format!("kernel: {crash}")),
                (None, BootEnd::DeadlineExceeded { .. }) => Classified::new(
                    Verdict::Timeout,
                    "guest stopped responding during the cell (killed at the deadline)",
                ),
                (None, end) => {
                    Classified::new(Verdict::Crash, format!("guest died: {}", end.describe()))
                }
            }
        } else {
            let why = if same {
                format!(
                    "the guest died {} times during this cell ({}), but a control boot with no cell died too ({}): an emulator or host fault, not the component's",
                    signatures.len(),
                    signatures[0],
                    control
                        .death
                        .as_ref()
                        .map(|_| death_signature(&control.outcome))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "the guest died {} times during this cell with different signatures ({}): random deaths are the emulator's, not the component's",
                    signatures.len(),
                    signatures.join(" / ")
                )
            };
            Classified::new(Verdict::InfraError, why)
        };
        let mut record = record_without_guest(&cell, verdict);
        last.guest
            .attach(&mut record, &self.facts(&last.outcome, cell.id.as_str()));
        let _ = self.results.send(FleetMessage::Record(Box::new(record)));
    }

    /// `kmatrix shell`: one boot of the guest these cells get, busybox laid
    /// under it, a shell on the user's terminal instead of the cells; no
    /// verdict comes of it.
    fn shell(&mut self, cells: &[Cell]) {
        let mut request = self.request(cells, " shell");
        request.job.shell = true;
        request
            .rootfs
            .splice(0..0, self.context.shell.iter().cloned());
        self.context.events.send(RunEvent::ShellStarted {
            label: request.label.clone(),
        });
        let outcome = self.backend.boot(&request, &mut |_| {});
        self.stats.boots += 1;
        if !outcome.finished() {
            self.stats.deaths += 1;
            self.stats.death_signatures.push(death_signature(&outcome));
        }
        self.context.events.send(RunEvent::BootFinished {
            label: request.label,
            outcome: outcome.end.describe(),
        });
    }

    /// What the backend is asked for one boot of `cells`, numbered.
    fn request(&mut self, cells: &[Cell], kind: &str) -> BootRequest {
        self.boot_number += 1;
        let label = format!("{} boot {}{kind}", self.boot_name, self.boot_number);
        BootRequest {
            label: label.clone(),
            environment: self.environment.clone(),
            agent: self.context.provisioned.agent.clone(),
            files: self.files.clone(),
            rootfs: self.rootfs.clone(),
            kernel_args: self.kernel_args.clone(),
            kube_proxy: self.kube_proxy,
            disks: self.disks.clone(),
            job: job_for(cells, &self.module_paths, &self.disks),
            log_dir: self
                .context
                .boots_dir
                .join(format!("{}-{}", self.boot_name, self.boot_number)),
            workloads: self.context.workloads_for(cells),
        }
    }

    /// Boots once with `cells` (none for a control boot), records every cell
    /// the guest finishes the moment it does, and counts the boot.
    fn boot(&mut self, cells: &[Cell], kind: &str) -> Boot {
        for cell in cells {
            *self.attempts.entry(cell.id.to_string()).or_default() += 1;
        }
        let request = self.request(cells, kind);
        let label = request.label.clone();
        let console_path = request.log_dir.join("console.log");
        let context = self.context;
        let backend = self.backend;
        context.events.send(RunEvent::BootStarted {
            label: label.clone(),
            cells: cells.len(),
        });
        let mut guest = GuestView::default();
        let attempts = &self.attempts;
        let results = self.results;
        let started = std::time::Instant::now();
        let mut ready_ms = None;
        let outcome = backend.boot(&request, &mut |event| {
            if matches!(event, GuestEvent::Hello { .. }) {
                ready_ms.get_or_insert(started.elapsed().as_millis() as u64);
            }
            let Some(done) = guest.take(event) else {
                return;
            };
            context.events.send(RunEvent::BootCellDone {
                label: label.clone(),
            });
            if let Some(cell) = cells.iter().find(|c| c.id == done) {
                let facts = boot_facts(context, backend, &console_path, attempts[&done]);
                let mut record = guest.classify(cell, context.signatures_of(cell), &facts);
                record.facts.extend(context.artifact_facts(cell));
                let _ = results.send(FleetMessage::Record(Box::new(record)));
            }
        });
        context.events.send(RunEvent::BootFinished {
            label,
            outcome: outcome.end.describe(),
        });
        let death = if outcome.finished() || outcome.end == BootEnd::Interrupted {
            None
        } else if guest.hello.is_none() {
            Some(Death::BeforeStart)
        } else {
            match &guest.in_progress {
                Some(cell) => Some(Death::During(cell.clone())),
                None => Some(Death::BetweenCells),
            }
        };
        self.stats.boots += 1;
        self.stats.duration_ms += started.elapsed().as_millis() as u64;
        self.stats.ready_ms += ready_ms.unwrap_or(0);
        self.stats
            .cells_ms
            .extend(guest.cells_ms.iter().map(|(id, ms)| (id.clone(), *ms)));
        if let Some(death) = &death {
            self.stats.deaths += 1;
            let place = match death {
                Death::BeforeStart => "before the agent started".to_string(),
                Death::BetweenCells => "between cells".to_string(),
                Death::During(cell) => format!("during cell {cell}"),
            };
            let kind = if kind.is_empty() {
                ""
            } else {
                kind.trim_start()
            };
            self.stats.death_signatures.push(format!(
                "boot {}{}{}, {place}: {}",
                self.boot_number,
                if kind.is_empty() { "" } else { " " },
                kind,
                death_signature(&outcome)
            ));
        }
        Boot {
            guest,
            outcome,
            death,
        }
    }

    fn facts(&self, outcome: &BootOutcome, cell_id: &str) -> BootFacts {
        let attempts = self.attempts.get(cell_id).copied().unwrap_or(0);
        boot_facts(self.context, self.backend, &outcome.console_path, attempts)
    }

    /// Records `cells` as infrastructure errors with `why`.
    fn give_up(&self, cells: Vec<Cell>, why: &str, outcome: Option<&BootOutcome>) {
        for cell in cells {
            let mut record = record_without_guest(&cell, Classified::new(Verdict::InfraError, why));
            record.attempts = self.attempts.get(cell.id.as_str()).copied().unwrap_or(0);
            if let Some(outcome) = outcome {
                let facts = self.facts(outcome, cell.id.as_str());
                record.backend = Some(facts.backend);
                record.emulator = facts.emulator;
                record.console_log = Some(facts.console_log);
            }
            let _ = self.results.send(FleetMessage::Record(Box::new(record)));
        }
    }
}

/// What a record says of the boot it came from.
fn boot_facts(
    context: &RunContext,
    backend: &dyn Backend,
    console: &std::path::Path,
    attempts: u32,
) -> BootFacts {
    BootFacts {
        backend: backend.name(),
        emulator: backend.emulator(),
        console_log: super::relative(console, &context.run_dir),
        attempts,
    }
}

/// What a dead guest left: the kernel's crash line, a hang, or how QEMU ended.
fn death_signature(outcome: &BootOutcome) -> String {
    match (kernel_crash(&outcome.console), &outcome.end) {
        (Some(crash), _) => format!("kernel: {crash}"),
        (None, BootEnd::DeadlineExceeded { .. }) => {
            "guest stopped responding (killed at the deadline)".into()
        }
        (None, end) => end.describe(),
    }
}
