//! The one reader and writer of `cells.jsonl`: one JSON object per line,
//! sorted by cell id, each line a [`CellRecord`].

use crate::CellRecord;

/// The cells of a run, in every run directory.
pub const CELLS_FILE: &str = "cells.jsonl";

/// What a `cells.jsonl` held.
#[derive(Debug, Clone, PartialEq)]
pub struct CellsFile {
    pub records: Vec<CellRecord>,
    /// A last line cut short (a killed writer, a truncated CI artifact):
    /// dropped, so its cell counts as not run.
    pub torn: Option<TornLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// A line that is not a cell record (and not a torn last line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub text: String,
}

/// Parses the text of a `cells.jsonl`. Blank lines are skipped; a last line
/// that ends mid-record is reported as torn, not as an error.
pub fn parse_cells(text: &str) -> Result<CellsFile, BadLine> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| (n + 1, line))
        .collect();
    let mut records = Vec::with_capacity(lines.len());
    let mut torn = None;
    for (index, &(line, content)) in lines.iter().enumerate() {
        match serde_json::from_str::<CellRecord>(content) {
            Ok(record) => records.push(record),
            Err(e) if index + 1 == lines.len() && (e.is_eof() || !text.ends_with('\n')) => {
                torn = Some(TornLine {
                    line,
                    text: content.to_string(),
                });
            }
            Err(e) => {
                return Err(BadLine {
                    line,
                    column: e.column(),
                    message: e.to_string(),
                    text: content.chars().take(120).collect(),
                })
            }
        }
    }
    Ok(CellsFile { records, torn })
}

/// The text of a `cells.jsonl` holding `records`, in the order given.
pub fn render_cells<'a>(records: impl IntoIterator<Item = &'a CellRecord>) -> String {
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record).expect("cell records serialise"));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    fn record(id: &str) -> CellRecord {
        CellRecord {
            cell_id: id.into(),
            scenario: "s".into(),
            component: "c".into(),
            version: "v1".into(),
            variant: "baseline".into(),
            kernel: "k".into(),
            kernel_release: None,
            verdict: Verdict::Pass,
            signature: String::new(),
            duration_ms: 0,
            facts: Default::default(),
            probes: Vec::new(),
            attempts: 1,
            backend: None,
            console_log: None,
            runs: None,
            emulator: None,
            fidelity: Some(crate::Fidelity::Release),
            fidelity_note: None,
        }
    }

    #[test]
    fn round_trips_and_names_the_contract_fields() {
        let text = render_cells(&[record("a"), record("b")]);
        let file = parse_cells(&text).unwrap();
        assert_eq!(file.records, vec![record("a"), record("b")]);
        assert_eq!(file.torn, None);
        let value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "cell_id",
            "scenario",
            "component",
            "version",
            "variant",
            "kernel",
            "kernel_release",
            "verdict",
            "signature",
            "duration_ms",
            "facts",
            "probes",
            "attempts",
            "backend",
            "console_log",
        ] {
            assert!(value.get(key).is_some(), "{key} missing");
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_said() {
        let whole = render_cells(&[record("a"), record("b")]);
        let cut = &whole[..whole.len() - 20];
        let file = parse_cells(cut).unwrap();
        assert_eq!(file.records, vec![record("a")]);
        assert_eq!(file.torn.as_ref().map(|t| t.line), Some(2));
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_naming_it() {
        let text = format!(
            "{}{{\"cell_id\":1}}\n{}",
            render_cells(&[record("a")]),
            render_cells(&[record("b")])
        );
        let bad = parse_cells(&text).unwrap_err();
        assert_eq!(bad.line, 2);
        // A whole but wrong last line is damage too, not a torn write.
        let bad = parse_cells("{\"cell_id\":1}\n").unwrap_err();
        assert_eq!(bad.line, 1);
    }
}
