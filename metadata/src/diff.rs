use crate::Verdict;
use serde::{Deserialize, Serialize};

/// What a cell is, independent of the inputs' hashes: diffs match on this.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    pub scenario: String,
    pub version: String,
    /// Empty when variants are ignored (`--ignore-variant`).
    pub variant: String,
    pub kernel: String,
}

impl CellKey {
    /// "scenario version variant on kernel" (no variant when ignored).
    pub fn label(&self) -> String {
        let mut label = format!("{} {}", self.scenario, self.version);
        if !self.variant.is_empty() {
            label.push(' ');
            label.push_str(&self.variant);
        }
        format!("{label} on {}", self.kernel)
    }
}

/// How a cell differs between two sides, in the order reports list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// pass → fail, crash or timeout: gates CI.
    Regression,
    /// fail, crash or timeout → pass.
    Fix,
    /// Still failing, but differently (verdict or signature).
    Changed,
    New,
    Removed,
    /// unavailable, infra-error or flaky on either side: not comparable, never a regression.
    NotComparable,
}

impl Change {
    pub const ALL: [Change; 6] = [
        Change::Regression,
        Change::Fix,
        Change::Changed,
        Change::New,
        Change::Removed,
        Change::NotComparable,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Change::Regression => "Regressions",
            Change::Fix => "Fixes",
            Change::Changed => "Changed failures",
            Change::New => "New cells",
            Change::Removed => "Removed cells",
            Change::NotComparable => "Not comparable (unavailable, infra-error or flaky on a side)",
        }
    }
}

/// One side of a compared cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    pub verdict: Verdict,
    pub signature: String,
}

impl Side {
    /// `verdict` or `verdict: signature`.
    pub fn text(&self) -> String {
        if self.signature.is_empty() {
            self.verdict.to_string()
        } else {
            format!("{}: {}", self.verdict, self.signature)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellChange {
    pub change: Change,
    pub key: CellKey,
    pub old: Option<Side>,
    pub new: Option<Side>,
}

/// `kmatrix diff --format json` of two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    pub changes: Vec<CellChange>,
    pub unchanged: usize,
}

impl Diff {
    pub fn regressions(&self) -> usize {
        self.count(Change::Regression)
    }

    pub fn count(&self, change: Change) -> usize {
        self.changes.iter().filter(|c| c.change == change).count()
    }

    /// "1 regressions, 0 fixes, ..., 12 unchanged".
    pub fn summary(&self) -> String {
        format!(
            "{} regressions, {} fixes, {} changed, {} new, {} removed, {} not comparable, {} unchanged",
            self.count(Change::Regression),
            self.count(Change::Fix),
            self.count(Change::Changed),
            self.count(Change::New),
            self.count(Change::Removed),
            self.count(Change::NotComparable),
            self.unchanged
        )
    }
}

/// `kmatrix diff --versions OLD NEW --format json`: one entry per kernel
/// and variant where the two versions differ inside one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionChange {
    pub change: Change,
    pub scenario: String,
    pub variant: String,
    pub kernel: String,
    pub old: Side,
    pub new: Side,
    /// Variants under which the newer version passes on that kernel.
    pub fixed_by: Vec<String>,
}
