use crate::Fidelity;
use crate::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One line of `cells.jsonl`: one cell (scenario × version × variant ×
/// kernel) and what became of it. Fields are only ever added, never renamed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellRecord {
    /// 16 hex digits, a stable hash of every input of the cell.
    pub cell_id: String,
    pub scenario: String,
    pub component: String,
    /// The upstream release tag.
    pub version: String,
    pub variant: String,
    /// Catalog id of the kernel.
    pub kernel: String,
    /// What `uname -r` said in the guest; null if it never booted.
    pub kernel_release: Option<String>,
    pub verdict: Verdict,
    /// A short normalised reason (addresses, ports, timestamps taken out).
    pub signature: String,
    /// Time spent in the cell's probes.
    pub duration_ms: u64,
    /// What the guest saw of its kernel (MPTCP, IPv6, modules...).
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub probes: Vec<ProbeRecord>,
    /// How many boots it took (retries after infrastructure faults count).
    #[serde(default)]
    pub attempts: u32,
    /// "qemu-tcg", "qemu-kvm", or null when nothing ran.
    #[serde(default)]
    pub backend: Option<String>,
    /// Console log of the boot that produced the verdict, relative to the run dir.
    #[serde(default)]
    pub console_log: Option<String>,
    /// With `--retries`: how often the cell passed and failed in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<RunCounts>,
    /// The emulator the verdict was observed under (its version line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<String>,
    /// How real the component was: `release`, `upstream-code` or
    /// `stand-in`; absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<Fidelity>,
    /// What ran, in words: the release's origin, or why a stand-in ran
    /// where nothing more real could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity_note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunCounts {
    pub passed: u32,
    pub failed: u32,
}

/// One probe of a cell, as the guest ran it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeRecord {
    pub probe_id: String,
    pub verdict: Verdict,
    pub signature: String,
    /// "exit 0", "signal 11", "timed out", "not started: …".
    pub exit: String,
    /// At most 16 KiB each.
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

impl CellRecord {
    /// "kube-ovn-tproxy v1.14.0 baseline on ubuntu-22.04".
    pub fn label(&self) -> String {
        format!(
            "{} {} {} on {}",
            self.scenario, self.version, self.variant, self.kernel
        )
    }
}
