//! The end of a run on the terminal, as nextest ends one: counts by
//! verdict, the slowest cells, and every cell that did not pass listed last
//! (where the eye lands), findings about the component first.

use kmatrix_metadata::{CellRecord, Verdict};
use std::fmt::Write;

/// How many of the slowest cells are named.
pub const SLOWEST: usize = 5;
/// A signature is cut to this many characters on its line.
const SIGNATURE_WIDTH: usize = 110;

type VerdictTest = fn(Verdict) -> bool;

/// The text printed after a run's one-line summary.
pub fn render(records: &[CellRecord]) -> String {
    let mut out = String::new();
    if records.is_empty() {
        return out;
    }
    let mut slowest: Vec<&CellRecord> = records.iter().collect();
    slowest.sort_by_key(|r| std::cmp::Reverse(r.duration_ms));
    let _ = writeln!(out, "slowest cells:");
    for record in slowest.iter().take(SLOWEST) {
        let _ = writeln!(
            out,
            "  {:>7.1} s  {}",
            record.duration_ms as f64 / 1000.0,
            record.label()
        );
    }
    // Findings about the component, then what the machine could not do.
    let groups: [(&str, VerdictTest); 2] = [
        ("findings (fail, crash, timeout)", Verdict::is_failure),
        ("not judged (infra-error, flaky)", |v| {
            matches!(v, Verdict::InfraError | Verdict::Flaky)
        }),
    ];
    for (title, belongs) in groups {
        let mut listed: Vec<&CellRecord> = records.iter().filter(|r| belongs(r.verdict)).collect();
        if listed.is_empty() {
            continue;
        }
        listed.sort_by_key(|r| r.label());
        let _ = writeln!(out, "{title}: {}", listed.len());
        for record in listed {
            let signature: String = record.signature.chars().take(SIGNATURE_WIDTH).collect();
            let _ = writeln!(
                out,
                "  {:<11} {}: {signature}",
                record.verdict.as_str(),
                record.label()
            );
        }
    }
    let unavailable = records
        .iter()
        .filter(|r| r.verdict == Verdict::Unavailable)
        .count();
    if unavailable > 0 {
        let _ = writeln!(
            out,
            "unavailable here: {unavailable} cells (`kmatrix plan --check` says why for each)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_first_then_findings_then_what_was_not_judged() {
        let text = include_str!("../../tests/fixtures/runs/sample/cells.jsonl");
        let records = kmatrix_metadata::parse_cells(text).unwrap().records;
        let said = render(&records);
        let slowest = said.lines().nth(1).unwrap();
        let longest = records.iter().map(|r| r.duration_ms).max().unwrap();
        assert!(
            slowest.contains(&format!("{:.1} s", longest as f64 / 1000.0)),
            "{said}"
        );
        let failing = records.iter().filter(|r| r.verdict.is_failure()).count();
        if failing > 0 {
            assert!(
                said.contains(&format!("findings (fail, crash, timeout): {failing}")),
                "{said}"
            );
        }
        assert!(render(&[]).is_empty());
    }
}
