use serde::{Deserialize, Serialize};

/// The run's facts, next to `cells.jsonl` in every run directory.
pub const RUN_FILE: &str = "run.json";

/// Facts about a run as a whole (`run.json`). Fields are only ever added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub harness_version: String,
    /// RFC 3339, UTC; a resumed run keeps the first start.
    pub started: String,
    /// Null while running, and when the run was interrupted.
    pub finished: Option<String>,
    /// "tcg", "kvm", or "none" when no guest was needed.
    pub accel: String,
    pub accel_reason: String,
    pub cache: CacheStats,
    /// The command line that started the run.
    pub command: Vec<String>,
}

/// What the artifact cache did during a run: a second identical run makes nothing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheStats {
    pub reused: usize,
    pub made: usize,
}
