//! `--retries N`: cells that failed run up to N more times; a cell that
//! passes once is `flaky`, with how often it passed and failed.

use super::RunContext;
use crate::events::RunEvent;
use crate::plan::Cell;
use kmatrix_metadata::{BootStats, CellRecord, RunCounts, Verdict};
use std::collections::BTreeMap;

pub(super) fn retry_failures(
    context: &RunContext,
    retries: u32,
    failed: Vec<CellRecord>,
    cells: &BTreeMap<String, Cell>,
) -> BTreeMap<String, BootStats> {
    let mut stats = BTreeMap::new();
    if retries == 0 || failed.is_empty() {
        return stats;
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
        let work = context.group_into_boots(failing);
        if work.is_empty() || context.interrupted.is_cancelled() {
            break;
        }
        context.events.send(RunEvent::RetryRound {
            round,
            of: retries,
            cells: work.iter().map(|w| w.cells.len()).sum(),
        });
        let pass = context.with_boots_dir(&format!("boots-retry-{round}"));
        let round_stats = pass.run_fleet(work, |record| {
            let count = counts.get_mut(&record.cell_id).expect("a retried cell");
            match record.verdict {
                Verdict::Pass => count.passed += 1,
                v if v.is_failure() => count.failed += 1,
                _ => {}
            }
        });
        for (group, more) in round_stats {
            stats.entry(group).or_default().absorb(more);
        }
    }
    for mut record in failed {
        let count = counts[&record.cell_id];
        if count.passed > 0 {
            record.verdict = Verdict::Flaky;
        }
        record.runs = Some(count);
        context
            .events
            .send(RunEvent::CellFinished(Box::new(record)));
    }
    stats
}
