//! `matrix.md`: the full matrix (version × variant rows) with signatures as
//! numbered notes, then what each workaround did on the failing cells.

use super::model::{ReportModel, WorkaroundCheck};
use kmatrix_metadata::{Fidelity, Matrix, Verdict};

/// The whole `matrix.md`.
pub fn render(model: &ReportModel) -> String {
    to_markdown(&model.matrix)
        + &build_info_markdown(model.input.records)
        + &workarounds_markdown(&model.workarounds)
}

/// What real artifacts' build info said, per version and variant: why a
/// listener is or is not MPTCP, next to what the guests saw.
pub fn build_info_markdown(records: &[kmatrix_metadata::CellRecord]) -> String {
    let mut lines = std::collections::BTreeSet::new();
    for record in records {
        let fact = |name: &str| record.facts.get(name).map(String::as_str);
        let (Some(go), Some(mptcp)) = (fact("go.version"), fact("go.mptcp_listeners")) else {
            continue;
        };
        lines.insert(format!(
            "- {} {} {}: {} built with {go}; MPTCP listeners {mptcp} ({})\n",
            record.scenario,
            record.version,
            record.variant,
            fact("go.path").unwrap_or("the program"),
            fact("go.mptcp_listeners.why").unwrap_or("")
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## What the artifacts' build info says\n\n");
    md.extend(lines);
    md
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
        md.push_str("| version | runs | variant |");
        for kernel in &scenario.kernels {
            match &kernel.release {
                Some(release) => md.push_str(&format!(" {} (`{}`) |", kernel.id, release)),
                None => md.push_str(&format!(" {} |", kernel.id)),
            }
        }
        md.push_str("\n|---|---|---|");
        md.push_str(&"---|".repeat(scenario.kernels.len()));
        md.push('\n');
        let mut notes: Vec<String> = Vec::new();
        for row in &scenario.rows {
            md.push_str(&format!(
                "| {} | {} | {} |",
                row.version,
                fidelity_word(row.fidelity),
                row.variant
            ));
            for kernel in &scenario.kernels {
                match row.cells.get(&kernel.id) {
                    Some(cell) if cell.signature.is_empty() => {
                        md.push_str(&format!(" {} {} |", cell.verdict.emoji(), cell.verdict))
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
                            cell.verdict.emoji(),
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
        .map(|v| format!("{} {}", v.emoji(), v))
        .collect();
    md.push_str(&legend.join(" · "));
    md.push('\n');
    md.push_str(&fidelity_legend());
    md
}

/// A row's fidelity as the tables print it.
pub fn fidelity_word(fidelity: Option<Fidelity>) -> &'static str {
    fidelity.map(Fidelity::name).unwrap_or("unknown")
}

/// The legend line of the fidelity words, for every Markdown table.
pub fn fidelity_legend() -> String {
    let words: Vec<String> = Fidelity::ALL
        .iter()
        .map(|f| format!("`{}`: {}", f.name(), f.words()))
        .collect();
    format!(
        "\nWhat ran (`runs`): {}; `unknown`: recorded before kmatrix said.\n",
        words.join(" · ")
    )
}
