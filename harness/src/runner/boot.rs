//! One kernel's cells: one boot for all of them, and more boots only when a
//! guest died. Cells are classified as the guest finishes them.

use super::guest::{record_without_guest, BootFacts, GuestView};
use super::{job_for, KernelWork, RunContext};
use crate::backend::{BootEnd, BootRequest, GuestFile};
use crate::events::RunEvent;
use crate::sources::modules;
use crate::verdict::{kernel_crash, Classified};
use kmatrix_metadata::{CellRecord, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;

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

/// Runs every cell of one kernel. A guest that never comes up three times
/// is an infrastructure error; a cell during which the guest died three
/// times gets the crash (or hang) as its own verdict.
pub(super) fn run_kernel(
    work: KernelWork,
    context: &RunContext,
    results: &mpsc::Sender<CellRecord>,
) {
    let KernelWork {
        kernel,
        kernel_args,
        mut cells,
    } = work;
    // Boots with extra kernel arguments get their own log folders.
    let boot_name = if kernel_args.is_empty() {
        kernel.id.to_string()
    } else {
        format!(
            "{}+{}",
            kernel.id,
            kernel_args.join("+").replace(['=', '/', ' '], "_")
        )
    };
    let give_up = |cells: Vec<crate::plan::Cell>, why: &str, fill: &dyn Fn(&mut CellRecord)| {
        for cell in cells {
            let mut record = record_without_guest(&cell, Classified::new(Verdict::InfraError, why));
            fill(&mut record);
            let _ = results.send(record);
        }
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
            give_up(
                cells,
                &format!("cannot prepare kernel modules: {e:#}"),
                &|_| {},
            );
            return;
        }
    };
    let mut files = context.files_for(&cells);
    files.extend(modules.files.iter().map(|(host, guest)| GuestFile {
        guest_path: guest.clone(),
        host_path: host.clone(),
    }));
    let module_paths: Vec<String> = modules.files.iter().map(|(_, g)| g.clone()).collect();
    let rootfs = context.rootfs_for(&cells);
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    let mut deaths: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed_boots = 0;
    let mut boot_number = 0;
    while !cells.is_empty() && !context.interrupted.load(Ordering::SeqCst) {
        boot_number += 1;
        for cell in &cells {
            *attempts.entry(cell.id.to_string()).or_default() += 1;
        }
        let request = BootRequest {
            label: format!("{boot_name} boot {boot_number}"),
            kernel: kernel.clone(),
            agent: context.provisioned.agent.clone(),
            files: files.clone(),
            rootfs: rootfs.clone(),
            kernel_args: kernel_args.clone(),
            job: job_for(&cells, &module_paths),
            log_dir: context.boots_dir.join(format!("{boot_name}-{boot_number}")),
        };
        let console_path = request.log_dir.join("console.log");
        let facts_of = |cell_id: &str| BootFacts {
            backend: context.backend.name(),
            console_log: console_path
                .strip_prefix(&context.run_dir)
                .unwrap_or(&console_path)
                .display()
                .to_string(),
            attempts: attempts[cell_id],
        };
        context.events.send(RunEvent::BootStarted {
            label: request.label.clone(),
            cells: cells.len(),
        });
        let mut guest = GuestView::default();
        let outcome = context.backend.boot(&request, &mut |event| {
            if let Some(done) = guest.take(event) {
                context.events.send(RunEvent::BootCellDone {
                    label: request.label.clone(),
                });
                if let Some(cell) = cells.iter().find(|c| c.id == done) {
                    let record =
                        guest.classify(cell, context.signatures_of(cell), &facts_of(&done));
                    let _ = results.send(record);
                }
            }
        });
        context.events.send(RunEvent::BootFinished {
            label: request.label.clone(),
            outcome: outcome.end.describe(),
        });
        cells.retain(|c| !guest.done.contains(c.id.as_str()));
        // Cells the guest finished before Ctrl-C are kept; the rest wait for --resume.
        if cells.is_empty() || outcome.end == BootEnd::Interrupted {
            break;
        }
        let boot_facts = BootFacts::of(&outcome, &context.run_dir, 0);
        if guest.hello.is_none() {
            failed_boots += 1;
            if failed_boots >= MAX_FAILED_BOOTS {
                let why = format!(
                    "guest never started after {failed_boots} boots: {}{}",
                    outcome.end.describe(),
                    kernel_crash(&outcome.console)
                        .map(|c| format!("; console: {c}"))
                        .unwrap_or_default()
                );
                let pending = std::mem::take(&mut cells);
                give_up(pending, &why, &|record| {
                    record.attempts = attempts[&record.cell_id];
                    record.backend = Some(boot_facts.backend.clone());
                    record.console_log = Some(boot_facts.console_log.clone());
                });
            }
            continue;
        }
        let Some(current) = guest.in_progress.clone() else {
            // The guest came up, finished no further cell and started none:
            // an emulator fault between cells. Retry, but not forever.
            failed_boots += 1;
            if failed_boots >= MAX_FAILED_BOOTS {
                let why = format!("guest stopped between cells: {}", outcome.end.describe());
                let pending = std::mem::take(&mut cells);
                give_up(pending, &why, &|record| {
                    record.attempts = attempts[&record.cell_id];
                });
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
                Classified::new(Verdict::Crash, format!("guest died: {}", end.describe()))
            }
        };
        let mut record = record_without_guest(&cell, verdict);
        guest.attach(
            &mut record,
            &BootFacts::of(&outcome, &context.run_dir, attempts[&current]),
        );
        let _ = results.send(record);
    }
}
