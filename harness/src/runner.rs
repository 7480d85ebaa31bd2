//! The run: plan → provision → boot each kernel once for all its cells (VMs
//! in parallel) → classify → results store → reports. Cells are recorded the
//! moment they finish, so an interrupted run keeps them and `--resume`
//! continues from there.

use crate::accel::{self, AccelChoice, AccelDecision};
use crate::backend::qemu::{boot_dir, QemuBackend};
use crate::backend::{Backend, BootEnd, BootOutcome, BootRequest, GuestFile};
use crate::cache::Cache;
use crate::plan::{self, Cell};
use crate::progress::Progress;
use crate::provision::{KernelArtifact, Provisioner};
use crate::results::{CellRecord, ProbeRecord, ResultsStore, RunInfo};
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
    cells: Vec<Cell>,
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
    let provisional = plan::plan(
        &scenarios,
        &options.kernels,
        &catalog,
        &provisioner.lock_snapshot(),
    )?;
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
            if !provisional.iter().any(|c| c.reproducer_guest_path == guest) {
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

    let cells = plan::plan(
        &scenarios,
        &options.kernels,
        &catalog,
        &provisioner.lock_snapshot(),
    )?;
    let planned = cells.len();
    let pending: Vec<Cell> = cells
        .into_iter()
        .filter(|c| !store.contains(&c.id))
        .collect();
    let already_done = planned - pending.len();
    progress.set_cells(pending.len() as u64);
    progress.note(&format!(
        "{planned} cells planned, {already_done} already in {}, {} to run",
        options.out.display(),
        pending.len()
    ));

    // Cells that cannot boot are recorded now; the rest are grouped by kernel.
    let mut work: BTreeMap<String, KernelWork> = BTreeMap::new();
    for cell in pending {
        let missing = match (
            &kernels[&cell.kernel],
            &reproducers[&cell.reproducer_guest_path],
        ) {
            (Err(why), _) | (_, Err(why)) => Some(why.clone()),
            _ => None,
        };
        match missing {
            Some(why) => {
                let record = CellRecord::without_guest(&cell, why);
                progress.cell_finished(&record);
                store.add(record)?;
            }
            None => {
                let kernel = kernels[&cell.kernel].clone().expect("checked above");
                work.entry(cell.kernel.clone())
                    .or_insert_with(|| KernelWork {
                        kernel,
                        cells: Vec::new(),
                    })
                    .cells
                    .push(cell);
            }
        }
    }

    let decision = match work.values().next() {
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
    let run_info = |finished: Option<SystemTime>| RunInfo {
        harness_version: env!("CARGO_PKG_VERSION").into(),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        finished: finished.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        accel: decision.accel.clone(),
        accel_reason: decision.reason.clone(),
        cache: cache.stats(),
        command: std::env::args().collect(),
    };
    store.write_run_info(&run_info(None))?;

    // Boot kernels in parallel; results flow back to this thread, which alone writes.
    let queue = Mutex::new(work.into_values().collect::<Vec<_>>());
    let (sender, receiver) = mpsc::channel::<CellRecord>();
    let jobs = options.jobs.max(1);
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..jobs {
            let sender = sender.clone();
            let (queue, backend, agent, reproducers, signatures, progress) = (
                &queue,
                &backend,
                &agent,
                &reproducers,
                &signatures,
                &progress,
            );
            let run_dir = options.out.clone();
            let interrupted = interrupted.clone();
            scope.spawn(move || loop {
                let next = queue.lock().expect("queue").pop();
                let Some(kernel_work) = next else { break };
                if interrupted.load(Ordering::SeqCst) {
                    break;
                }
                let files = guest_files(&kernel_work.cells, reproducers);
                run_kernel(
                    backend,
                    kernel_work,
                    &KernelContext {
                        agent,
                        files,
                        signatures,
                        run_dir: &run_dir,
                        progress,
                        interrupted: &interrupted,
                    },
                    &sender,
                );
            });
        }
        drop(sender);
        for record in receiver {
            progress.cell_finished(&record);
            store.add(record)?;
        }
        Ok(())
    })?;
    progress.finish();

    let was_interrupted = interrupted.load(Ordering::SeqCst);
    store.write_run_info(&run_info((!was_interrupted).then(SystemTime::now)))?;
    let records: Vec<CellRecord> = store.records().cloned().collect();
    report::write_all(&options.out, &records, &scenarios, &catalog)?;
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

fn guest_files(
    cells: &[Cell],
    reproducers: &BTreeMap<String, Result<PathBuf, Classified>>,
) -> Vec<GuestFile> {
    cells
        .iter()
        .map(|c| c.reproducer_guest_path.clone())
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
    signatures: &'a BTreeMap<String, Vec<Signature>>,
    run_dir: &'a Path,
    progress: &'a Progress,
    interrupted: &'a AtomicBool,
}

/// Runs every cell of one kernel: one boot for all of them, and more boots
/// only when a guest died. A guest that never comes up twice is an
/// infrastructure error; a cell during which the guest died twice gets the
/// crash (or hang) as its own verdict.
fn run_kernel(
    backend: &dyn Backend,
    work: KernelWork,
    context: &KernelContext,
    results: &mpsc::Sender<CellRecord>,
) {
    let KernelWork { kernel, mut cells } = work;
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
            .join(format!("{}-modules", kernel.id)),
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
            label: format!("{} boot {boot_number}", kernel.id),
            kernel: kernel.clone(),
            agent: context.agent.to_path_buf(),
            files: files.clone(),
            job: job_for(&cells, &module_paths),
            log_dir: boot_dir(context.run_dir, &kernel.id, boot_number),
        };
        let bar = context.progress.vm(&request.label, cells.len() as u64);
        let outcome = backend.boot(&request, &mut |event| {
            if let GuestEvent::CellDone { .. } = event {
                bar.inc(1);
            }
        });
        bar.finish_and_clear();
        if outcome.end == BootEnd::Interrupted {
            break;
        }
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
        if cells.is_empty() {
            break;
        }

        if guest.hello.is_none() {
            failed_boots += 1;
            if failed_boots >= 2 {
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
            if failed_boots >= 2 {
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
        if *died < 2 {
            continue;
        }
        // The same cell took the guest down twice: that is its result.
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
