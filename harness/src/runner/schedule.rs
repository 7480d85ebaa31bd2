//! What each boot is expected to cost, from what earlier runs measured, so
//! the fleet takes the longest boot first and the VMs finish together.
//!
//! Costs are kept per cell, not per boot: a run narrowed to one cell of a
//! kernel must not make the next full run think that kernel is quick.

use crate::plan::Cell;
use kmatrix_metadata::BootStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The cache file holding the last measured durations.
pub const DURATIONS_FILE: &str = "durations.json";

/// What a boot costs before its first cell, when nothing was ever measured
/// (a TCG boot of a distribution kernel here: 2 to 10 s).
const GUESSED_READY_MS: u64 = 10_000;
/// A never-measured probe is guessed at its deadline, at most this.
const GUESSED_PROBE_MS: u64 = 5_000;

/// Last measured durations, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Durations {
    /// Per boot group: one boot's time until the agent said hello.
    #[serde(default)]
    pub ready_ms: BTreeMap<String, u64>,
    /// Per cell id: its wall time in the guest.
    #[serde(default)]
    pub cells_ms: BTreeMap<String, u64>,
}

impl Durations {
    /// What the cache holds; nothing (every cost guessed) when it holds
    /// nothing readable: a lost file only costs a less good schedule.
    pub fn read(cache_root: &Path) -> Durations {
        std::fs::read(cache_root.join(DURATIONS_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Merges what a run measured into the cache's file (newest wins).
    pub fn remember(cache_root: &Path, stats: &BTreeMap<String, BootStats>) {
        let mut durations = Durations::read(cache_root);
        durations.learn(stats);
        if let Ok(bytes) = serde_json::to_vec_pretty(&durations) {
            let _ = crate::files::write_atomically(&cache_root.join(DURATIONS_FILE), &bytes);
        }
    }

    /// Takes in what one run measured.
    pub fn learn(&mut self, stats: &BTreeMap<String, BootStats>) {
        for (group, stats) in stats {
            let ready_boots = u64::from(stats.boots.saturating_sub(stats.deaths)).max(1);
            if stats.ready_ms > 0 {
                self.ready_ms
                    .insert(group.clone(), stats.ready_ms / ready_boots);
            }
            self.cells_ms
                .extend(stats.cells_ms.iter().map(|(id, ms)| (id.clone(), *ms)));
        }
    }

    /// A boot's expected cost: its group's time to ready plus each cell's
    /// last wall time; what was never measured is guessed (10 s to ready,
    /// each probe at its deadline up to 5 s).
    pub fn expected(&self, group: &str, cells: &[Cell]) -> u64 {
        let ready = self
            .ready_ms
            .get(group)
            .copied()
            .unwrap_or(GUESSED_READY_MS);
        ready
            + cells
                .iter()
                .map(|cell| {
                    self.cells_ms
                        .get(cell.id.as_str())
                        .copied()
                        .unwrap_or_else(|| {
                            cell.probes
                                .iter()
                                .map(|p| p.expect.timeout_ms.min(GUESSED_PROBE_MS))
                                .sum()
                        })
                })
                .sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::tests::cell;

    fn stats(ready_ms: u64, boots: u32, cells: &[(&str, u64)]) -> BootStats {
        BootStats {
            boots,
            ready_ms,
            cells_ms: cells.iter().map(|(id, ms)| (id.to_string(), *ms)).collect(),
            ..BootStats::default()
        }
    }

    #[test]
    fn a_narrowed_run_does_not_make_a_kernel_look_quick() {
        let mut durations = Durations::default();
        let full = [cell("a"), cell("b"), cell("c")];
        durations.learn(&BTreeMap::from([(
            "k".to_string(),
            stats(3_000, 1, &[("a", 20_000), ("b", 30_000), ("c", 40_000)]),
        )]));
        assert_eq!(durations.expected("k", &full), 93_000);
        // A later run of cell b alone, in two boots (a retry).
        durations.learn(&BTreeMap::from([(
            "k".to_string(),
            stats(5_000, 2, &[("b", 31_000)]),
        )]));
        assert_eq!(
            durations.expected("k", &full),
            2_500 + 20_000 + 31_000 + 40_000
        );
        assert_eq!(durations.expected("k", &[cell("b")]), 2_500 + 31_000);
    }

    #[test]
    fn what_was_never_measured_is_guessed_from_deadlines() {
        let durations = Durations::default();
        let mut slow = cell("s");
        slow.probes[0].expect.timeout_ms = 600_000;
        assert_eq!(
            durations.expected("k", &[cell("a"), slow]),
            GUESSED_READY_MS + cell("a").probes[0].expect.timeout_ms + GUESSED_PROBE_MS
        );
    }
}
