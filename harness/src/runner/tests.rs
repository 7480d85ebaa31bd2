//! The runner against scripted backends: guests that fail, pass, or die
//! on a schedule, without booting anything.

use super::*;
use crate::backend::{BootEnd, BootOutcome, BootRequest};
use crate::ids::{CellId, KernelId};
use crate::plan::CellProbe;
use crate::provision::{KernelArtifact, Provisioned};
use crate::verdict::Expectation;
use kmatrix_agent::{GuestEvent, ProcessEnd};
use kmatrix_metadata::{RunCounts, Verdict};
use std::sync::atomic::AtomicUsize;

/// A backend whose guest fails every probe on its first boot and passes
/// afterwards: what a flaky cell looks like from the runner's side.
pub(super) struct FlakyGuest {
    pub boots: AtomicUsize,
}

impl Backend for FlakyGuest {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn boot(&self, request: &BootRequest, on_event: &mut dyn FnMut(&GuestEvent)) -> BootOutcome {
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

pub(super) fn cell(id: &str) -> Cell {
    Cell {
        id: CellId::new(id),
        scenario: ScenarioId::new("s"),
        component: "c".into(),
        version: "v1".into(),
        variant: "baseline".into(),
        kernel: KernelId::new("k"),
        artifacts: vec!["/kmatrix/bin/r".into()],
        modules: Vec::new(),
        kernel_args: Vec::new(),
        probes: vec![CellProbe {
            probe_id: "p".into(),
            argv: vec!["/kmatrix/bin/r".into()],
            env: BTreeMap::new(),
            expect: Expectation {
                timeout_ms: 1000,
                pass_exit_code: 0,
                pass_stdout: None,
                unavailable_exit_code: None,
            },
        }],
    }
}

pub(super) fn provisioned(dir: &std::path::Path) -> Provisioned {
    let kernel = KernelArtifact {
        id: KernelId::new("k"),
        image: dir.join("vmlinuz"),
        modules: None,
        origin: "scripted".into(),
    };
    Provisioned {
        agent: dir.join("agent"),
        kernels: BTreeMap::from([(KernelId::new("k"), Ok(kernel))]),
        files: BTreeMap::from([("/kmatrix/bin/r".to_string(), Ok(dir.join("r")))]),
        rootfs: BTreeMap::new(),
    }
}

/// Runs `cells` on `backend` and returns every CellFinished record, in order.
pub(super) fn run_scripted(
    backend: &dyn Backend,
    cells: Vec<Cell>,
    retries: u32,
) -> Vec<CellRecord> {
    let dir = tempfile::tempdir().unwrap();
    let provisioned = provisioned(dir.path());
    let (sender, receiver) = mpsc::channel();
    let interrupted = AtomicBool::new(false);
    let context = RunContext {
        backend,
        provisioned: &provisioned,
        signatures: BTreeMap::new(),
        run_dir: dir.path().to_path_buf(),
        boots_dir: dir.path().join("boots"),
        jobs: 1,
        events: Events::new(sender),
        interrupted: &interrupted,
    };
    run(cells, retries, &context);
    drop(context);
    receiver
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::CellFinished(record) => Some(*record),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cell_that_fails_then_passes_is_flaky_with_counts() {
    let backend = FlakyGuest {
        boots: AtomicUsize::new(0),
    };
    let records = run_scripted(&backend, vec![cell("one"), cell("two")], 3);
    // First each cell's failing run, then the final flaky verdicts.
    assert_eq!(records.len(), 4);
    assert!(records[..2].iter().all(|r| r.verdict == Verdict::Fail));
    for record in &records[2..] {
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

#[test]
fn cells_are_classified_as_the_guest_finishes_them() {
    let backend = FlakyGuest {
        boots: AtomicUsize::new(1),
    };
    let records = run_scripted(&backend, vec![cell("a"), cell("b")], 0);
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.verdict, Verdict::Pass);
        assert_eq!(record.kernel_release.as_deref(), Some("9.9.9-scripted"));
        assert_eq!(record.attempts, 1);
        assert_eq!(record.backend.as_deref(), Some("scripted"));
    }
}
