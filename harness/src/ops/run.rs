//! `kmatrix run`: plan → provision → run (events) → results → reports. The
//! work happens on one thread and sends events; this thread hands each to
//! the reporters (the display draws, the recorder writes), then writes the
//! reports from what the recorder kept.

use crate::backend::accel::{self, AccelChoice, AccelDecision};
use crate::backend::qemu::QemuBackend;
use crate::events::{Events, RunEvent};
use crate::project::{Planned, Request};
use crate::provision::Provisioner;
use crate::reporter::{Display, Recorder, Reporter};
use crate::results::{read_run_info, ResultsStore};
use crate::runner::{self, RunContext};
use crate::sources::cache::Cache;
use crate::{report, Project};
use anyhow::{bail, Result};
use kmatrix_metadata::{CacheStats, CellRecord, RunInfo, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub request: Request,
    pub out: PathBuf,
    /// Continue a run in `out`, running only the cells it lacks.
    pub resume: bool,
    pub jobs: usize,
    pub accel: AccelChoice,
    pub locked: bool,
    /// Rerun failing cells up to this many times to tell flaky from failing.
    pub retries: u32,
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
}

/// What the working thread hands back.
struct Worked {
    planned: usize,
    already_done: usize,
    decision: AccelDecision,
    info: RunInfo,
    planned_inputs: Planned,
}

pub fn run(
    project: &Project,
    cache_root: &Path,
    options: &RunOptions,
    interrupted: Arc<AtomicBool>,
) -> Result<RunSummary> {
    let started = SystemTime::now();
    let planned = project.plan(&options.request)?;
    let store = ResultsStore::open(&options.out)?;
    let existing = store.records().count();
    if existing > 0 && !options.resume {
        bail!(
            "{} already holds {existing} finished cells; continue it with `kmatrix run --resume {}` or choose another --out",
            options.out.display(),
            options.out.display()
        );
    }
    let held: BTreeSet<String> = planned
        .cells
        .iter()
        .map(|c| c.id.to_string())
        .filter(|id| store.holds_result(id))
        .collect();
    let torn = store.torn_warning();
    let earlier = read_run_info(&options.out).filter(|_| options.resume);

    let (sender, receiver) = mpsc::channel();
    let events = Events::new(sender);
    if let Some(warning) = torn {
        events.note(warning);
    }
    let mut display = Display::new();
    let mut recorder = Recorder::new(store);
    let worked = std::thread::scope(|scope| -> Result<Worked> {
        let worker = scope.spawn({
            let events = events.clone();
            let interrupted = interrupted.clone();
            move || {
                work(
                    planned,
                    cache_root,
                    options,
                    &held,
                    earlier,
                    started,
                    events,
                    interrupted,
                )
            }
        });
        drop(events);
        let mut failure = None;
        for event in receiver {
            display.report(&event)?;
            if failure.is_none() {
                if let Err(e) = recorder.report(&event) {
                    // Results can no longer be kept: stop the VMs, keep what is on disk.
                    interrupted.store(true, Ordering::SeqCst);
                    failure = Some(e);
                }
            }
        }
        let worked = worker.join().expect("the run's worker does not panic")?;
        match failure {
            Some(e) => Err(e),
            None => Ok(worked),
        }
    })?;

    let records: Vec<CellRecord> = recorder.store().records().cloned().collect();
    let baseline = project
        .baseline_cells()
        .map(|old| crate::diff::diff(&old, &records, false));
    report::write_all(
        &options.out,
        &report::ReportInput {
            records: &records,
            scenarios: &worked.planned_inputs.scenarios,
            catalog: &worked.planned_inputs.catalog,
            run: Some(&worked.info),
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
        planned: worked.planned,
        already_done: worked.already_done,
        counts,
        interrupted: interrupted.load(Ordering::SeqCst),
        accel: worked.decision,
        cache: worked.info.cache,
        records,
    })
}

/// Provisions, plans for good, chooses the accelerator, and runs; every
/// step goes out as events.
#[allow(clippy::too_many_arguments)]
fn work(
    planned: Planned,
    cache_root: &Path,
    options: &RunOptions,
    held: &BTreeSet<String>,
    earlier: Option<RunInfo>,
    started: SystemTime,
    events: Events,
    interrupted: Arc<AtomicBool>,
) -> Result<Worked> {
    let cache = Cache::open(cache_root)?.watched_by(events.clone());
    let provisioner = Provisioner::new(&cache, &planned.catalog, options.locked, events.clone())?;
    let mut provisioned = provisioner.prepare(&planned.scenarios, &planned.cells)?;
    // Planned again: provisioning may pin new checksums in the lock file,
    // and cell ids hash the lock, so the ids that count come after it.
    let cells = planned.replan(&provisioner.lock_snapshot())?;
    let total = cells.len();
    let pending: Vec<_> = cells
        .into_iter()
        .filter(|c| !held.contains(c.id.as_str()))
        .collect();
    let already_done = total - pending.len();
    events.send(RunEvent::RunStarted {
        planned: total,
        already_done,
        to_run: pending.len(),
        out: options.out.display().to_string(),
    });
    provisioner.add_rootfs(&mut provisioned, &planned.scenarios, &pending);

    let first_kernel = pending
        .iter()
        .filter(|c| provisioned.missing_for(c).is_none())
        .find_map(|c| provisioned.kernels.get(&c.kernel)?.as_ref().ok());
    let decision = match first_kernel {
        Some(kernel) => {
            let decision = events.step("choosing KVM or TCG", || -> Result<AccelDecision> {
                Ok(accel::decide(options.accel, cache.root(), || {
                    accel::probe_kvm(
                        kernel,
                        &provisioned.agent,
                        &options.out.join("boots").join("kvm-probe"),
                        interrupted.clone(),
                    )
                }))
            })?;
            events.send(RunEvent::AcceleratorChosen {
                accel: decision.accel.clone(),
                reason: decision.reason.clone(),
            });
            decision
        }
        None => AccelDecision {
            accel: "none".into(),
            reason: "no cell needed a guest".into(),
        },
    };
    // A resumed run keeps when it first started, and the accelerator it
    // used when this part boots nothing.
    let (accel, accel_reason) = match (&earlier, first_kernel.is_none()) {
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
    events.send(RunEvent::RunInfo(run_info(None)));

    let backend = QemuBackend::new(decision.accel(), interrupted.clone());
    let context = RunContext {
        backend: &backend,
        provisioned: &provisioned,
        signatures: planned
            .scenarios
            .iter()
            .map(|s| (s.id.clone(), s.signatures.clone()))
            .collect(),
        run_dir: options.out.clone(),
        boots_dir: options.out.join("boots"),
        jobs: options.jobs,
        events: events.clone(),
        interrupted: &interrupted,
    };
    runner::run(pending, options.retries, &context);

    let was_interrupted = interrupted.load(Ordering::SeqCst);
    let info = run_info((!was_interrupted).then(SystemTime::now));
    events.send(RunEvent::RunInfo(info.clone()));
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
