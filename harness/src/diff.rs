//! Comparing results: two runs (or a committed baseline and a run), or two
//! component versions inside one run. Cells are matched by what they are
//! (scenario, version, variant, kernel), not by id, so a baseline made with
//! older inputs still compares.

use kmatrix_metadata::{
    CellChange, CellKey, CellRecord, Change, Diff, Side, Verdict, VersionChange,
};
use std::collections::BTreeMap;

fn key_of(record: &CellRecord, ignore_variant: bool) -> CellKey {
    CellKey {
        scenario: record.scenario.clone(),
        version: record.version.clone(),
        variant: if ignore_variant {
            String::new()
        } else {
            record.variant.clone()
        },
        kernel: record.kernel.clone(),
    }
}

fn side_of(record: &CellRecord) -> Side {
    Side {
        verdict: record.verdict,
        signature: record.signature.clone(),
    }
}

/// Classifies one cell seen on both sides.
pub fn classify(old: &Side, new: &Side) -> Option<Change> {
    if !old.verdict.is_comparable() || !new.verdict.is_comparable() {
        return (old != new).then_some(Change::NotComparable);
    }
    match (old.verdict, new.verdict) {
        (Verdict::Pass, Verdict::Pass) => None,
        (Verdict::Pass, v) if v.is_failure() => Some(Change::Regression),
        (v, Verdict::Pass) if v.is_failure() => Some(Change::Fix),
        _ if old == new => None,
        _ => Some(Change::Changed),
    }
}

/// Diffs two result sets. With `ignore_variant`, a cell is matched by
/// scenario, version and kernel alone (each side must then hold one variant
/// per cell), to compare a run with a workaround against one without.
pub fn diff(old: &[CellRecord], new: &[CellRecord], ignore_variant: bool) -> Diff {
    let index = |records: &[CellRecord]| -> BTreeMap<CellKey, Side> {
        records
            .iter()
            .map(|r| (key_of(r, ignore_variant), side_of(r)))
            .collect()
    };
    let (old, new) = (index(old), index(new));
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (key, before) in &old {
        match new.get(key) {
            None => changes.push(CellChange {
                change: Change::Removed,
                key: key.clone(),
                old: Some(before.clone()),
                new: None,
            }),
            Some(after) => match classify(before, after) {
                Some(change) => changes.push(CellChange {
                    change,
                    key: key.clone(),
                    old: Some(before.clone()),
                    new: Some(after.clone()),
                }),
                None => unchanged += 1,
            },
        }
    }
    for (key, after) in &new {
        if !old.contains_key(key) {
            changes.push(CellChange {
                change: Change::New,
                key: key.clone(),
                old: None,
                new: Some(after.clone()),
            });
        }
    }
    changes.sort_by(|a, b| (a.change, &a.key).cmp(&(b.change, &b.key)));
    Diff { changes, unchanged }
}

/// Compares `old_version` with `new_version` cell by cell within one run.
pub fn diff_versions(
    records: &[CellRecord],
    old_version: &str,
    new_version: &str,
) -> Vec<VersionChange> {
    let find = |scenario: &str, version: &str, variant: &str, kernel: &str| {
        records.iter().find(|r| {
            r.scenario == scenario
                && r.version == version
                && r.variant == variant
                && r.kernel == kernel
        })
    };
    let mut changes = Vec::new();
    for old in records.iter().filter(|r| r.version == old_version) {
        let Some(new) = find(&old.scenario, new_version, &old.variant, &old.kernel) else {
            continue;
        };
        let side = side_of;
        let Some(change) = classify(&side(old), &side(new)) else {
            continue;
        };
        let fixed_by = records
            .iter()
            .filter(|r| {
                r.scenario == new.scenario
                    && r.version == new_version
                    && r.kernel == new.kernel
                    && r.variant != new.variant
                    && r.verdict == Verdict::Pass
            })
            .map(|r| r.variant.clone())
            .collect();
        changes.push(VersionChange {
            change,
            scenario: old.scenario.clone(),
            variant: old.variant.clone(),
            kernel: old.kernel.clone(),
            old: side(old),
            new: side(new),
            fixed_by,
        });
    }
    changes.sort_by(|a, b| {
        (a.change, &a.scenario, &a.kernel, &a.variant).cmp(&(
            b.change,
            &b.scenario,
            &b.kernel,
            &b.variant,
        ))
    });
    changes
}

fn side_text(side: &Option<Side>) -> String {
    side.as_ref().map_or_else(|| "—".into(), Side::text)
}

pub fn to_console(diff: &Diff) -> String {
    let mut out = String::new();
    for change in Change::ALL {
        let rows: Vec<&CellChange> = diff.changes.iter().filter(|c| c.change == change).collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!("{} ({}):\n", change.title(), rows.len()));
        for row in rows {
            out.push_str(&format!(
                "  {:<60} {} -> {}\n",
                row.key.label(),
                side_text(&row.old),
                side_text(&row.new)
            ));
        }
    }
    out.push_str(&diff.summary());
    out.push('\n');
    out
}

pub fn to_markdown(diff: &Diff) -> String {
    let mut md = format!(
        "{}\n",
        diff.summary().replacen(" regressions", " regressions**", 1)
    );
    md.insert_str(0, "**");
    let mut last = None;
    for row in &diff.changes {
        if last != Some(row.change) {
            md.push_str(&format!(
                "\n### {}\n\n| cell | before | after |\n|---|---|---|\n",
                row.change.title()
            ));
            last = Some(row.change);
        }
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            row.key.label(),
            side_text(&row.old).replace('|', "\\|"),
            side_text(&row.new).replace('|', "\\|")
        ));
    }
    md
}

pub fn versions_to_text(old_version: &str, new_version: &str, changes: &[VersionChange]) -> String {
    if changes.is_empty() {
        return format!("{new_version} behaves as {old_version} on every kernel both ran on\n");
    }
    let mut out = String::new();
    for c in changes {
        let verb = match c.change {
            Change::Regression => "regresses",
            Change::Fix => "fixes",
            Change::Changed => "fails differently",
            _ => "differs",
        };
        out.push_str(&format!(
            "{new_version} {verb} on {} ({} {}): {} -> {}",
            c.kernel,
            c.scenario,
            c.variant,
            c.old.text(),
            c.new.text()
        ));
        if c.change == Change::Regression && !c.fixed_by.is_empty() {
            out.push_str(&format!("; fixed by {}", c.fixed_by.join(", ")));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests_support::record;

    fn side(v: Verdict, s: &str) -> Side {
        Side {
            verdict: v,
            signature: s.into(),
        }
    }

    #[test]
    fn every_transition_kind() {
        let pass = side(Verdict::Pass, "");
        let fail = side(Verdict::Fail, "refused");
        assert_eq!(classify(&pass, &pass), None);
        assert_eq!(classify(&pass, &fail), Some(Change::Regression));
        assert_eq!(
            classify(&pass, &side(Verdict::Crash, "panic")),
            Some(Change::Regression)
        );
        assert_eq!(
            classify(&pass, &side(Verdict::Timeout, "")),
            Some(Change::Regression)
        );
        assert_eq!(classify(&fail, &pass), Some(Change::Fix));
        assert_eq!(classify(&fail, &fail), None);
        assert_eq!(
            classify(&fail, &side(Verdict::Fail, "reset")),
            Some(Change::Changed)
        );
        assert_eq!(
            classify(&fail, &side(Verdict::Crash, "refused")),
            Some(Change::Changed)
        );
        for odd in [Verdict::Unavailable, Verdict::InfraError, Verdict::Flaky] {
            assert_eq!(
                classify(&pass, &side(odd, "x")),
                Some(Change::NotComparable)
            );
            assert_eq!(
                classify(&side(odd, "x"), &fail),
                Some(Change::NotComparable)
            );
        }
        assert_eq!(
            classify(
                &side(Verdict::Unavailable, "x"),
                &side(Verdict::Unavailable, "x")
            ),
            None
        );
    }

    #[test]
    fn runs_diff_by_what_cells_are() {
        let old = vec![
            record("a", "v1", "baseline", "k1", Verdict::Pass, ""),
            record("b", "v1", "baseline", "k2", Verdict::Fail, "refused"),
            record("c", "v1", "baseline", "k3", Verdict::Pass, ""),
            record("d", "v1", "baseline", "k4", Verdict::Pass, ""),
        ];
        let new = vec![
            // Different ids: matching is by scenario/version/variant/kernel.
            record("A", "v1", "baseline", "k1", Verdict::Crash, "panic"),
            record("B", "v1", "baseline", "k2", Verdict::Pass, ""),
            record(
                "C",
                "v1",
                "baseline",
                "k3",
                Verdict::Unavailable,
                "no network",
            ),
            record("E", "v1", "baseline", "k5", Verdict::Pass, ""),
        ];
        let result = diff(&old, &new, false);
        assert_eq!(result.regressions(), 1);
        assert_eq!(result.count(Change::Fix), 1);
        assert_eq!(result.count(Change::NotComparable), 1);
        assert_eq!(result.count(Change::New), 1);
        assert_eq!(result.count(Change::Removed), 1);
        assert_eq!(result.changes[0].key.kernel, "k1");
        assert!(to_console(&result).contains("1 regressions, 1 fixes"));
    }

    #[test]
    fn ignoring_variants_compares_a_workaround_run_with_a_plain_one() {
        let with = vec![record("a", "v2", "workaround", "k1", Verdict::Pass, "")];
        let without = vec![record(
            "b",
            "v2",
            "baseline",
            "k1",
            Verdict::Fail,
            "EOPNOTSUPP",
        )];
        assert_eq!(diff(&with, &without, false).regressions(), 0);
        assert_eq!(diff(&with, &without, true).regressions(), 1);
    }

    #[test]
    fn version_to_version_names_the_workaround() {
        let run = vec![
            record("1", "v1.13", "baseline", "k", Verdict::Pass, ""),
            record(
                "2",
                "v1.14.0",
                "baseline",
                "k",
                Verdict::Fail,
                "IP_TRANSPARENT",
            ),
            record("3", "v1.13", "godebug", "k", Verdict::Pass, ""),
            record("4", "v1.14.0", "godebug", "k", Verdict::Pass, ""),
        ];
        let changes = diff_versions(&run, "v1.13", "v1.14.0");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].fixed_by, vec!["godebug".to_string()]);
        assert_eq!(
            versions_to_text("v1.13", "v1.14.0", &changes),
            "v1.14.0 regresses on k (s baseline): pass -> fail: IP_TRANSPARENT; fixed by godebug\n"
        );
    }
}
