use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// The command line that started the run (a resume never replaces it).
    pub command: Vec<String>,
    /// The project (its root folder) the run came from: `run --resume DIR`
    /// from another folder plans with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// What the run was asked to cover; `--resume` plans exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<RunSelection>,
    /// Each `--resume` of the run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<ResumeEntry>,
    /// The emulator's own version line, e.g. "QEMU emulator version 10.0.2 (Debian …)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<String>,
    /// Where the emulator came from: the pinned package, or the host's and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_origin: Option<String>,
    /// Per boot group (kernel, or kernel+command-line words): boots and guest deaths.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub boots: BTreeMap<String, BootStats>,
    /// The container engine that ran the `docker` column, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_engine: Option<ContainerEngine>,
    /// The harness process's own peak resident memory (VmHWM, KiB), the
    /// VMs and other children not counted; the last invocation's, on a
    /// resumed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_peak_rss_kib: Option<u64>,
    /// Wall time of the last invocation (run or resume), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// The Kubernetes the run's clusters run (`v1.34.4`; kind's node
    /// image for kind), when a cell of it is on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
}

/// A container engine as a run met it (the `docker` environment).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerEngine {
    /// `DOCKER_HOST`, or the default socket.
    pub endpoint: String,
    /// e.g. "Docker Engine 20.10.24+dfsg1".
    pub version: String,
    pub api_version: String,
    /// The host kernel's release: what every container ran on.
    pub host_kernel: String,
    #[serde(default)]
    pub storage_driver: String,
    #[serde(default)]
    pub cgroup_version: String,
}

/// The cells a run covers, as the user selected them (empty = all).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunSelection {
    #[serde(default)]
    pub scenarios: Vec<String>,
    #[serde(default)]
    pub kernels: Vec<String>,
    #[serde(default)]
    pub variants: Vec<String>,
    #[serde(default)]
    pub cells: Vec<String>,
    /// Component versions the run was narrowed to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// "I/N", when the run is one shard of a plan.
    #[serde(default)]
    pub shard: Option<String>,
    #[serde(default)]
    pub retries: u32,
    /// Versions given on the command line for this run (`--add-version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_versions: Vec<String>,
    /// The Kubernetes release asked for with `--kubernetes` (none: the
    /// project's default release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
}

/// One `kmatrix run --resume` of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub command: Vec<String>,
    /// When options given with `--resume` narrowed the run: what this resume covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrowed_to: Option<RunSelection>,
}

/// What the guests of one boot group did during a run. A death is any boot
/// that ended before the agent said it was done.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootStats {
    pub boots: u32,
    pub deaths: u32,
    /// Wall time of all its boots together.
    #[serde(default)]
    pub duration_ms: u64,
    /// One line per death: when it struck (during which cell, or before the
    /// agent started) and its signature.
    #[serde(default)]
    pub death_signatures: Vec<String>,
    /// Of `duration_ms`, the time until the agent said hello (kernel boot
    /// and agent start), all boots together.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub ready_ms: u64,
    /// Each cell's wall time in its guest, from its start to its end as the
    /// host saw them (deployment included; the record's `duration_ms` sums
    /// only its probes). The last attempt's, when a cell ran again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cells_ms: BTreeMap<String, u64>,
}

impl BootStats {
    /// Adds what another pass (a retry, a resume) of the same boot group did.
    pub fn absorb(&mut self, more: BootStats) {
        self.boots += more.boots;
        self.deaths += more.deaths;
        self.duration_ms += more.duration_ms;
        self.ready_ms += more.ready_ms;
        self.death_signatures.extend(more.death_signatures);
        self.cells_ms.extend(more.cells_ms);
    }
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// What the artifact cache did during a run: a second identical run makes nothing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheStats {
    pub reused: usize,
    pub made: usize,
    /// Images exported from the local container engine into the cache
    /// (instead of pulled from their registry).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub from_engine: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
