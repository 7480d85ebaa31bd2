//! The contract between the harness and the guest agent.
//!
//! The harness writes a [`Job`] as JSON into the initramfs at [`JOB_PATH`].
//! The agent answers with one [`GuestEvent`] per line on the results port,
//! each line prefixed with [`EVENT_PREFIX`] so that stray bytes on the port
//! (a kernel message, a getty) can never be mistaken for a result.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the job description lives inside the guest.
pub const JOB_PATH: &str = "/kmatrix/job.json";
/// Kernel command-line key naming the serial device the agent reports on.
pub const RESULTS_PORT_PARAM: &str = "kmatrix.results";
/// The serial device used when the command line does not name one.
pub const DEFAULT_RESULTS_PORT: &str = "/dev/ttyS1";
/// Set in the environment of an agent that runs as a container's
/// entrypoint: the container engine made the mounts and owns the
/// container's end, the events go to stdout, and kernel modules are the
/// host's (reported, never loaded).
pub const CONTAINER_MODE_ENV: &str = "KMATRIX_AGENT_CONTAINER";
/// Every event line starts with this marker.
pub const EVENT_PREFIX: &str = "KMATRIX-EVENT ";

/// Everything one boot has to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// Random bytes (hex) the agent credits to the kernel's entropy pool,
    /// so that programs reading `getrandom` do not stall in an emulated guest.
    pub entropy_seed_hex: String,
    /// Kernel modules to load before any cell runs, in load order (dependencies first).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Block devices to mount read-only before any cell runs (artifact
    /// root file systems on virtio disks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<JobDisk>,
    /// Binaries the agent seals before any cell runs: the container
    /// runtime. crun guards against CVE-2019-5736 by copying itself out of
    /// a writable file system and re-executing the copy, and that
    /// re-execution fails on some kernels (Debian's 5.10: `execveat` of its
    /// detached bind mount gives ENOENT). On a read-only mount, with crun's
    /// `_LIBCONTAINER_CLONED_BINARY=1`, it runs in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed_binaries: Vec<String>,
    pub cells: Vec<JobCell>,
    /// `kmatrix shell`: once the guest is prepared as for the cells, the
    /// agent runs an interactive shell on the console instead of the
    /// cells (listed for the user, not run), and powers off when it exits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shell: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobDisk {
    /// `/dev/vda`, `/dev/vdb`, ... in the order the disks were attached.
    pub device: String,
    pub mount_point: String,
    /// `ext4` (what `mke2fs -d` made).
    pub fstype: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobCell {
    pub cell_id: String,
    pub probes: Vec<JobProbe>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobProbe {
    pub probe_id: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_ms: u64,
}

/// How a probe's process ended, as the guest saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProcessEnd {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    /// The agent killed it at its deadline.
    TimedOut,
    /// The program could not be started at all.
    SpawnFailed {
        error: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum GuestEvent {
    /// The agent is up; sent before any cell runs.
    Hello {
        kernel_release: String,
        facts: BTreeMap<String, String>,
    },
    CellStart {
        cell_id: String,
    },
    ProbeDone {
        cell_id: String,
        probe_id: String,
        end: ProcessEnd,
        stdout: String,
        stderr: String,
        duration_ms: u64,
    },
    CellDone {
        cell_id: String,
    },
    /// All cells ran; the guest powers off next.
    Done,
}

impl GuestEvent {
    pub fn to_line(&self) -> String {
        format!(
            "{EVENT_PREFIX}{}\n",
            serde_json::to_string(self).expect("guest events always serialise")
        )
    }

    /// Parses one line of the results port; `None` for anything that is not an event.
    pub fn from_line(line: &str) -> Option<GuestEvent> {
        let start = line.find(EVENT_PREFIX)?;
        serde_json::from_str(line[start + EVENT_PREFIX.len()..].trim_end()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_round_trip_and_ignore_noise() {
        let event = GuestEvent::ProbeDone {
            cell_id: "abc".into(),
            probe_id: "p".into(),
            end: ProcessEnd::Exited { code: 1 },
            stdout: "line\nwith \"quotes\"".into(),
            stderr: String::new(),
            duration_ms: 12,
        };
        let line = event.to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(GuestEvent::from_line(&line), Some(event.clone()));
        // A carriage return from the tty's output processing must not matter.
        let with_cr = format!("{}\r", line.trim_end());
        assert_eq!(GuestEvent::from_line(&with_cr), Some(event));
        assert_eq!(GuestEvent::from_line("[    1.0] random kernel noise"), None);
        assert_eq!(GuestEvent::from_line("KMATRIX-EVENT {torn"), None);
    }
}
