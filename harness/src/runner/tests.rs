//! The runner against scripted backends: guests that fail, pass, or die
//! on a schedule, without booting anything.

use super::schedule::Durations;
use super::*;
use crate::backend::{Backend, BootEnd, BootOutcome, BootRequest};
use crate::ids::{CellId, KernelId};
use crate::plan::CellProbe;
use crate::provision::{BootImage, Environment, KernelArtifact, Provisioned};
use crate::verdict::Expectation;
use kmatrix_agent::{GuestEvent, ProcessEnd};
use kmatrix_metadata::{BootStats, RunCounts, Verdict};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

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
            ..BootOutcome::starting(request, self.name())
        }
    }
}

pub(crate) fn cell(id: &str) -> Cell {
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
                restart_is_crash: false,
                needed: false,
                fails_on: None,
            },
        }],
        artifact: None,
        kubernetes: None,
        fidelity: kmatrix_metadata::Fidelity::StandIn,
        fidelity_note: String::new(),
    }
}

pub(super) fn provisioned(dir: &std::path::Path) -> Provisioned {
    let kernel = KernelArtifact {
        id: KernelId::new("k"),
        image: dir.join("vmlinuz"),
        modules: None,
        origin: "scripted".into(),
        boot: BootImage::compressed(&dir.join("vmlinuz"), "scripted"),
    };
    Provisioned {
        agent: dir.join("agent"),
        environments: BTreeMap::from([(KernelId::new("k"), Ok(Environment::Kernel(kernel)))]),
        files: BTreeMap::from([("/kmatrix/bin/r".to_string(), Ok(dir.join("r")))]),
        rootfs: BTreeMap::new(),
        artifacts: BTreeMap::new(),
    }
}

/// Runs `cells` on `backend` and returns every CellFinished record, in order.
pub(super) fn run_scripted(
    backend: &dyn Backend,
    cells: Vec<Cell>,
    retries: u32,
) -> Vec<CellRecord> {
    run_with_stats(backend, cells, retries).0
}

/// The same, with the boot statistics the runner returned.
pub(super) fn run_with_stats(
    backend: &dyn Backend,
    cells: Vec<Cell>,
    retries: u32,
) -> (Vec<CellRecord>, BTreeMap<String, BootStats>) {
    let dir = tempfile::tempdir().unwrap();
    let provisioned = provisioned(dir.path());
    let (sender, receiver) = mpsc::channel();
    let interrupted = crate::cancel::Cancel::new();
    let context = RunContext {
        backends: Backends {
            vm: backend,
            container: backend,
            cluster: backend,
        },
        provisioned: &provisioned,
        signatures: BTreeMap::new(),
        run_dir: dir.path().to_path_buf(),
        boots_dir: dir.path().join("boots"),
        scratch: dir.path().join("scratch"),
        jobs: 1,
        durations: Durations::default(),
        events: Events::new(sender),
        interrupted: &interrupted,
        shell: None,
    };
    let stats = run(cells, retries, &context);
    drop(context);
    let records = receiver
        .into_iter()
        .filter_map(|event| match event {
            RunEvent::CellFinished(record) => Some(*record),
            _ => None,
        })
        .collect();
    (records, stats)
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
    let (records, stats) = run_with_stats(&backend, vec![cell("a"), cell("b")], 0);
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.verdict, Verdict::Pass);
        assert_eq!(record.kernel_release.as_deref(), Some("9.9.9-scripted"));
        assert_eq!(record.attempts, 1);
        assert_eq!(record.backend.as_deref(), Some("scripted"));
    }
    // run.json's durations: each cell's wall time, and the boot's.
    let boot = &stats["k"];
    assert_eq!(boot.cells_ms.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(boot.ready_ms <= boot.duration_ms, "{boot:?}");
}

/// What one scripted boot does.
#[derive(Debug, Clone)]
enum Script {
    /// Every cell passes and the guest powers off.
    Completes,
    /// The guest dies when this cell starts, printing this console line.
    DiesDuring(&'static str, &'static str),
    /// The kernel never reaches the agent, printing this console line.
    NeverStarts(&'static str),
}

/// A guest that dies on schedule: `script` says what boot N (1-based) of
/// these cells does.
type Schedule = Box<dyn Fn(usize, &[String]) -> Script + Sync>;

struct ScheduledGuest {
    boots: AtomicUsize,
    script: Schedule,
}

impl ScheduledGuest {
    fn new(script: impl Fn(usize, &[String]) -> Script + Sync + 'static) -> Self {
        ScheduledGuest {
            boots: AtomicUsize::new(0),
            script: Box::new(script),
        }
    }
}

impl Backend for ScheduledGuest {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn boot(&self, request: &BootRequest, on_event: &mut dyn FnMut(&GuestEvent)) -> BootOutcome {
        let number = self.boots.fetch_add(1, Ordering::SeqCst) + 1;
        let ids: Vec<String> = request
            .job
            .cells
            .iter()
            .map(|c| c.cell_id.clone())
            .collect();
        let script = (self.script)(number, &ids);
        let mut events = Vec::new();
        let mut console = String::new();
        let mut died = false;
        if let Script::NeverStarts(line) = script {
            console = format!("[    0.5] {line}\n");
            died = true;
        } else {
            events.push(GuestEvent::Hello {
                kernel_release: "9.9.9-scripted".into(),
                facts: BTreeMap::new(),
            });
            for cell in &request.job.cells {
                events.push(GuestEvent::CellStart {
                    cell_id: cell.cell_id.clone(),
                });
                if let Script::DiesDuring(victim, line) = script {
                    if cell.cell_id == victim {
                        console = format!("[    3.1] {line}\n");
                        died = true;
                        break;
                    }
                }
                for probe in &cell.probes {
                    events.push(GuestEvent::ProbeDone {
                        cell_id: cell.cell_id.clone(),
                        probe_id: probe.probe_id.clone(),
                        end: ProcessEnd::Exited { code: 0 },
                        stdout: "ok".into(),
                        stderr: String::new(),
                        duration_ms: 1,
                    });
                }
                events.push(GuestEvent::CellDone {
                    cell_id: cell.cell_id.clone(),
                });
            }
            if !died {
                events.push(GuestEvent::Done);
            }
        }
        for event in &events {
            on_event(event);
        }
        let end = if died {
            BootEnd::GuestDied {
                detail: "the guest stopped before the agent finished".into(),
            }
        } else {
            BootEnd::Completed
        };
        BootOutcome {
            events,
            console,
            end,
            ..BootOutcome::starting(request, self.name())
        }
    }
}

const GPF: &str = "general protection fault, probably for non-canonical address 0xdead: 0000 [#1] PREEMPT SMP NOPTI";
const DOUBLE_FAULT: &str = "traps: PANIC: double fault, error_code: 0x0";
const PANIC: &str = "Kernel panic - not syncing: sysrq triggered crash";

fn verdicts(records: &[CellRecord]) -> BTreeMap<String, (Verdict, String, u32)> {
    records
        .iter()
        .map(|r| {
            (
                r.cell_id.clone(),
                (r.verdict, r.signature.clone(), r.attempts),
            )
        })
        .collect()
}

#[test]
fn a_death_that_does_not_repeat_alone_is_not_the_cells() {
    // The emulator faults once, during b, in the first boot only.
    let guest = ScheduledGuest::new(|boot, _| match boot {
        1 => Script::DiesDuring("b", GPF),
        _ => Script::Completes,
    });
    let (records, stats) = run_with_stats(&guest, vec![cell("a"), cell("b"), cell("c")], 0);
    let seen = verdicts(&records);
    assert_eq!(seen.len(), 3);
    assert!(
        seen.values().all(|(v, _, _)| *v == Verdict::Pass),
        "{seen:?}"
    );
    assert_eq!(seen["b"].2, 2, "b ran again, alone");
    let stats = &stats["k"];
    assert_eq!((stats.boots, stats.deaths), (3, 1), "{stats:?}");
    assert!(
        stats.death_signatures[0].contains("during cell b"),
        "{stats:?}"
    );
    assert!(
        stats.death_signatures[0].contains("general protection fault"),
        "{stats:?}"
    );
}

#[test]
fn a_cell_that_always_takes_the_guest_down_the_same_way_is_blamed() {
    let guest = ScheduledGuest::new(|_, cells| {
        if cells.iter().any(|c| c == "b") {
            Script::DiesDuring("b", PANIC)
        } else {
            Script::Completes
        }
    });
    let (records, stats) = run_with_stats(&guest, vec![cell("a"), cell("b"), cell("c")], 0);
    let seen = verdicts(&records);
    assert_eq!(seen["a"].0, Verdict::Pass);
    assert_eq!(seen["c"].0, Verdict::Pass);
    let (verdict, signature, attempts) = &seen["b"];
    assert_eq!(*verdict, Verdict::Crash);
    assert_eq!(
        signature,
        "kernel: Kernel panic - not syncing: sysrq triggered crash"
    );
    assert_eq!(*attempts, 3, "the first boot and two boots alone");
    // batch, two isolation boots, a control boot, then c's boot.
    assert_eq!(
        (stats["k"].boots, stats["k"].deaths),
        (5, 3),
        "{:?}",
        stats["k"]
    );
}

#[test]
fn deaths_with_different_signatures_are_the_emulators() {
    let guest = ScheduledGuest::new(|boot, cells| {
        if !cells.iter().any(|c| c == "b") {
            return Script::Completes;
        }
        if boot % 2 == 0 {
            Script::DiesDuring("b", DOUBLE_FAULT)
        } else {
            Script::DiesDuring("b", GPF)
        }
    });
    let records = run_scripted(&guest, vec![cell("a"), cell("b")], 0);
    let seen = verdicts(&records);
    let (verdict, signature, _) = &seen["b"];
    assert_eq!(*verdict, Verdict::InfraError, "{signature}");
    assert!(signature.contains("different signatures"), "{signature}");
    assert!(
        signature.contains("double fault") && signature.contains("general protection"),
        "{signature}"
    );
    assert_eq!(seen["a"].0, Verdict::Pass);
}

#[test]
fn a_control_boot_that_dies_too_clears_the_cell() {
    // Every boot dies: with b during b, without cells before the agent starts.
    let guest = ScheduledGuest::new(|_, cells| {
        if cells.is_empty() {
            Script::NeverStarts(GPF)
        } else {
            Script::DiesDuring("b", GPF)
        }
    });
    let records = run_scripted(&guest, vec![cell("b")], 0);
    let (verdict, signature, _) = &verdicts(&records)["b"];
    assert_eq!(*verdict, Verdict::InfraError, "{signature}");
    assert!(signature.contains("control boot"), "{signature}");
}

#[test]
fn a_guest_that_never_starts_is_an_infra_error_after_three_boots() {
    let guest = ScheduledGuest::new(|_, _| Script::NeverStarts(DOUBLE_FAULT));
    let (records, stats) = run_with_stats(&guest, vec![cell("a"), cell("b")], 0);
    for (verdict, signature, attempts) in verdicts(&records).values() {
        assert_eq!(*verdict, Verdict::InfraError);
        assert!(
            signature.starts_with("guest never started after 3 boots"),
            "{signature}"
        );
        assert_eq!(*attempts, 3);
    }
    assert_eq!((stats["k"].boots, stats["k"].deaths), (3, 3));
}

#[test]
fn the_longest_boot_is_taken_first() {
    let dir = tempfile::tempdir().unwrap();
    let provisioned = provisioned(dir.path());
    let interrupted = crate::cancel::Cancel::new();
    let backend = FlakyGuest {
        boots: AtomicUsize::new(0),
    };
    let context = RunContext {
        backends: Backends {
            vm: &backend,
            container: &backend,
            cluster: &backend,
        },
        provisioned: &provisioned,
        signatures: BTreeMap::new(),
        run_dir: dir.path().to_path_buf(),
        boots_dir: dir.path().join("boots"),
        scratch: dir.path().join("scratch"),
        jobs: 1,
        durations: Durations {
            ready_ms: BTreeMap::from([("fast".to_string(), 2_000), ("slow".to_string(), 9_000)]),
            cells_ms: BTreeMap::from([("slow".to_string(), 80_000)]),
        },
        events: Events::none(),
        interrupted: &interrupted,
        shell: None,
    };
    let work = |kernel: &str| KernelWork {
        environment: Environment::Kernel(KernelArtifact {
            id: KernelId::new(kernel),
            image: dir.path().join("vmlinuz"),
            modules: None,
            origin: "scripted".into(),
            boot: BootImage::compressed(&dir.path().join("vmlinuz"), "scripted"),
        }),
        group: super::BootGroup {
            environment: kernel.into(),
            kernel_args: Vec::new(),
            kube_proxy: None,
            modules: Vec::new(),
        },
        cells: vec![cell(kernel)],
    };
    let mut queue = context.schedule(vec![work("slow"), work("unknown"), work("fast")]);
    let order: Vec<String> = std::iter::from_fn(|| queue.pop())
        .map(|w| w.environment.id().to_string())
        .collect();
    // Never measured: guessed from its probe deadlines (10 s + 1 s).
    assert_eq!(order, ["slow", "unknown", "fast"]);
}
