use crate::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `matrix.json`: per scenario, version × variant rows and kernel columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Matrix {
    pub scenarios: Vec<ScenarioMatrix>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioMatrix {
    pub scenario: String,
    pub component: String,
    pub title: String,
    pub issue: String,
    /// Column order.
    pub kernels: Vec<KernelColumn>,
    pub rows: Vec<MatrixRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelColumn {
    pub id: String,
    /// The release the guest reported, when any cell booted it.
    pub release: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatrixRow {
    pub version: String,
    pub variant: String,
    /// How real the version's cells were (from their records; absent for
    /// records written before fidelity existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<crate::Fidelity>,
    /// Keyed by kernel id; a kernel missing here was not run for this row.
    pub cells: BTreeMap<String, MatrixCell>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatrixCell {
    pub verdict: Verdict,
    pub signature: String,
    pub cell_id: String,
}

impl MatrixCell {
    /// `verdict` or `verdict: signature`, as `matrix.csv` writes a cell.
    pub fn text(&self) -> String {
        if self.signature.is_empty() {
            self.verdict.to_string()
        } else {
            format!("{}: {}", self.verdict, self.signature)
        }
    }
}
