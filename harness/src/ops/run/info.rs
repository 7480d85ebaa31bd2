//! `run.json` of a run: made when a part of the run starts (a new run, or
//! a resumed one keeping what it had), and completed when the part ends.

use super::{peak_rss_kib, rfc3339, RunOptions};
use crate::backend::accel::AccelDecision;
use crate::provision::Emulator;
use crate::sources::cache::Cache;
use kmatrix_metadata::{BootStats, CacheStats, ResumeEntry, RunInfo};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// What `run.json` says of a run when it starts.
pub(super) struct RunStart<'a> {
    pub project_root: &'a Path,
    pub started: SystemTime,
    pub options: &'a RunOptions,
    pub retries: u32,
    /// The emulator, when this part boots guests.
    pub emulator: Option<&'a Emulator>,
}

/// `run.json` at the start of this part of the run: a new run's, or a
/// resumed one's, which keeps its first start, its command and selection,
/// and the accelerator it used when this part boots nothing.
pub(super) fn info_at_start(
    earlier: Option<RunInfo>,
    resume_entry: Option<ResumeEntry>,
    decision: &AccelDecision,
    boots_now: bool,
    start: &RunStart,
) -> RunInfo {
    let mut info = match earlier {
        Some(mut info) => {
            if boots_now {
                info.accel = decision.name().into();
                info.accel_reason = decision.reason.clone();
            }
            info.resumes.extend(resume_entry);
            info.project
                .get_or_insert(start.project_root.display().to_string());
            info
        }
        None => RunInfo {
            harness_version: env!("CARGO_PKG_VERSION").into(),
            started: rfc3339(start.started),
            finished: None,
            accel: decision.name().into(),
            accel_reason: decision.reason.clone(),
            cache: CacheStats::default(),
            command: std::env::args().collect(),
            project: Some(start.project_root.display().to_string()),
            selection: Some(start.options.request.to_selection(start.retries)),
            resumes: Vec::new(),
            emulator: None,
            emulator_origin: None,
            boots: BTreeMap::new(),
            container_engine: None,
            harness_peak_rss_kib: None,
            wall_ms: None,
            kubernetes: None,
        },
    };
    info.harness_version = env!("CARGO_PKG_VERSION").into();
    info.finished = None;
    // A resume that boots no guest keeps the emulator the run used.
    let unused = Emulator::unused();
    let emulator = match start.emulator {
        Some(emulator) => Some(emulator),
        None if info.emulator.is_none() => Some(&unused),
        None => None,
    };
    if let Some(emulator) = emulator {
        info.emulator = Some(emulator.version.clone());
        info.emulator_origin = Some(emulator.origin.clone());
    }
    info
}

/// `run.json` when this part of the run ends: its boots, the cache's
/// figures, the harness's peak memory and wall time; finished unless
/// interrupted.
pub(super) fn finish_info(
    info: &mut RunInfo,
    stats: BTreeMap<String, BootStats>,
    cache: &Cache,
    started: SystemTime,
    interrupted: bool,
) {
    for (group, more) in stats {
        info.boots.entry(group).or_default().absorb(more);
    }
    info.finished = (!interrupted).then(|| rfc3339(SystemTime::now()));
    info.cache = cache.stats();
    info.harness_peak_rss_kib = peak_rss_kib();
    info.wall_ms = started.elapsed().ok().map(|d| d.as_millis() as u64);
}
