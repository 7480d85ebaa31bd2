//! What the guest said, turned into cell records as it arrives: each cell
//! is classified the moment its `CellDone` comes in, so a kill a second
//! later still leaves it on disk.

use crate::inputs::scenario::Signature;
use crate::plan::Cell;
use crate::verdict::{aggregate, classify_probe, Classified};
use kmatrix_agent::{GuestEvent, ProcessEnd};
use kmatrix_metadata::{CellRecord, ProbeRecord, Verdict};
use std::collections::{BTreeMap, BTreeSet};

/// A record for a cell that never ran in a guest (or whose run said nothing).
pub fn record_without_guest(cell: &Cell, outcome: Classified) -> CellRecord {
    CellRecord {
        cell_id: cell.id.to_string(),
        scenario: cell.scenario.to_string(),
        component: cell.component.clone(),
        version: cell.version.clone(),
        variant: cell.variant.clone(),
        kernel: cell.kernel.to_string(),
        kernel_release: None,
        verdict: outcome.verdict,
        signature: outcome.signature,
        duration_ms: 0,
        facts: BTreeMap::new(),
        probes: Vec::new(),
        attempts: 0,
        backend: None,
        console_log: None,
        runs: None,
        emulator: None,
        fidelity: Some(cell.fidelity),
        fidelity_note: Some(cell.fidelity_note.clone()),
    }
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
pub struct GuestView {
    /// `uname -r` and the facts, once the agent said hello.
    pub hello: Option<(String, BTreeMap<String, String>)>,
    probes: BTreeMap<String, Vec<ReportedProbe>>,
    pub done: BTreeSet<String>,
    /// A cell that started and has not finished.
    pub in_progress: Option<String>,
    /// When the host saw `in_progress` start.
    started_at: Option<std::time::Instant>,
    /// Each finished cell's wall time, start to end as the host saw them.
    pub cells_ms: BTreeMap<String, u64>,
}

impl GuestView {
    /// Takes in one event; returns the id of a cell it finished.
    pub fn take(&mut self, event: &GuestEvent) -> Option<String> {
        match event {
            GuestEvent::Hello {
                kernel_release,
                facts,
            } => self.hello = Some((kernel_release.clone(), facts.clone())),
            GuestEvent::CellStart { cell_id } => {
                self.in_progress = Some(cell_id.clone());
                self.started_at = Some(std::time::Instant::now());
            }
            GuestEvent::ProbeDone {
                cell_id,
                probe_id,
                end,
                stdout,
                stderr,
                duration_ms,
            } => self
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
                self.done.insert(cell_id.clone());
                self.in_progress = None;
                if let Some(started) = self.started_at.take() {
                    self.cells_ms
                        .insert(cell_id.clone(), started.elapsed().as_millis() as u64);
                }
                return Some(cell_id.clone());
            }
            GuestEvent::Done => {}
        }
        None
    }

    /// The record of a cell the guest finished: each probe classified, the
    /// cell's verdict aggregated from them, the guest's facts attached.
    pub fn classify(&self, cell: &Cell, signatures: &[Signature], boot: &BootFacts) -> CellRecord {
        let reported = self
            .probes
            .get(cell.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let probes: Vec<ProbeRecord> = cell
            .probes
            .iter()
            .map(
                |probe| match reported.iter().find(|r| r.probe_id == probe.probe_id) {
                    Some(r) => {
                        let classified =
                            classify_probe(&probe.expect, signatures, &r.end, &r.stdout, &r.stderr);
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
            .collect();
        let verdict = aggregate(
            &probes
                .iter()
                .map(|p| {
                    (
                        p.probe_id.as_str(),
                        Classified::new(p.verdict, p.signature.clone()),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let outcomes: Vec<Classified> = probes
            .iter()
            .map(|p| Classified::new(p.verdict, p.signature.clone()))
            .collect();
        let needed: Vec<(&str, bool, &Classified)> = cell
            .probes
            .iter()
            .zip(&outcomes)
            .map(|(probe, outcome)| (probe.probe_id.as_str(), probe.expect.needed, outcome))
            .collect();
        let verdict = crate::verdict::needed_missing(&verdict, &needed).unwrap_or(verdict);
        let verdict = self
            .unmounted_artifact(cell)
            .or_else(|| self.absent_module(cell))
            .unwrap_or(verdict);
        let mut record = record_without_guest(cell, verdict);
        record.duration_ms = probes.iter().map(|p| p.duration_ms).sum();
        record.probes = probes;
        self.attach(&mut record, boot);
        record
    }

    /// A module the cell needs that the environment said it lacks and
    /// cannot load (a container on a host kernel built without it): the
    /// cell's probes could not mean anything there, so it is unavailable.
    /// The version's files never reached the guest (their disk did not
    /// mount): whatever the probes said, the component did not run.
    fn unmounted_artifact(&self, cell: &Cell) -> Option<Classified> {
        let (_, facts) = self.hello.as_ref()?;
        if facts.contains_key("environment") {
            // A container: the engine bind-mounts the files, no disk to mount.
            return None;
        }
        let mount = &cell.artifact.as_ref()?.mount;
        let state = facts.get(&format!("disk.{mount}"))?;
        (state != "mounted").then(|| {
            Classified::new(
                Verdict::Unavailable,
                format!(
                    "the version's files could not be mounted in the guest ({state}): the kernel lacks virtio_blk or ext4 (a kernel image of your own: give its modules, --kernel IMAGE,modules=DIR)"
                ),
            )
        })
    }

    fn absent_module(&self, cell: &Cell) -> Option<Classified> {
        let (_, facts) = self.hello.as_ref()?;
        cell.modules.iter().find_map(|module| {
            let state = facts.get(&format!("module.{module}"))?;
            let why = state.strip_prefix("absent: ")?;
            Some(Classified::new(
                Verdict::Unavailable,
                format!("needs kernel module {module}, which this environment lacks ({why})"),
            ))
        })
    }

    /// Fills in what the boot knows of the guest: release, facts, backend, console.
    pub fn attach(&self, record: &mut CellRecord, boot: &BootFacts) {
        if let Some((release, facts)) = &self.hello {
            record.kernel_release = Some(release.clone());
            record.facts = facts.clone();
        }
        record.attempts = boot.attempts;
        record.backend = Some(boot.backend.clone());
        record.emulator = boot.emulator.clone();
        record.console_log = Some(boot.console_log.clone());
    }
}

/// Facts of the boot a record came from.
pub struct BootFacts {
    pub backend: String,
    pub emulator: Option<String>,
    /// Relative to the run directory.
    pub console_log: String,
    pub attempts: u32,
}

fn describe_process_end(end: &ProcessEnd) -> String {
    match end {
        ProcessEnd::Exited { code } => format!("exit {code}"),
        ProcessEnd::Signaled { signal } => format!("signal {signal}"),
        ProcessEnd::TimedOut => "timed out".into(),
        ProcessEnd::SpawnFailed { error } => format!("not started: {error}"),
    }
}
