use crate::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file `kmatrix bisect` writes beside the cells it ran.
pub const BISECT_FILE: &str = "bisect.json";

/// `bisect.json`: where along an ordered axis (kernels by version, or
/// component versions in the order given) one scenario/variant's verdict
/// changes. Fields are only ever added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BisectResult {
    /// `kernel` or `version`: what varied.
    pub axis: String,
    /// The adjacent pair where the verdict changes, `[BEFORE, AFTER]` in axis
    /// order; null when the ends agree or a point could not be judged.
    pub boundary: Option<[String; 2]>,
    /// Every point judged (reused from the run directory or run now):
    /// id → verdict. Points that could not be judged (`unavailable`, `flaky`,
    /// `infra-error` after retries) are here too, never taken as either side.
    pub verdicts: BTreeMap<String, Verdict>,
    /// Boots this bisection spent (cells reused from the directory cost none).
    pub boots: u32,
    /// The axis in the order searched.
    #[serde(default)]
    pub order: Vec<String>,
    /// False when the points seen contradict a single change along the axis.
    #[serde(default = "yes")]
    pub monotonic: bool,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub variant: String,
    /// The value held fixed: the version (kernel axis) or the kernel.
    #[serde(default)]
    pub fixed: String,
    /// The sentence printed on the console.
    #[serde(default)]
    pub summary: String,
}

fn yes() -> bool {
    true
}
