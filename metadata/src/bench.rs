use serde::{Deserialize, Serialize};

/// What `kmatrix bench` writes into its folder.
pub const BENCH_FILE: &str = "bench.json";

/// The figure every other is divided by: bare QEMU booting the kernel the
/// way kmatrix does, into an init that only powers off.
pub const BENCH_FLOOR: &str = "bare-qemu";

/// One `kmatrix bench` (`bench.json`): each figure timed in alternating
/// rounds in one invocation, on one kernel. Fields are only ever added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchResult {
    pub harness_version: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub machine: BenchMachine,
    /// The emulator's own version line.
    pub emulator: String,
    /// "tcg" or "kvm", and why.
    pub accel: String,
    pub accel_reason: String,
    /// The catalog kernel every figure boots, and what the guest said it is.
    pub kernel: String,
    #[serde(default)]
    pub kernel_release: Option<String>,
    /// How kmatrix boots it (`vmlinux through its PVH entry`, or why not).
    pub boot_image: String,
    pub scenario: String,
    /// The cells of the N-cell figures; the first is the one-cell figure's.
    pub cells: Vec<String>,
    pub rounds: u32,
    pub figures: Vec<BenchFigure>,
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BenchMachine {
    pub cpus: usize,
    pub memory_mb: u64,
    pub cpu_model: String,
    /// The host's `uname -r`.
    pub host_kernel: String,
}

/// One thing timed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BenchFigure {
    /// e.g. "bare-qemu", "kmatrix-one-cell", "virtme-ng".
    pub id: String,
    /// One line a reader understands.
    pub what: String,
    /// Each round's wall time, in the order taken.
    pub runs_ms: Vec<u64>,
    pub median_ms: Option<u64>,
    /// `median_ms` over the floor's (`BENCH_FLOOR`).
    pub vs_floor: Option<f64>,
    /// `median_ms` over kmatrix's one-cell figure: what the same work
    /// costs elsewhere.
    pub vs_kmatrix_one_cell: Option<f64>,
    /// Why this figure has no times (a peer that cannot run here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// The command timed, so a person can run it by hand.
    pub command: String,
    /// What it took to make it run here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
