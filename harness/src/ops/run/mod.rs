//! `kmatrix run`: plan → provision → run (events) → results → reports. The
//! work happens on one thread and sends events; this thread hands each to
//! the reporters (the display draws, the recorder writes), then writes the
//! reports from what the recorder kept.

mod info;
mod scratch;

use crate::cancel::Cancel;
use info::{finish_info, info_at_start, RunStart};

use crate::backend::accel::{self, AccelChoice, AccelDecision};
use crate::backend::machine::stop_stale_boots;
use crate::backend::set::{BackendSet, BackendSettings};
use crate::diagnostic::FileError;
use crate::events::{Events, RunEvent};
use crate::plan::Cell;
use crate::project::{Planned, Request};
use crate::provision::{
    ClusterKind, Emulator, EmulatorChoice, Environment, KernelArtifact, Provisioned, Provisioner,
};
use crate::reporter::{Display, Recorder, Reporter};
use crate::results::{ResultsStore, RUN_FILE};
use crate::runner::{self, RunContext};
use crate::sources::cache::Cache;
use crate::{report, Project};
use anyhow::{Context, Result};
use kmatrix_metadata::{CacheStats, CellRecord, ContainerEngine, ResumeEntry, RunInfo, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What to run; with `resume`, options that narrow the resumed run.
    pub request: Request,
    pub out: PathBuf,
    /// Continue the run in `out`: the selection it was started with, less
    /// the cells it already holds.
    pub resume: bool,
    pub jobs: usize,
    pub accel: AccelChoice,
    pub locked: bool,
    /// Rerun failing cells up to this many times to tell flaky from failing
    /// (`None`: 0, or what a resumed run was started with).
    pub retries: Option<u32>,
    pub emulator: EmulatorChoice,
    /// Keep each boot's initramfs in its log folder (`kmatrix repro`).
    pub keep_initramfs: bool,
    /// Run only these cells of the selection now; the others stay to do,
    /// as in an interrupted run (`kmatrix bisect` runs one point at a time
    /// of the axis it records as the run's selection).
    pub only: Option<BTreeSet<String>>,
    /// `kmatrix shell`: boot the selected cell's guest with a shell on the
    /// terminal instead of running it (one cell, a QEMU kernel).
    pub shell: bool,
}

impl RunOptions {
    /// A one-off run a command makes for the user (exec, shell, repro): a
    /// new run in `out`, one boot at a time, no retries, pins added as any
    /// first use adds them.
    pub fn ad_hoc(
        request: Request,
        out: PathBuf,
        accel: AccelChoice,
        emulator: EmulatorChoice,
    ) -> RunOptions {
        RunOptions {
            request,
            out,
            resume: false,
            jobs: 1,
            accel,
            locked: false,
            retries: Some(0),
            emulator,
            keep_initramfs: false,
            only: None,
            shell: false,
        }
    }
}

#[derive(Debug)]
pub struct RunSummary {
    pub out: PathBuf,
    pub planned: usize,
    pub already_done: usize,
    pub counts: BTreeMap<Verdict, usize>,
    pub interrupted: bool,
    pub accel: AccelDecision,
    pub cache: CacheStats,
    pub records: Vec<CellRecord>,
    pub info: RunInfo,
}

/// What the working thread hands back.
struct Worked {
    planned: usize,
    already_done: usize,
    decision: AccelDecision,
    info: RunInfo,
    planned_inputs: Planned,
}

/// The run as it starts: what was planned and what an earlier part left.
struct Start {
    planned: Planned,
    /// The project's root, recorded in run.json for `--resume` from elsewhere.
    project_root: PathBuf,
    retries: u32,
    earlier: Option<RunInfo>,
    resume_entry: Option<ResumeEntry>,
}

pub fn run(
    project: &Project,
    cache_root: &Path,
    options: &RunOptions,
    interrupted: Cancel,
) -> Result<RunSummary> {
    let started = SystemTime::now();
    // A run refused on its input leaves no folder it made behind.
    let made_out = !options.out.exists();
    let store = ResultsStore::open(&options.out)?;
    let existing = store.records().count();
    if existing > 0 && !options.resume {
        // Bad input (exit 2), like any other option that cannot be taken.
        return Err(crate::diagnostic::FileError::whole_file(
            &options.out,
            format!("already holds {existing} finished cells"),
            format!(
                "continue it with `kmatrix run --resume {}`, or choose another --out",
                options.out.display()
            ),
        )
        .into());
    }
    let start = plan_the_run(project, options, started).inspect_err(|_| {
        if made_out {
            let _ = std::fs::remove_dir_all(&options.out);
        }
    })?;
    let held: BTreeSet<String> = start
        .planned
        .cells
        .iter()
        .map(|c| c.id.to_string())
        .filter(|id| store.holds_result(id))
        .collect();

    let (sender, receiver) = mpsc::channel();
    let events = Events::new(sender);
    if let Some(warning) = store.torn_warning() {
        events.note(warning);
    }
    for stale in stop_stale_boots(&options.out) {
        events.note(format!(
            "note: a boot of an earlier run was still running and was stopped: {stale}"
        ));
    }
    let mut display = Display::new();
    let mut recorder = Recorder::new(store);
    let worked = std::thread::scope(|scope| -> Result<Worked> {
        let worker = scope.spawn({
            let events = events.clone();
            let interrupted = interrupted.clone();
            move || {
                work(
                    start,
                    cache_root,
                    options,
                    &held,
                    started,
                    events,
                    interrupted,
                )
            }
        });
        drop(events);
        let failure = pump(receiver, &mut display, &mut recorder, &interrupted)?;
        let worked = worker.join().expect("the run's worker does not panic");
        match failure {
            Some(e) => Err(e.context(format!(
                "the run stopped: results can no longer be written to {} (the cells finished before are kept there; free space and `kmatrix run --resume {}`)",
                options.out.display(),
                options.out.display()
            ))),
            None => worked,
        }
    })?;

    let records: Vec<CellRecord> = recorder.store().records().cloned().collect();
    write_reports(project, options, &records, &worked)?;
    Ok(RunSummary {
        out: options.out.clone(),
        planned: worked.planned,
        already_done: worked.already_done,
        counts: records.iter().fold(BTreeMap::new(), |mut counts, r| {
            *counts.entry(r.verdict).or_insert(0) += 1;
            counts
        }),
        interrupted: interrupted.is_cancelled(),
        accel: worked.decision,
        cache: worked.info.cache,
        records,
        info: worked.info,
    })
}

/// Plans what the run covers. A resume plans the selection `run.json`
/// kept, narrowed by any options given with `--resume`.
fn plan_the_run(project: &Project, options: &RunOptions, started: SystemTime) -> Result<Start> {
    let run_json = options.out.join(RUN_FILE);
    let earlier = if options.resume {
        read_run_info_strict(&run_json)?
    } else {
        None
    };
    let Some(selection) = earlier.as_ref().and_then(|e| e.selection.clone()) else {
        // A new run (or one started by a kmatrix that kept no selection).
        return Ok(Start {
            planned: project.plan(&options.request)?,
            project_root: project.canonical_root(),
            retries: options.retries.unwrap_or(0),
            resume_entry: options.resume.then(|| ResumeEntry {
                at: rfc3339(started),
                command: std::env::args().collect(),
                narrowed_to: None,
            }),
            earlier,
        });
    };
    let original = Request::from_selection(&selection, &run_json)?;
    let given = &options.request;
    given.same_kubernetes_as(&original, &run_json)?;
    let mut planned = project.plan(&original)?;
    let narrows = !(given.scenarios.is_empty()
        && given.kernels.is_empty()
        && given.selection.variants.is_empty()
        && given.selection.versions.is_empty()
        && given.selection.cells.is_empty()
        && given.selection.shard.is_none());
    if narrows {
        // Kernel ids are checked against the catalog before against the run.
        planned.catalog.kernel_ids_from(&given.kernels)?;
        planned.narrow(given, &run_json)?;
    }
    let retries = options.retries.unwrap_or(selection.retries);
    Ok(Start {
        planned,
        project_root: project.canonical_root(),
        retries,
        resume_entry: Some(ResumeEntry {
            at: rfc3339(started),
            command: std::env::args().collect(),
            narrowed_to: (narrows || options.retries.is_some())
                .then(|| given.to_selection(retries)),
        }),
        earlier,
    })
}

/// `run.json` of a run to resume: absent is `None`; damaged is bad input.
fn read_run_info_strict(path: &Path) -> Result<Option<RunInfo>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        FileError {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: format!("not a kmatrix run.json: {e}"),
            fix: "restore it from the run's artifacts; without it the run's selection is unknown (start a new run with --out)".into(),
            excerpt: text.lines().nth(e.line().saturating_sub(1)).map(str::to_string),
        }
        .into()
    })
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Hands each event of the worker to the display and the recorder. When
/// results can no longer be written the run is stopped (the VMs go, what is
/// on disk stays) and the recorder's error returned.
fn pump(
    receiver: mpsc::Receiver<RunEvent>,
    display: &mut Display,
    recorder: &mut Recorder,
    interrupted: &Cancel,
) -> Result<Option<anyhow::Error>> {
    let mut failure = None;
    for event in receiver {
        display.report(&event)?;
        if failure.is_none() {
            if let Err(e) = recorder.report(&event) {
                interrupted.cancel();
                failure = Some(e);
            }
        }
    }
    Ok(failure)
}

/// Every report of the run, against the project's baseline.
fn write_reports(
    project: &Project,
    options: &RunOptions,
    records: &[CellRecord],
    worked: &Worked,
) -> Result<()> {
    let baseline = project
        .baseline_cells()
        .map(|old| crate::diff::diff(&old, records, false));
    report::write_all(
        &options.out,
        &report::ReportInput {
            records,
            scenarios: &worked.planned_inputs.scenarios,
            catalog: &worked.planned_inputs.catalog,
            run: Some(&worked.info),
            run_dir: Some(&options.out),
            baseline: baseline.as_ref(),
            baseline_name: Some(crate::results::run_label(
                &project.baseline_dir(),
                &project.root,
            )),
        },
    )?;
    Ok(())
}

/// Provisions, plans for good, chooses the accelerator, and runs; every
/// step goes out as events.
fn work(
    start: Start,
    cache_root: &Path,
    options: &RunOptions,
    held: &BTreeSet<String>,
    started: SystemTime,
    events: Events,
    interrupted: Cancel,
) -> Result<Worked> {
    let Start {
        planned,
        project_root,
        retries,
        earlier,
        resume_entry,
    } = start;
    let cache = Cache::open(cache_root)?.watched_by(events.clone());
    let Prepared {
        emulator,
        boots_guests,
        provisioned,
        total,
        already_done,
        pending,
        shell,
    } = prepare(&planned, &cache, options, held, &events)?;
    let scratch = scratch::make()?;
    let first_kernel = provisioned.first_kernel(&pending);
    if first_kernel.is_some() {
        scratch::check_free_space(&options.out, scratch.path(), &provisioned)?;
    }
    let decision = choose_accel(first_kernel, options, &cache, &events, |kernel| {
        accel::probe_kvm(
            &emulator,
            kernel,
            &provisioned.agent,
            &options.out.join("boots").join("kvm-probe"),
            interrupted.clone(),
        )
    })?;
    let mut info = info_at_start(
        earlier,
        resume_entry,
        &decision,
        first_kernel.is_some(),
        &RunStart {
            project_root: &project_root,
            started,
            options,
            retries,
            emulator: boots_guests.then_some(&emulator),
        },
    );
    info.cache = cache.stats();
    if let Some(engine) = container_engine(&provisioned, &pending) {
        info.container_engine = Some(engine);
    }
    if let Some(kubernetes) = kubernetes_release(&provisioned, &pending) {
        info.kubernetes = Some(kubernetes);
    }
    events.send(RunEvent::RunInfo(Box::new(info.clone())));

    let built = BackendSet::build(BackendSettings {
        emulator,
        accel: decision.accel(),
        run_dir: options.out.clone(),
        scratch: scratch.path().to_path_buf(),
        keep_initramfs: options.keep_initramfs,
        interactive: options.shell,
        interrupted: interrupted.clone(),
    });
    let context = RunContext {
        backends: built.backends(),
        provisioned: &provisioned,
        signatures: planned.signatures(),
        run_dir: options.out.clone(),
        boots_dir: options.out.join("boots"),
        scratch: scratch.path().to_path_buf(),
        jobs: options.jobs,
        durations: runner::schedule::Durations::read(cache.root()),
        events: events.clone(),
        interrupted: &interrupted,
        shell,
    };
    let stats = runner::run(pending, retries, &context);
    runner::schedule::Durations::remember(cache.root(), &stats);
    let was_interrupted = interrupted.is_cancelled();
    finish_info(&mut info, stats, &cache, started, was_interrupted);
    events.send(RunEvent::RunInfo(Box::new(info.clone())));
    events.send(RunEvent::RunFinished {
        interrupted: was_interrupted,
    });
    Ok(Worked {
        planned: total,
        already_done,
        decision,
        info,
        planned_inputs: planned,
    })
}

/// What the run's cells need, provisioned (each missing part named on
/// the cells it affects), and the cells still to run.
struct Prepared {
    emulator: Emulator,
    /// Whether any planned cell runs in a QEMU guest.
    boots_guests: bool,
    provisioned: Provisioned,
    total: usize,
    already_done: usize,
    pending: Vec<Cell>,
    /// `kmatrix shell`: the busybox root laid under the guest.
    shell: Option<PathBuf>,
}

fn prepare(
    planned: &Planned,
    cache: &Cache,
    options: &RunOptions,
    held: &BTreeSet<String>,
    events: &Events,
) -> Result<Prepared> {
    let provisioner = Provisioner::new(cache, &planned.catalog, options.locked, events.clone())?;
    let boots_guests = planned
        .cells
        .iter()
        .any(|c| planned.catalog.kernel(&c.kernel).source.boots_a_guest());
    let emulator = match boots_guests {
        true => {
            let emulator = events.step("emulator", || provisioner.emulator(&options.emulator))?;
            events.note(format!(
                "emulator: {} ({})",
                emulator.version, emulator.origin
            ));
            emulator
        }
        false => Emulator::unused(),
    };
    let mut provisioned = provisioner.prepare(&planned.scenarios, &planned.cells)?;
    // Planned again: provisioning may pin new checksums in the lock file,
    // and cell ids hash the lock, so the ids that count come after it.
    let cells = planned.replan(&provisioner.lock_snapshot())?;
    let total = cells.len();
    let (already_done, pending) = still_to_run(cells, held, options.only.as_ref());
    events.send(RunEvent::RunStarted {
        planned: total,
        already_done,
        to_run: pending.len(),
        out: options.out.display().to_string(),
    });
    provisioner.add_rootfs(&mut provisioned, &planned.scenarios, &pending);
    provisioner.add_boot_images(&mut provisioned, &pending);

    let shell = match options.shell {
        true => Some(events.step("busybox for the shell", || {
            provisioner.rootfs(&super::shell::tools())
        })?),
        false => None,
    };
    Ok(Prepared {
        emulator,
        boots_guests,
        provisioned,
        total,
        already_done,
        pending,
        shell,
    })
}

/// KVM or TCG, when a kernel is to boot (its test guest run under KVM
/// first, `probe`); said as an event.
fn choose_accel(
    first_kernel: Option<&KernelArtifact>,
    options: &RunOptions,
    cache: &Cache,
    events: &Events,
    probe: impl Fn(&KernelArtifact) -> Result<(), String>,
) -> Result<AccelDecision> {
    let Some(kernel) = first_kernel else {
        return Ok(AccelDecision {
            accel: None,
            reason: "no cell needed a guest".into(),
        });
    };
    let decision = events.step("choosing KVM or TCG", || -> Result<AccelDecision> {
        Ok(accel::decide(options.accel, cache.root(), || probe(kernel)))
    })?;
    events.send(RunEvent::AcceleratorChosen {
        accel: decision.name().into(),
        reason: decision.reason.clone(),
    });
    Ok(decision)
}

/// Of the planned `cells`: how many the run folder already holds, and the
/// ones to run now (`only`: of those, just these; the rest stay to do).
fn still_to_run(
    cells: Vec<Cell>,
    held: &BTreeSet<String>,
    only: Option<&BTreeSet<String>>,
) -> (usize, Vec<Cell>) {
    let total = cells.len();
    let pending: Vec<Cell> = cells
        .into_iter()
        .filter(|c| !held.contains(c.id.as_str()))
        .collect();
    let already_done = total - pending.len();
    let now = pending
        .into_iter()
        .filter(|c| only.is_none_or(|only| only.contains(c.id.as_str())))
        .collect();
    (already_done, now)
}

/// The first answer `what` gives for the environment of one of `pending`.
fn first_environment<T>(
    provisioned: &Provisioned,
    pending: &[Cell],
    what: impl Fn(&Environment) -> Option<T>,
) -> Option<T> {
    pending
        .iter()
        .find_map(|cell| what(provisioned.environments.get(&cell.kernel)?.as_ref().ok()?))
}

/// The container engine the pending cells run on, as run.json records it.
fn container_engine(provisioned: &Provisioned, pending: &[Cell]) -> Option<ContainerEngine> {
    first_environment(provisioned, pending, |environment| match environment {
        Environment::Engine { facts, .. } => Some(facts.clone()),
        Environment::Kernel(_) | Environment::Cluster { .. } => None,
    })
}

/// The Kubernetes of the first of `pending` that runs on a cluster.
fn kubernetes_release(provisioned: &Provisioned, pending: &[Cell]) -> Option<String> {
    first_environment(provisioned, pending, |environment| match environment {
        Environment::Cluster { cluster, .. } => Some(match cluster {
            ClusterKind::Local(parts) => parts.version.clone(),
            ClusterKind::Guest(guest) => guest.parts.version.clone(),
            ClusterKind::Kind { node_image, .. } => format!("kind node image {node_image}"),
        }),
        Environment::Kernel(_) | Environment::Engine { .. } => None,
    })
}

/// This process's peak resident memory (`VmHWM`), children not counted.
fn peak_rss_kib() -> Option<u64> {
    crate::files::proc_kib(&fs::read_to_string("/proc/self/status").ok()?, "VmHWM")
}
