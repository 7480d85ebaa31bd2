//! Reports made from `cells.jsonl`: the matrix (CSV, JSON, Markdown), the
//! docs compatibility table, JUnit XML and a self-contained HTML page.
//! Rows are component version × variant, columns are kernels.

pub mod compat;
pub mod html;
pub mod junit;

use crate::catalog::Catalog;
use crate::results::{write_atomically, CellRecord, RunInfo};
use crate::scenario::{Scenario, BASELINE_VARIANT};
use crate::verdict::Verdict;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

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
    pub baseline: Option<&'a crate::diff::Diff>,
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
        let mut text = verb(self.verdict).to_string();
        for (variant, verdict) in &self.workarounds {
            match verdict {
                Verdict::Pass => text.push_str(&format!("; passes with {variant}")),
                other => text.push_str(&format!("; still {} with {variant}", verb(*other))),
            }
        }
        text
    }
}

/// A verdict as a verb: "fails", "crashes"...
pub fn verb(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "passes",
        Verdict::Fail => "fails",
        Verdict::Crash => "crashes",
        Verdict::Timeout => "times out",
        Verdict::Flaky => "is flaky",
        Verdict::InfraError => "hits an infrastructure error",
        Verdict::Unavailable => "is unavailable",
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
    checks.sort_by(|a, b| {
        (&a.scenario, &a.version, &a.kernel).cmp(&(&b.scenario, &b.version, &b.kernel))
    });
    for check in &mut checks {
        check.workarounds.sort();
    }
    checks
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Matrix {
    pub scenarios: Vec<ScenarioMatrix>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ScenarioMatrix {
    pub scenario: String,
    pub component: String,
    pub title: String,
    pub issue: String,
    /// Column order.
    pub kernels: Vec<KernelColumn>,
    pub rows: Vec<MatrixRow>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct KernelColumn {
    pub id: String,
    /// The release the guest reported, when any cell booted it.
    pub release: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct MatrixRow {
    pub version: String,
    pub variant: String,
    /// Keyed by kernel id; a kernel missing here was not run for this row.
    pub cells: BTreeMap<String, MatrixCell>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct MatrixCell {
    pub verdict: Verdict,
    pub signature: String,
    pub cell_id: String,
}

/// Builds the matrix; scenario, version, variant and kernel orders follow the
/// scenario files and the catalog, so the same run always prints the same table.
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
        let kernels = catalog
            .kernels
            .keys()
            .filter(|k| mine.iter().any(|r| &r.kernel == *k))
            .map(|k| KernelColumn {
                id: k.clone(),
                release: mine
                    .iter()
                    .filter(|r| &r.kernel == k)
                    .find_map(|r| r.kernel_release.clone()),
            })
            .collect();
        let mut rows = Vec::new();
        for version in &scenario.versions {
            for variant in &scenario.variants {
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
                        cells,
                    });
                }
            }
        }
        out.push(ScenarioMatrix {
            scenario: scenario.id.clone(),
            component: scenario.component.clone(),
            title: scenario.title.clone(),
            issue: scenario.issue.clone(),
            kernels,
            rows,
        });
    }
    Matrix { scenarios: out }
}

/// Writes every report into the run directory.
pub fn write_all(dir: &Path, input: &ReportInput) -> Result<()> {
    let matrix = build(input.records, input.scenarios, input.catalog);
    write_atomically(
        &dir.join("matrix.json"),
        &serde_json::to_vec_pretty(&matrix)?,
    )?;
    write_atomically(&dir.join("matrix.csv"), to_csv(&matrix)?.as_bytes())?;
    let mut md = to_markdown(&matrix);
    md.push_str(&workarounds_markdown(&workaround_checks(input.records)));
    write_atomically(&dir.join("matrix.md"), md.as_bytes())?;
    write_atomically(
        &dir.join("compatibility.md"),
        compat::render(input).as_bytes(),
    )?;
    write_atomically(
        &dir.join("junit.xml"),
        junit::render(input.records).as_bytes(),
    )?;
    write_atomically(&dir.join("report.html"), html::render(input)?.as_bytes())?;
    Ok(())
}

/// The "what does each workaround do where the component fails" section.
pub fn workarounds_markdown(checks: &[WorkaroundCheck]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Workarounds on failing cells\n\n");
    for check in checks {
        md.push_str(&format!(
            "- {} {} on {}: {}\n",
            check.scenario,
            check.version,
            check.kernel,
            check.sentence()
        ));
    }
    md
}

/// One line per row, one column per kernel: `scenario,version,variant,<kernel>...`.
pub fn to_csv(matrix: &Matrix) -> Result<String> {
    // Each scenario has its own kernel columns, so rows differ in length.
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    for scenario in &matrix.scenarios {
        let mut header = vec!["scenario".to_string(), "version".into(), "variant".into()];
        header.extend(scenario.kernels.iter().map(|k| k.id.clone()));
        writer.write_record(&header)?;
        for row in &scenario.rows {
            let mut line = vec![
                scenario.scenario.clone(),
                row.version.clone(),
                row.variant.clone(),
            ];
            line.extend(
                scenario
                    .kernels
                    .iter()
                    .map(|k| row.cells.get(&k.id).map(cell_text).unwrap_or_default()),
            );
            writer.write_record(&line)?;
        }
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

fn cell_text(cell: &MatrixCell) -> String {
    if cell.signature.is_empty() {
        cell.verdict.to_string()
    } else {
        format!("{}: {}", cell.verdict, cell.signature)
    }
}

/// The symbol shown beside a verdict; never the only carrier of meaning.
pub fn symbol(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "✅",
        Verdict::Fail => "❌",
        Verdict::Crash => "💥",
        Verdict::Timeout => "⏱️",
        Verdict::InfraError => "⚠️",
        Verdict::Unavailable => "➖",
        Verdict::Flaky => "🔁",
    }
}

pub fn to_markdown(matrix: &Matrix) -> String {
    let mut md = String::new();
    for scenario in &matrix.scenarios {
        md.push_str(&format!(
            "## {} — {}\n\n",
            scenario.scenario, scenario.title
        ));
        md.push_str(&format!(
            "Component: {} · upstream issue: <{}>\n\n",
            scenario.component, scenario.issue
        ));
        md.push_str("| version | variant |");
        for kernel in &scenario.kernels {
            match &kernel.release {
                Some(release) => md.push_str(&format!(" {} (`{}`) |", kernel.id, release)),
                None => md.push_str(&format!(" {} |", kernel.id)),
            }
        }
        md.push_str("\n|---|---|");
        md.push_str(&"---|".repeat(scenario.kernels.len()));
        md.push('\n');
        let mut notes: Vec<String> = Vec::new();
        for row in &scenario.rows {
            md.push_str(&format!("| {} | {} |", row.version, row.variant));
            for kernel in &scenario.kernels {
                match row.cells.get(&kernel.id) {
                    Some(cell) if cell.signature.is_empty() => {
                        md.push_str(&format!(" {} {} |", symbol(cell.verdict), cell.verdict))
                    }
                    Some(cell) => {
                        let note = match notes.iter().position(|n| *n == cell.signature) {
                            Some(i) => i + 1,
                            None => {
                                notes.push(cell.signature.clone());
                                notes.len()
                            }
                        };
                        md.push_str(&format!(
                            " {} {} [{note}] |",
                            symbol(cell.verdict),
                            cell.verdict
                        ))
                    }
                    None => md.push_str(" |"),
                }
            }
            md.push('\n');
        }
        if !notes.is_empty() {
            md.push('\n');
            for (i, note) in notes.iter().enumerate() {
                md.push_str(&format!("[{}] `{}`  \n", i + 1, note.replace('`', "'")));
            }
        }
        md.push('\n');
    }
    md.push_str("Legend: ");
    let legend: Vec<String> = Verdict::ALL
        .iter()
        .map(|v| format!("{} {}", symbol(*v), v))
        .collect();
    md.push_str(&legend.join(" · "));
    md.push('\n');
    md
}
