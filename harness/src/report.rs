//! Reports made from `cells.jsonl`: the matrix as CSV, JSON and Markdown.
//! Rows are component version × variant, columns are kernels.

use crate::catalog::Catalog;
use crate::results::{write_atomically, CellRecord};
use crate::scenario::Scenario;
use crate::verdict::Verdict;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

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

pub fn write_all(
    dir: &Path,
    records: &[CellRecord],
    scenarios: &[Scenario],
    catalog: &Catalog,
) -> Result<()> {
    let matrix = build(records, scenarios, catalog);
    write_atomically(
        &dir.join("matrix.json"),
        &serde_json::to_vec_pretty(&matrix)?,
    )?;
    write_atomically(&dir.join("matrix.csv"), to_csv(&matrix)?.as_bytes())?;
    write_atomically(&dir.join("matrix.md"), to_markdown(&matrix).as_bytes())?;
    Ok(())
}

/// One line per row, one column per kernel: `scenario,version,variant,<kernel>...`.
pub fn to_csv(matrix: &Matrix) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
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
