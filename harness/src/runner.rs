//! The run: plan → provision → boot each kernel once for all its cells (VMs
//! in parallel) → classify → results store → reports. Cells are recorded the
//! moment they finish, so an interrupted run keeps them and `--resume`
//! continues from there.

use crate::accel::{self, AccelChoice, AccelDecision};
use crate::backend::qemu::QemuBackend;
use crate::backend::{Backend, BootEnd, BootOutcome, BootRequest, GuestFile};
use crate::cache::Cache;
use crate::plan::{self, Cell};
use crate::progress::Progress;
use crate::provision::{KernelArtifact, Provisioner};
use crate::results::{CellRecord, ProbeRecord, ResultsStore, RunCounts, RunInfo};
use crate::scenario::Signature;
use crate::verdict::{aggregate, classify_probe, kernel_crash, Classified, Verdict};
use crate::Project;
use crate::{modules, report};
use anyhow::{bail, Result};
use kmatrix_agent::{GuestEvent, Job, JobCell, JobProbe, ProcessEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenarios: Vec<String>,
    pub kernels: Vec<String>,
    pub out: PathBuf,
    /// Continue a run in `out`, running only the cells it lacks.
    pub resume: bool,
    pub jobs: usize,
    pub accel: AccelChoice,
    pub locked: bool,
    /// Rerun failing cells up to this many times to tell flaky from failing.
    pub retries: u32,
    /// Which cells of the plan to run (variants, cell ids, shard).
    pub selection: plan::Selection,
}

#[derive(Debug)]
pub struct RunSummary {
    pub out: PathBuf,
    pub planned: usize,
    pub already_done: usize,
    pub counts: BTreeMap<Verdict, usize>,
    pub interrupted: bool,
    pub accel: AccelDecision,
    pub cache: crate::cache::CacheStats,
}

/// Everything a kernel's boots need, shared by the worker threads.
struct KernelWork {
    kernel: KernelArtifact,
    /// Kernel command-line words every cell of this boot shares.
    kernel_args: Vec<String>,
    cells: Vec<Cell>,
}

/// Groups cells into boots: one per kernel and kernel command line.
fn group_into_boots<'c>(
    cells: impl IntoIterator<Item = &'c Cell>,
    kernel_of: impl Fn(&Cell) -> Option<KernelArtifact>,
) -> Vec<KernelWork> {
    let mut work: BTreeMap<(String, Vec<String>), KernelWork> = BTreeMap::new();
    for cell in cells {
        let Some(kernel) = kernel_of(cell) else {
            continue;
        };
        work.entry((cell.kernel.clone(), cell.kernel_args.clone()))
            .or_insert_with(|| KernelWork {
                kernel,
                kernel_args: cell.kernel_args.clone(),
                cells: Vec::new(),
            })
            .cells
            .push(cell.clone());
    }
    work.into_values().collect()
}

pub fn run(
    project: &Project,
    cache: &Cache,
    options: &RunOptions,
    interrupted: Arc<AtomicBool>,
) -> Result<RunSummary> {
    let started = SystemTime::now();
    let (catalog, scenarios) = project.load_selected(&options.scenarios)?;
    let mut store = ResultsStore::open(&options.out)?;
    let existing = store.records().count();
    if existing > 0 && !options.resume {
        bail!(
            "{} already holds {existing} finished cells; continue it with `kmatrix run --resume {}` or choose another --out",
            options.out.display(),
            options.out.display()
        );
    }
    let provisioner = Provisioner::new(cache, &catalog, options.locked)?;
    // Planned twice: provisioning may pin new checksums in the lock file, and
    // cell ids hash the lock, so the ids that count come after provisioning.
    let provisional = options.selection.apply(plan::plan(
        &scenarios,
        &options.kernels,
        &catalog,
        &provisioner.lock_snapshot(),
    )?);
    let progress = Progress::new(provisional.len() as u64);

    // Provision: the agent, each version's reproducer, each kernel.
    let signatures: BTreeMap<String, Vec<Signature>> = scenarios
        .iter()
        .map(|s| (s.id.clone(), s.signatures.clone()))
        .collect();
    let agent = progress.step("building the guest agent", || provisioner.agent())?;
    let mut reproducers: BTreeMap<String, Result<PathBuf, Classified>> = BTreeMap::new();
    for scenario in &scenarios {
        for version in &scenario.versions {
            let guest = plan::reproducer_guest_path(&scenario.id, &version.id);
            if !provisional.iter().any(|c| c.artifacts.contains(&guest)) {
                continue;
            }
            let label = format!(
                "{} {}: Go toolchain {} and reproducer",
                scenario.id, version.id, version.toolchain
            );
            let built = progress.step(&label, || {
                provisioner
                    .toolchain(&version.toolchain)
                    .map_err(|e| Classified::new(Verdict::Unavailable, format!("{e:#}")))?;
                provisioner
                    .reproducer(scenario, version)
                    .map_err(|e| Classified::new(Verdict::InfraError, format!("{e:#}")))
            });
            reproducers.insert(guest, built);
            if let Some(source) = &version.bpf_object {
                let built = progress.step(
                    &format!("{} {}: BPF object", scenario.id, version.id),
                    || {
                        provisioner
                            .bpf_object(source)
                            .map_err(|e| Classified::new(Verdict::InfraError, format!("{e:#}")))
                    },
                );
                reproducers.insert(
                    plan::bpf_object_guest_path(&scenario.id, &version.id),
                    built,
                );
            }
        }
    }
    let mut kernels: BTreeMap<String, Result<KernelArtifact, Classified>> = BTreeMap::new();
    for kernel in provisional
        .iter()
        .map(|c| c.kernel.clone())
        .collect::<BTreeSet<_>>()
    {
        let fetched = progress.step(&format!("kernel {kernel}"), || {
            provisioner
                .kernel(&kernel)
                .map_err(|e| Classified::new(Verdict::Unavailable, format!("{e:#}")))
        });
        kernels.insert(kernel, fetched);
    }

    let cells = options.selection.apply(plan::plan(
        &scenarios,
        &options.kernels,
        &catalog,
        &provisioner.lock_snapshot(),
    )?);
    let planned = cells.len();
    let pending: Vec<Cell> = cells
        .into_iter()
        .filter(|c| !store.holds_result(&c.id))
        .collect();
    let already_done = planned - pending.len();
    progress.set_cells(pending.len() as u64);
    progress.note(&format!(
        "{planned} cells planned, {already_done} already in {}, {} to run",
        options.out.display(),
        pending.len()
    ));

    // Guest root filesystems, for scenarios that need Debian userspace.
    let mut rootfs: BTreeMap<String, Result<PathBuf, Classified>> = BTreeMap::new();
    for scenario in &scenarios {
        let Some(guest) = &scenario.guest else {
            continue;
        };
        if !pending.iter().any(|c| c.scenario == scenario.id) {
            continue;
        }
        let built = progress.step(
            &format!(
                "{}: guest root filesystem ({})",
                scenario.id,
                guest.packages.join(", ")
            ),
            || {
                provisioner
                    .rootfs(guest)
                    .map_err(|e| Classified::new(Verdict::Unavailable, format!("{e:#}")))
            },
        );
        rootfs.insert(scenario.id.clone(), built);
    }

    // Cells that cannot boot are recorded now; the rest are grouped into boots.
    let mut bootable = Vec::new();
    for cell in pending {
        let missing: Option<Classified> = kernels[&cell.kernel]
            .as_ref()
            .err()
            .cloned()
            .or_else(|| {
                cell.artifacts
                    .iter()
                    .find_map(|a| reproducers[a].as_ref().err().cloned())
            })
            .or_else(|| {
                rootfs
                    .get(&cell.scenario)
                    .and_then(|r| r.as_ref().err().cloned())
            });
        match missing {
            Some(why) => {
                let record = CellRecord::without_guest(&cell, why);
                progress.cell_finished(&record);
                store.add(record)?;
            }
            None => bootable.push(cell),
        }
    }
    let work = group_into_boots(&bootable, |c| kernels[&c.kernel].as_ref().ok().cloned());
    let rootfs: BTreeMap<String, PathBuf> = rootfs
        .into_iter()
        .filter_map(|(id, r)| Some((id, r.ok()?)))
        .collect();

    let decision = match work.first() {
        Some(first) => progress.step("choosing KVM or TCG", || -> Result<AccelDecision> {
            Ok(accel::decide(options.accel, cache.root(), || {
                probe_kvm(&first.kernel, &agent, &options.out, interrupted.clone())
            }))
        })?,
        None => AccelDecision {
            accel: "none".into(),
            reason: "no cell needed a guest".into(),
        },
    };
    if !work.is_empty() {
        progress.note(&format!(
            "accelerator: {} ({})",
            decision.accel, decision.reason
        ));
    }
    let backend = QemuBackend::new(decision.accel(), interrupted.clone());
    // A resumed run keeps when it first started, and the accelerator it
    // used when this part boots nothing.
    let earlier = crate::results::read_run_info(&options.out).filter(|_| options.resume);
    let (accel, accel_reason) = match (&earlier, work.is_empty()) {
        (Some(before), true) => (before.accel.clone(), before.accel_reason.clone()),
        _ => (decision.accel.clone(), decision.reason.clone()),
    };
    let started = earlier
        .as_ref()
        .map(|before| before.started.clone())
        .unwrap_or_else(|| humantime::format_rfc3339_seconds(started).to_string());
    let run_info = |finished: Option<SystemTime>| RunInfo {
        harness_version: env!("CARGO_PKG_VERSION").into(),
        started: started.clone(),
        finished: finished.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        accel: accel.clone(),
        accel_reason: accel_reason.clone(),
        cache: cache.stats(),
        command: std::env::args().collect(),
    };
    store.write_run_info(&run_info(None))?;

    let fleet = Fleet {
        backend: &backend,
        agent: &agent,
        reproducers: &reproducers,
        rootfs: &rootfs,
        signatures: &signatures,
        progress: &progress,
        interrupted: &interrupted,
        jobs: options.jobs.max(1),
        run_dir: &options.out,
    };
    let cells_by_id: BTreeMap<String, Cell> = work
        .iter()
        .flat_map(|w| w.cells.iter().map(|c| (c.id.clone(), c.clone())))
        .collect();
    let mut failed_now: Vec<CellRecord> = Vec::new();
    fleet.run(work, "boots", |record| {
        progress.cell_finished(&record);
        if record.verdict.is_failure() {
            failed_now.push(record.clone());
        }
        store.add(record)
    })?;
    retry_failures(
        &fleet,
        options.retries,
        failed_now,
        &cells_by_id,
        &kernels,
        &mut store,
    )?;
    progress.finish();

    let was_interrupted = interrupted.load(Ordering::SeqCst);
    store.write_run_info(&run_info((!was_interrupted).then(SystemTime::now)))?;
    let records: Vec<CellRecord> = store.records().cloned().collect();
    let info = run_info((!was_interrupted).then(SystemTime::now));
    let baseline = project
        .baseline_cells()
        .map(|old| crate::diff::diff(&old, &records, false));
    report::write_all(
        &options.out,
        &report::ReportInput {
            records: &records,
            scenarios: &scenarios,
            catalog: &catalog,
            run: Some(&info),
            run_dir: Some(&options.out),
            baseline: baseline.as_ref(),
        },
    )?;
    let mut counts = BTreeMap::new();
    for record in &records {
        *counts.entry(record.verdict).or_insert(0) += 1;
    }
    Ok(RunSummary {
        out: options.out.clone(),
        planned,
        already_done,
        counts,
        interrupted: was_interrupted,
        accel: decision,
        cache: cache.stats(),
    })
}

/// Everything the worker threads share while booting kernels.
struct Fleet<'a> {
    backend: &'a dyn Backend,
    agent: &'a Path,
    reproducers: &'a BTreeMap<String, Result<PathBuf, Classified>>,
    /// Guest root filesystems by scenario.
    rootfs: &'a BTreeMap<String, PathBuf>,
    signatures: &'a BTreeMap<String, Vec<Signature>>,
    progress: &'a Progress,
    interrupted: &'a Arc<AtomicBool>,
    jobs: usize,
    run_dir: &'a Path,
}

impl Fleet<'_> {
    /// Boots the kernels in parallel (up to `jobs` VMs); every finished cell
    /// comes back to the calling thread, which alone writes results.
    fn run(
        &self,
        work: Vec<KernelWork>,
        boots: &str,
        mut on_record: impl FnMut(CellRecord) -> Result<()>,
    ) -> Result<()> {
        let queue = Mutex::new(work);
        let (sender, receiver) = mpsc::channel::<CellRecord>();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..self.jobs {
                let sender = sender.clone();
                let queue = &queue;
                scope.spawn(move || loop {
                    let next = queue.lock().expect("queue").pop();
                    let Some(kernel_work) = next else { break };
                    if self.interrupted.load(Ordering::SeqCst) {
                        break;
                    }
                    let files = guest_files(&kernel_work.cells, self.reproducers);
                    let rootfs: Vec<PathBuf> = kernel_work
                        .cells
                        .iter()
                        .filter_map(|c| self.rootfs.get(&c.scenario).cloned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    run_kernel(
                        self.backend,
                        kernel_work,
                        &KernelContext {
                            agent: self.agent,
                            files,
                            rootfs,
                            signatures: self.signatures,
                            run_dir: self.run_dir,
                            boots_dir: &self.run_dir.join(boots),
                            progress: self.progress,
                            interrupted: self.interrupted,
                        },
                        &sender,
                    );
                });
            }
            drop(sender);
            for record in receiver {
                on_record(record)?;
            }
            Ok(())
        })
    }
}

/// With `--retries N`, cells that failed are run up to N more times; a cell
/// that passes once is `flaky`, with how often it passed and failed.
fn retry_failures(
    fleet: &Fleet,
    retries: u32,
    failed: Vec<CellRecord>,
    cells: &BTreeMap<String, Cell>,
    kernels: &BTreeMap<String, Result<KernelArtifact, Classified>>,
    store: &mut ResultsStore,
) -> Result<()> {
    if retries == 0 || failed.is_empty() {
        return Ok(());
    }
    let mut counts: BTreeMap<String, RunCounts> = failed
        .iter()
        .map(|r| {
            (
                r.cell_id.clone(),
                RunCounts {
                    passed: 0,
                    failed: 1,
                },
            )
        })
        .collect();
    for round in 1..=retries {
        let failing: Vec<&Cell> = counts
            .iter()
            .filter(|(_, count)| count.passed == 0)
            .map(|(id, _)| &cells[id])
            .collect();
        let work = group_into_boots(failing, |c| kernels[&c.kernel].as_ref().ok().cloned());
        if work.is_empty() || fleet.interrupted.load(Ordering::SeqCst) {
            break;
        }
        fleet.progress.note(&format!(
            "retry {round}/{retries}: {} failing cells",
            work.iter().map(|w| w.cells.len()).sum::<usize>()
        ));
        fleet.run(work, &format!("boots-retry-{round}"), |record| {
            let count = counts.get_mut(&record.cell_id).expect("a retried cell");
            match record.verdict {
                Verdict::Pass => count.passed += 1,
                v if v.is_failure() => count.failed += 1,
                _ => {}
            }
            Ok(())
        })?;
    }
    for mut record in failed {
        let count = counts[&record.cell_id];
        if count.passed > 0 {
            record.verdict = Verdict::Flaky;
        }
        record.runs = Some(count);
        fleet.progress.note(&format!(
            "  {:<11} {} {} {} on {} (passed {}, failed {})",
            record.verdict.as_str(),
            record.scenario,
            record.version,
            record.variant,
            record.kernel,
            count.passed,
            count.failed
        ));
        store.add(record)?;
    }
    Ok(())
}

fn guest_files(
    cells: &[Cell],
    reproducers: &BTreeMap<String, Result<PathBuf, Classified>>,
) -> Vec<GuestFile> {
    cells
        .iter()
        .flat_map(|c| c.artifacts.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|guest| {
            let host = reproducers.get(&guest)?.as_ref().ok()?.clone();
            Some(GuestFile {
                guest_path: guest,
                host_path: host,
            })
        })
        .collect()
}

/// Boots a guest under KVM with no cells and says whether the agent answered.
fn probe_kvm(
    kernel: &KernelArtifact,
    agent: &Path,
    run_dir: &Path,
    interrupted: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut backend = QemuBackend::new(crate::backend::qemu::Accel::Kvm, interrupted);
    backend.deadlines.boot = std::time::Duration::from_secs(20);
    let request = BootRequest {
        label: "kvm probe".into(),
        kernel: kernel.clone(),
        agent: agent.to_path_buf(),
        files: Vec::new(),
        rootfs: Vec::new(),
        kernel_args: Vec::new(),
        job: Job {
            entropy_seed_hex: entropy_seed(),
            modules: Vec::new(),
            cells: Vec::new(),
        },
        log_dir: run_dir.join("boots").join("kvm-probe"),
    };
    let outcome = backend.boot(&request, &mut |_| {});
    let said_done = outcome.events.iter().any(|e| matches!(e, GuestEvent::Done));
    match (&outcome.end, said_done) {
        (BootEnd::Completed, true) => Ok(()),
        (end, _) => Err(describe_end(end)),
    }
}

struct KernelContext<'a> {
    agent: &'a Path,
    files: Vec<GuestFile>,
    rootfs: Vec<PathBuf>,
    signatures: &'a BTreeMap<String, Vec<Signature>>,
    run_dir: &'a Path,
    /// Where this pass keeps its boots' logs (under the run directory).
    boots_dir: &'a Path,
    progress: &'a Progress,
    interrupted: &'a AtomicBool,
}

/// Boots that may fail before a kernel's remaining cells are an
/// infrastructure error. Three, because QEMU 7.2's TCG sometimes faults a
/// 6.12 guest during early boot code patching when two VMs share the host
/// (seen in 1 of 12 to 1 of 4 parallel boots; never in 24 sequential ones).
const MAX_FAILED_BOOTS: u32 = 3;

/// Guest deaths during one cell before the death is the cell's verdict.
/// Three, for the same reason: the TCG fault also strikes when a cell
/// patches kernel code (a module's static keys), and twice in a row happened
/// in a 176-cell run; three in a row has not.
const MAX_DEATHS_PER_CELL: u32 = 3;

/// Runs every cell of one kernel: one boot for all of them, and more boots
/// only when a guest died. A guest that never comes up three times is an
/// infrastructure error; a cell during which the guest died three times
/// gets the crash (or hang) as its own verdict.
fn run_kernel(
    backend: &dyn Backend,
    work: KernelWork,
    context: &KernelContext,
    results: &mpsc::Sender<CellRecord>,
) {
    let KernelWork {
        kernel,
        kernel_args,
        mut cells,
    } = work;
    // Boots with extra kernel arguments get their own log folders.
    let boot_name = if kernel_args.is_empty() {
        kernel.id.clone()
    } else {
        format!(
            "{}+{}",
            kernel.id,
            kernel_args.join("+").replace(['=', '/', ' '], "_")
        )
    };
    let wanted_modules: Vec<String> = cells
        .iter()
        .flat_map(|c| c.modules.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let modules = match modules::plan(
        kernel.modules.as_deref(),
        &wanted_modules,
        &context
            .run_dir
            .join("boots")
            .join(format!("{boot_name}-modules")),
    ) {
        Ok(plan) => plan,
        Err(e) => {
            let why = format!("cannot prepare kernel modules: {e:#}");
            for cell in cells {
                let _ = results.send(CellRecord::without_guest(
                    &cell,
                    Classified::new(Verdict::InfraError, &why),
                ));
            }
            return;
        }
    };
    let mut files = context.files.clone();
    files.extend(modules.files.iter().map(|(host, guest)| GuestFile {
        guest_path: guest.clone(),
        host_path: host.clone(),
    }));
    let module_paths: Vec<String> = modules.files.iter().map(|(_, g)| g.clone()).collect();
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    let mut deaths: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed_boots = 0;
    let mut boot_number = 0;
    while !cells.is_empty() && !context.interrupted.load(Ordering::SeqCst) {
        boot_number += 1;
        for cell in &cells {
            *attempts.entry(cell.id.clone()).or_default() += 1;
        }
        let request = BootRequest {
            label: format!("{boot_name} boot {boot_number}"),
            kernel: kernel.clone(),
            agent: context.agent.to_path_buf(),
            files: files.clone(),
            rootfs: context.rootfs.clone(),
            kernel_args: kernel_args.clone(),
            job: job_for(&cells, &module_paths),
            log_dir: context.boots_dir.join(format!("{boot_name}-{boot_number}")),
        };
        let bar = context.progress.vm(&request.label, cells.len() as u64);
        let outcome = backend.boot(&request, &mut |event| {
            if let GuestEvent::CellDone { .. } = event {
                bar.inc(1);
            }
        });
        bar.finish_and_clear();
        let console_rel = outcome
            .console_path
            .strip_prefix(context.run_dir)
            .unwrap_or(&outcome.console_path)
            .display()
            .to_string();
        let guest = GuestView::from_events(&outcome.events);
        let mut finished = BTreeSet::new();
        for cell in &cells {
            if !guest.done.contains(&cell.id) {
                continue;
            }
            let mut record = CellRecord::without_guest(cell, Classified::new(Verdict::Pass, ""));
            let probes = guest.probes.get(&cell.id).map(Vec::as_slice).unwrap_or(&[]);
            let sigs = context
                .signatures
                .get(&cell.scenario)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            record.probes = classify_cell_probes(cell, probes, sigs);
            let verdict = aggregate(
                &record
                    .probes
                    .iter()
                    .map(|p| {
                        (
                            p.probe_id.as_str(),
                            Classified::new(p.verdict, p.signature.clone()),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            record.verdict = verdict.verdict;
            record.signature = verdict.signature;
            record.duration_ms = record.probes.iter().map(|p| p.duration_ms).sum();
            fill_guest_fields(
                &mut record,
                &guest,
                &outcome,
                &console_rel,
                attempts[&cell.id],
            );
            finished.insert(cell.id.clone());
            let _ = results.send(record);
        }
        cells.retain(|c| !finished.contains(&c.id));
        // Cells the guest finished before Ctrl-C are kept; the rest wait for --resume.
        if cells.is_empty() || outcome.end == BootEnd::Interrupted {
            break;
        }

        if guest.hello.is_none() {
            failed_boots += 1;
            if failed_boots >= MAX_FAILED_BOOTS {
                let why = format!(
                    "guest never started after {failed_boots} boots: {}{}",
                    describe_end(&outcome.end),
                    kernel_crash(&outcome.console)
                        .map(|c| format!("; console: {c}"))
                        .unwrap_or_default()
                );
                for cell in cells.drain(..) {
                    let mut record = CellRecord::without_guest(
                        &cell,
                        Classified::new(Verdict::InfraError, &why),
                    );
                    record.attempts = attempts[&cell.id];
                    record.backend = Some(outcome.backend.clone());
                    record.console_log = Some(console_rel.clone());
                    let _ = results.send(record);
                }
            }
            continue;
        }
        let Some(current) = guest.in_progress.clone() else {
            // The guest came up, finished no further cell and started none:
            // an emulator fault between cells. Retry, but not forever.
            failed_boots += 1;
            if failed_boots >= MAX_FAILED_BOOTS {
                let why = format!(
                    "guest stopped between cells: {}",
                    describe_end(&outcome.end)
                );
                for cell in cells.drain(..) {
                    let mut record = CellRecord::without_guest(
                        &cell,
                        Classified::new(Verdict::InfraError, &why),
                    );
                    record.attempts = attempts[&cell.id];
                    let _ = results.send(record);
                }
            }
            continue;
        };
        let died = deaths.entry(current.clone()).or_default();
        *died += 1;
        if *died < MAX_DEATHS_PER_CELL {
            continue;
        }
        // The same cell took the guest down every time: that is its result.
        let position = cells.iter().position(|c| c.id == current).expect("pending");
        let cell = cells.remove(position);
        let verdict = match (kernel_crash(&outcome.console), &outcome.end) {
            (Some(crash), _) => Classified::new(Verdict::Crash, format!("kernel: {crash}")),
            (None, BootEnd::DeadlineExceeded { .. }) => Classified::new(
                Verdict::Timeout,
                "guest stopped responding during the cell (killed at the deadline)",
            ),
            (None, end) => {
                Classified::new(Verdict::Crash, format!("guest died: {}", describe_end(end)))
            }
        };
        let mut record = CellRecord::without_guest(&cell, verdict);
        fill_guest_fields(
            &mut record,
            &guest,
            &outcome,
            &console_rel,
            attempts[&cell.id],
        );
        let _ = results.send(record);
    }
}

fn fill_guest_fields(
    record: &mut CellRecord,
    guest: &GuestView,
    outcome: &BootOutcome,
    console_rel: &str,
    attempts: u32,
) {
    if let Some((release, facts)) = &guest.hello {
        record.kernel_release = Some(release.clone());
        record.facts = facts.clone();
    }
    record.attempts = attempts;
    record.backend = Some(outcome.backend.clone());
    record.console_log = Some(console_rel.to_string());
}

/// One probe's result as the agent reported it.
struct ReportedProbe {
    probe_id: String,
    end: ProcessEnd,
    stdout: String,
    stderr: String,
    duration_ms: u64,
}

/// What the guest reported during one boot, indexed by cell.
#[derive(Default)]
struct GuestView {
    hello: Option<(String, BTreeMap<String, String>)>,
    probes: BTreeMap<String, Vec<ReportedProbe>>,
    done: BTreeSet<String>,
    /// A cell that started and never finished.
    in_progress: Option<String>,
}

impl GuestView {
    fn from_events(events: &[GuestEvent]) -> GuestView {
        let mut view = GuestView::default();
        for event in events {
            match event {
                GuestEvent::Hello {
                    kernel_release,
                    facts,
                } => view.hello = Some((kernel_release.clone(), facts.clone())),
                GuestEvent::CellStart { cell_id } => view.in_progress = Some(cell_id.clone()),
                GuestEvent::ProbeDone {
                    cell_id,
                    probe_id,
                    end,
                    stdout,
                    stderr,
                    duration_ms,
                } => view
                    .probes
                    .entry(cell_id.clone())
                    .or_default()
                    .push(ReportedProbe {
                        probe_id: probe_id.clone(),
                        end: end.clone(),
                        stdout: stdout.clone(),
                        stderr: stderr.clone(),
                        duration_ms: *duration_ms,
                    }),
                GuestEvent::CellDone { cell_id } => {
                    view.done.insert(cell_id.clone());
                    view.in_progress = None;
                }
                GuestEvent::Done => {}
            }
        }
        view
    }
}

fn classify_cell_probes(
    cell: &Cell,
    reported: &[ReportedProbe],
    signatures: &[Signature],
) -> Vec<ProbeRecord> {
    cell.probes
        .iter()
        .map(
            |probe| match reported.iter().find(|r| r.probe_id == probe.probe_id) {
                Some(r) => {
                    let classified =
                        classify_probe(probe, signatures, &r.end, &r.stdout, &r.stderr);
                    ProbeRecord {
                        probe_id: probe.probe_id.clone(),
                        verdict: classified.verdict,
                        signature: classified.signature,
                        exit: describe_process_end(&r.end),
                        stdout: r.stdout.clone(),
                        stderr: r.stderr.clone(),
                        duration_ms: r.duration_ms,
                    }
                }
                None => ProbeRecord {
                    probe_id: probe.probe_id.clone(),
                    verdict: Verdict::InfraError,
                    signature: "the agent reported no result for this probe".into(),
                    exit: "none".into(),
                    stdout: String::new(),
                    stderr: String::new(),
                    duration_ms: 0,
                },
            },
        )
        .collect()
}

fn describe_process_end(end: &ProcessEnd) -> String {
    match end {
        ProcessEnd::Exited { code } => format!("exit {code}"),
        ProcessEnd::Signaled { signal } => format!("signal {signal}"),
        ProcessEnd::TimedOut => "timed out".into(),
        ProcessEnd::SpawnFailed { error } => format!("not started: {error}"),
    }
}

fn describe_end(end: &BootEnd) -> String {
    match end {
        BootEnd::Completed => "completed".into(),
        BootEnd::GuestDied { detail } => format!("guest died ({detail})"),
        BootEnd::DeadlineExceeded { waiting_for } => {
            format!("deadline exceeded waiting for {waiting_for}")
        }
        BootEnd::Interrupted => "interrupted".into(),
        BootEnd::BackendFailed { detail } => format!("backend failed: {detail}"),
    }
}

fn job_for(cells: &[Cell], modules: &[String]) -> Job {
    Job {
        entropy_seed_hex: entropy_seed(),
        modules: modules.to_vec(),
        cells: cells
            .iter()
            .map(|cell| JobCell {
                cell_id: cell.id.clone(),
                probes: cell
                    .probes
                    .iter()
                    .map(|p| JobProbe {
                        probe_id: p.probe_id.clone(),
                        argv: p.argv.clone(),
                        env: p.env.clone(),
                        timeout_ms: p.timeout_ms,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn entropy_seed() -> String {
    let mut bytes = [0u8; 64];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = random.read_exact(&mut bytes);
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BootOutcome;
    use std::sync::atomic::AtomicUsize;

    /// A backend whose guest fails every probe on its first boot and passes
    /// afterwards: what a flaky cell looks like from the runner's side.
    struct FlakyGuest {
        boots: AtomicUsize,
    }

    impl Backend for FlakyGuest {
        fn name(&self) -> String {
            "scripted".into()
        }

        fn boot(
            &self,
            request: &BootRequest,
            on_event: &mut dyn FnMut(&GuestEvent),
        ) -> BootOutcome {
            let first = self.boots.fetch_add(1, Ordering::SeqCst) == 0;
            let mut events = vec![GuestEvent::Hello {
                kernel_release: "9.9.9-scripted".into(),
                facts: BTreeMap::new(),
            }];
            for cell in &request.job.cells {
                events.push(GuestEvent::CellStart {
                    cell_id: cell.cell_id.clone(),
                });
                for probe in &cell.probes {
                    events.push(GuestEvent::ProbeDone {
                        cell_id: cell.cell_id.clone(),
                        probe_id: probe.probe_id.clone(),
                        end: ProcessEnd::Exited {
                            code: if first { 1 } else { 0 },
                        },
                        stdout: if first { String::new() } else { "ok".into() },
                        stderr: if first {
                            "connection refused".into()
                        } else {
                            String::new()
                        },
                        duration_ms: 1,
                    });
                }
                events.push(GuestEvent::CellDone {
                    cell_id: cell.cell_id.clone(),
                });
            }
            events.push(GuestEvent::Done);
            for event in &events {
                on_event(event);
            }
            BootOutcome {
                events,
                console: String::new(),
                console_path: request.log_dir.join("console.log"),
                end: BootEnd::Completed,
                backend: self.name(),
            }
        }
    }

    fn cell(id: &str) -> Cell {
        Cell {
            id: id.into(),
            scenario: "s".into(),
            component: "c".into(),
            version: "v1".into(),
            variant: "baseline".into(),
            kernel: "k".into(),
            artifacts: vec!["/kmatrix/bin/r".into()],
            modules: Vec::new(),
            kernel_args: Vec::new(),
            probes: vec![crate::plan::CellProbe {
                probe_id: "p".into(),
                argv: vec!["/kmatrix/bin/r".into()],
                env: BTreeMap::new(),
                timeout_ms: 1000,
                pass_exit_code: 0,
                pass_stdout: None,
                unavailable_exit_code: None,
            }],
        }
    }

    #[test]
    fn a_cell_that_fails_then_passes_is_flaky_with_counts() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FlakyGuest {
            boots: AtomicUsize::new(0),
        };
        let kernel = KernelArtifact {
            id: "k".into(),
            image: dir.path().join("vmlinuz"),
            modules: None,
            origin: "scripted".into(),
        };
        let (reproducers, signatures, rootfs) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let progress = Progress::new(2);
        let interrupted = Arc::new(AtomicBool::new(false));
        let fleet = Fleet {
            backend: &backend,
            agent: dir.path(),
            reproducers: &reproducers,
            rootfs: &rootfs,
            signatures: &signatures,
            progress: &progress,
            interrupted: &interrupted,
            jobs: 1,
            run_dir: dir.path(),
        };
        let cells: BTreeMap<String, Cell> = [cell("one"), cell("two")]
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut store = ResultsStore::open(&dir.path().join("out")).unwrap();
        let mut failed = Vec::new();
        let work = KernelWork {
            kernel: kernel.clone(),
            kernel_args: Vec::new(),
            cells: cells.values().cloned().collect(),
        };
        fleet
            .run(vec![work], "boots", |record| {
                failed.push(record.clone());
                store.add(record)
            })
            .unwrap();
        assert!(failed.iter().all(|r| r.verdict == Verdict::Fail));
        let kernels = BTreeMap::from([("k".to_string(), Ok(kernel))]);
        retry_failures(&fleet, 3, failed, &cells, &kernels, &mut store).unwrap();
        let records: Vec<&CellRecord> = store.records().collect();
        assert_eq!(records.len(), 2);
        for record in records {
            assert_eq!(record.verdict, Verdict::Flaky);
            assert_eq!(
                record.runs,
                Some(RunCounts {
                    passed: 1,
                    failed: 1
                })
            );
            assert_eq!(record.signature, "exit 1: connection refused");
        }
        assert_eq!(
            backend.boots.load(Ordering::SeqCst),
            2,
            "one retry round was enough"
        );
    }
}
