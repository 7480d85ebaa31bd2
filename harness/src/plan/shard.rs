//! Splitting a plan across CI runners. All cells of one kernel stay in one
//! shard (a boot is the cost to amortise); kernels are dealt to shards by
//! expected cost, largest first, so shards finish at about the same time.
//! The split depends only on the plan, so every runner computes the same one.

use super::Cell;
use crate::ids::KernelId;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Expected cost of one boot, in the unit of one probe second.
const BOOT_COST: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}` is not a shard: write I/N with 1 <= I <= N, e.g. 2/4");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Expected cost of running `cells` of one kernel.
fn cost(cells: &[&Cell]) -> u64 {
    BOOT_COST
        + cells
            .iter()
            .flat_map(|c| &c.probes)
            .map(|p| (p.expect.timeout_ms / 1000).clamp(1, 5))
            .sum::<u64>()
}

/// Kernel ids per shard (index 0 is shard 1).
pub fn assign_kernels(cells: &[Cell], count: usize) -> Vec<Vec<KernelId>> {
    let mut by_kernel: BTreeMap<&KernelId, Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        by_kernel.entry(&cell.kernel).or_default().push(cell);
    }
    let mut groups: Vec<(u64, &KernelId)> = by_kernel
        .iter()
        .map(|(kernel, cells)| (cost(cells), *kernel))
        .collect();
    // Largest first; ties by kernel id, so the split is the same everywhere.
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut loads = vec![0u64; count];
    let mut shards = vec![Vec::new(); count];
    for (cost, kernel) in groups {
        let lightest = (0..count)
            .min_by_key(|&i| (loads[i], i))
            .expect("at least one shard");
        loads[lightest] += cost;
        shards[lightest].push(kernel.clone());
    }
    for kernels in &mut shards {
        kernels.sort();
    }
    shards
}

/// The cells of one shard, ordered by cell id.
pub fn select(cells: Vec<Cell>, shard: Shard) -> Vec<Cell> {
    let kernels = assign_kernels(&cells, shard.count).swap_remove(shard.index - 1);
    let mut mine: Vec<Cell> = cells
        .into_iter()
        .filter(|c| kernels.contains(&c.kernel))
        .collect();
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    mine
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CellId, ScenarioId};
    use crate::plan::CellProbe;
    use crate::verdict::Expectation;
    use std::collections::BTreeSet;

    fn cells() -> Vec<Cell> {
        let mut cells = Vec::new();
        for (k, kernel) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            for n in 0..(k + 1) * 2 {
                cells.push(Cell {
                    id: CellId::new(format!("{kernel}{n:02}")),
                    scenario: ScenarioId::new("s"),
                    component: "c".into(),
                    version: "v".into(),
                    variant: format!("x{n}"),
                    kernel: KernelId::new(*kernel),
                    artifacts: vec!["/r".into()],
                    modules: Vec::new(),
                    kernel_args: Vec::new(),
                    probes: vec![CellProbe {
                        probe_id: "p".into(),
                        argv: vec![],
                        env: BTreeMap::new(),
                        expect: Expectation {
                            timeout_ms: 30_000,
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
                });
            }
        }
        cells
    }

    #[test]
    fn every_cell_in_exactly_one_shard_for_1_to_8() {
        let all = cells();
        let ids: BTreeSet<CellId> = all.iter().map(|c| c.id.clone()).collect();
        for count in 1..=8 {
            let mut seen = BTreeSet::new();
            for index in 1..=count {
                let shard = select(all.clone(), Shard { index, count });
                let kernels: BTreeSet<&KernelId> = shard.iter().map(|c| &c.kernel).collect();
                for cell in &shard {
                    assert!(
                        seen.insert(cell.id.clone()),
                        "{} twice (N={count})",
                        cell.id
                    );
                }
                // A kernel's cells are never split.
                for kernel in kernels {
                    let whole = all.iter().filter(|c| &c.kernel == kernel).count();
                    assert_eq!(shard.iter().filter(|c| &c.kernel == kernel).count(), whole);
                }
            }
            assert_eq!(seen, ids, "N={count}");
        }
    }

    #[test]
    fn shards_are_balanced_and_stable() {
        let all = cells();
        let shards = assign_kernels(&all, 2);
        assert_eq!(shards, assign_kernels(&all, 2));
        let load =
            |kernels: &Vec<KernelId>| all.iter().filter(|c| kernels.contains(&c.kernel)).count();
        let (a, b) = (load(&shards[0]), load(&shards[1]));
        assert!(a.abs_diff(b) <= 4, "{a} vs {b}");
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "x/2", "3", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
