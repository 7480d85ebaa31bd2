//! The one model every report renders: the matrix (the `matrix.json`
//! shape of `kmatrix-metadata`), the records by cell id, the workaround
//! checks, and each boot's console excerpt and QEMU command read once.

use crate::inputs::scenario::{Scenario, BASELINE_VARIANT};
use crate::inputs::Catalog;
use kmatrix_metadata::Diff;
use kmatrix_metadata::{
    CellRecord, KernelColumn, Matrix, MatrixCell, MatrixRow, RunInfo, ScenarioMatrix, Verdict,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Console lines a report shows per cell.
pub const CONSOLE_LINES: usize = 30;

/// Everything a report is made from.
pub struct ReportInput<'a> {
    pub records: &'a [CellRecord],
    pub scenarios: &'a [Scenario],
    pub catalog: &'a Catalog,
    /// The run's own facts (date, harness version), when known.
    pub run: Option<&'a RunInfo>,
    /// The run directory, for console excerpts and boot commands.
    pub run_dir: Option<&'a Path>,
    /// The diff against a baseline, when one was given.
    pub baseline: Option<&'a Diff>,
    /// Which run that baseline is, and its date (`results::run_label`).
    pub baseline_name: Option<String>,
}

/// What one boot left for the reader: the console's tail and how to rerun it.
#[derive(Debug, Clone, Default)]
pub struct BootExcerpt {
    pub console_tail: String,
    pub qemu_command: Option<String>,
}

/// The model, built once per set of reports.
pub struct ReportModel<'a> {
    pub input: &'a ReportInput<'a>,
    pub matrix: Matrix,
    pub by_id: BTreeMap<&'a str, &'a CellRecord>,
    pub workarounds: Vec<WorkaroundCheck>,
    /// By `console_log` (relative to the run directory).
    pub boots: BTreeMap<String, BootExcerpt>,
}

impl<'a> ReportModel<'a> {
    pub fn build(input: &'a ReportInput<'a>) -> ReportModel<'a> {
        let mut boots = BTreeMap::new();
        if let Some(dir) = input.run_dir {
            for console in input.records.iter().filter_map(|r| r.console_log.as_ref()) {
                if boots.contains_key(console) {
                    continue;
                }
                let path = dir.join(console);
                let console_tail = fs::read_to_string(&path)
                    .map(|text| crate::files::last_lines(&text, CONSOLE_LINES))
                    .unwrap_or_default();
                let qemu_command =
                    fs::read_to_string(path.with_file_name(crate::backend::machine::COMMAND_FILE))
                        .ok();
                boots.insert(
                    console.clone(),
                    BootExcerpt {
                        console_tail,
                        qemu_command,
                    },
                );
            }
        }
        ReportModel {
            input,
            matrix: build(input.records, input.scenarios, input.catalog),
            by_id: input
                .records
                .iter()
                .map(|r| (r.cell_id.as_str(), r))
                .collect(),
            workarounds: workaround_checks(input.records),
            boots,
        }
    }

    pub fn record(&self, cell_id: &str) -> Option<&'a CellRecord> {
        self.by_id.get(cell_id).copied()
    }

    pub fn boot_of(&self, record: &CellRecord) -> Option<&BootExcerpt> {
        self.boots.get(record.console_log.as_ref()?)
    }

    pub fn scenario(&self, id: &str) -> Option<&'a Scenario> {
        self.input.scenarios.iter().find(|s| s.id == id)
    }
}

/// A failing baseline cell and what each workaround variant did on the same kernel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkaroundCheck {
    pub scenario: String,
    pub version: String,
    pub kernel: String,
    pub verdict: Verdict,
    pub signature: String,
    /// (variant id, its verdict) for every other variant of that cell.
    pub workarounds: Vec<(String, Verdict)>,
}

impl WorkaroundCheck {
    /// "fails; passes with godebug-multipathtcp-0".
    pub fn sentence(&self) -> String {
        let mut text = self.verdict.verb().to_string();
        for (variant, verdict) in &self.workarounds {
            match verdict {
                Verdict::Pass => text.push_str(&format!("; passes with {variant}")),
                other => text.push_str(&format!("; still {} with {variant}", other.verb())),
            }
        }
        text
    }
}

/// For every failing cell of the `baseline` variant, the other variants'
/// verdicts on the same scenario, version and kernel.
pub fn workaround_checks(records: &[CellRecord]) -> Vec<WorkaroundCheck> {
    let mut checks: Vec<WorkaroundCheck> = records
        .iter()
        .filter(|r| r.variant == BASELINE_VARIANT && r.verdict.is_failure())
        .map(|failing| WorkaroundCheck {
            scenario: failing.scenario.clone(),
            version: failing.version.clone(),
            kernel: failing.kernel.clone(),
            verdict: failing.verdict,
            signature: failing.signature.clone(),
            workarounds: records
                .iter()
                .filter(|r| {
                    r.scenario == failing.scenario
                        && r.version == failing.version
                        && r.kernel == failing.kernel
                        && r.variant != BASELINE_VARIANT
                })
                .map(|r| (r.variant.clone(), r.verdict))
                .collect(),
        })
        .collect();
    checks.sort_by_cached_key(|c| {
        (
            c.scenario.clone(),
            crate::ids::version_order_key(&c.version),
            c.kernel.clone(),
        )
    });
    for check in &mut checks {
        check.workarounds.sort();
    }
    checks
}

/// The numbers a kernel release starts with (`5.15.0-25-generic` → 5, 15,
/// 0, 25), for ordering columns oldest to newest.
pub fn kernel_version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .take(4)
        .collect()
}

/// Builds the matrix; scenario, version and variant orders follow the
/// scenario files, kernel columns run oldest to newest, so the same run
/// always prints the same table.
pub fn build(records: &[CellRecord], scenarios: &[Scenario], catalog: &Catalog) -> Matrix {
    let mut out = Vec::new();
    for scenario in scenarios {
        let mine: Vec<&CellRecord> = records
            .iter()
            .filter(|r| r.scenario == scenario.id)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut kernels: Vec<KernelColumn> = catalog
            .kernels
            .keys()
            .filter(|k| mine.iter().any(|r| &r.kernel == *k))
            .map(|k| KernelColumn {
                id: k.to_string(),
                release: mine
                    .iter()
                    .filter(|r| &r.kernel == k)
                    .find_map(|r| r.kernel_release.clone()),
            })
            .collect();
        // Oldest kernel first: by the release the guest reported, else the
        // catalog's version line; the id breaks ties.
        kernels.sort_by_cached_key(|k| {
            let version = k.release.clone().unwrap_or_else(|| {
                catalog
                    .kernels
                    .get(k.id.as_str())
                    .map(|e| e.release_hint())
                    .unwrap_or_default()
            });
            (kernel_version_key(&version), k.id.clone())
        });
        let mut rows = Vec::new();
        for version in &scenario.versions {
            for variant in scenario.variants_with(&version.id) {
                let cells: BTreeMap<String, MatrixCell> = mine
                    .iter()
                    .filter(|r| r.version == version.id && r.variant == variant.id)
                    .map(|r| {
                        (
                            r.kernel.clone(),
                            MatrixCell {
                                verdict: r.verdict,
                                signature: r.signature.clone(),
                                cell_id: r.cell_id.clone(),
                            },
                        )
                    })
                    .collect();
                if !cells.is_empty() {
                    rows.push(MatrixRow {
                        version: version.id.clone(),
                        variant: variant.id.clone(),
                        fidelity: mine
                            .iter()
                            .filter(|r| r.version == version.id && r.variant == variant.id)
                            .find_map(|r| r.fidelity),
                        cells,
                    });
                }
            }
        }
        out.push(ScenarioMatrix {
            scenario: scenario.id.to_string(),
            component: scenario.component.clone(),
            title: scenario.title.clone(),
            issue: scenario.issue.clone(),
            kernels,
            rows,
        });
    }
    Matrix { scenarios: out }
}

#[cfg(test)]
mod tests {
    use super::kernel_version_key;

    #[test]
    fn kernel_releases_sort_oldest_first() {
        let mut releases = vec![
            "6.12.107+deb13-cloud-amd64",
            "5.15.0-25-generic",
            "3.10",
            "5.10.0-32-cloud-amd64",
            "6.8.0-31-generic",
            "5.4.0-26-generic",
            "5.10.223",
            "7.2",
        ];
        releases.sort_by_key(|r| kernel_version_key(r));
        assert_eq!(
            releases,
            [
                "3.10",
                "5.4.0-26-generic",
                "5.10.0-32-cloud-amd64",
                "5.10.223",
                "5.15.0-25-generic",
                "6.8.0-31-generic",
                "6.12.107+deb13-cloud-amd64",
                "7.2",
            ]
        );
    }
}
