//! Backends boot an environment, hand it a job, and report what the guest
//! said. They know nothing of verdicts or reports: the runner turns their
//! [`BootOutcome`] into cell results. `qemu.rs` is the QEMU driver,
//! `initramfs.rs` the newc writer it packs jobs with, `accel.rs` the
//! KVM-or-TCG decision.

pub mod accel;
pub mod docker;
pub mod initramfs;
pub mod kubernetes;
pub mod machine;
pub mod qemu;
pub mod set;

use crate::provision::Environment;
use kmatrix_agent::{GuestEvent, Job};
use std::io::Read;
use std::path::PathBuf;

/// A host file placed into the guest.
#[derive(Debug, Clone)]
pub struct GuestFile {
    pub guest_path: String,
    pub host_path: PathBuf,
}

/// A file system image attached as a read-only virtio disk and mounted by
/// the agent (`/dev/vda`, `/dev/vdb`, ... in this order); a container gets
/// the same files as a read-only bind mount of `tree`.
#[derive(Debug, Clone)]
pub struct GuestDisk {
    pub host_path: PathBuf,
    pub tree: PathBuf,
    pub mount_point: String,
}

#[derive(Debug, Clone)]
pub struct BootRequest {
    /// Names this boot in logs and progress, e.g. "debian-6.1 boot 1".
    pub label: String,
    /// The kernel to boot, or the container engine to run on.
    pub environment: Environment,
    pub agent: PathBuf,
    pub files: Vec<GuestFile>,
    /// Root filesystem trees (Debian userspace) laid under `/`.
    pub rootfs: Vec<PathBuf>,
    /// Extra kernel command-line words for this boot.
    pub kernel_args: Vec<String>,
    /// On a cluster: kube-proxy's mode for this boot (its cells share it;
    /// `None`: iptables, kube-proxy's default).
    pub kube_proxy: Option<crate::inputs::scenario::KubeProxyMode>,
    /// Read-only disks, in the order the job's `disks` name them.
    pub disks: Vec<GuestDisk>,
    pub job: Job,
    /// Where the backend keeps this boot's console and logs.
    pub log_dir: PathBuf,
    /// On a Kubernetes environment: each cell's workload, in job order.
    pub workloads: Vec<Workload>,
}

/// One cell as a Kubernetes backend deploys it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub cell_id: String,
    pub kube: crate::plan::KubeWork,
    /// The cell's probes (the rollout first): their deadlines.
    pub probes: Vec<crate::plan::CellProbe>,
    /// The version's reproducer on the host: the workload image's program
    /// (a stand-in), or the probe pods' driver beside a real image.
    pub reproducer: Option<PathBuf>,
    /// The version's real image (a registry image, a package, a module
    /// build), flattened: what the workload runs when the version is real.
    pub real_image: Option<crate::provision::ImageArtifact>,
}

/// Why a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// The agent reported every cell and the guest shut down.
    Completed,
    /// The guest stopped before the agent finished (kernel crash, reset).
    GuestDied { detail: String },
    /// Nothing arrived before a deadline; the backend killed the guest.
    DeadlineExceeded { waiting_for: String },
    /// The user interrupted the run.
    Interrupted,
    /// The backend itself could not run (emulator missing, bad arguments).
    BackendFailed { detail: String },
}

impl BootEnd {
    /// How the boot ended, in words for signatures and logs.
    pub fn describe(&self) -> String {
        match self {
            BootEnd::Completed => "completed".into(),
            BootEnd::GuestDied { detail } => format!("guest died ({detail})"),
            BootEnd::DeadlineExceeded { waiting_for } => {
                format!("deadline exceeded waiting for {waiting_for}")
            }
            BootEnd::Interrupted => "interrupted".into(),
            BootEnd::BackendFailed { detail } => format!("backend failed: {detail}"),
        }
    }
}

/// Random bytes (hex) for a job's entropy seed: the agent credits them to
/// the guest's pool, so programs reading `getrandom` do not stall.
pub fn entropy_seed() -> String {
    let mut bytes = [0u8; 64];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = random.read_exact(&mut bytes);
    }
    hex::encode(bytes)
}

#[derive(Debug, Clone)]
pub struct BootOutcome {
    pub events: Vec<GuestEvent>,
    pub console: String,
    /// Console log on disk.
    pub console_path: PathBuf,
    pub end: BootEnd,
    /// "qemu-tcg", "qemu-kvm", ...
    pub backend: String,
}

/// The backends of a run, one per kind of environment.
#[derive(Clone, Copy)]
pub struct Backends<'a> {
    pub vm: &'a dyn Backend,
    pub container: &'a dyn Backend,
    pub cluster: &'a dyn Backend,
}

impl<'a> Backends<'a> {
    pub fn for_environment(&self, environment: &Environment) -> &'a dyn Backend {
        if environment.is_container() {
            self.container
        } else if environment.is_cluster() {
            self.cluster
        } else {
            self.vm
        }
    }
}

/// Whether the agent said it was done: every result of the job is in.
pub fn said_done(events: &[GuestEvent]) -> bool {
    events.iter().any(|e| matches!(e, GuestEvent::Done))
}

impl BootOutcome {
    /// The guest ran its job to the end: the backend completed the boot
    /// and the agent said it was done.
    pub fn finished(&self) -> bool {
        self.end == BootEnd::Completed && said_done(&self.events)
    }

    /// A boot of `request` by `backend` that has not ended yet: nothing
    /// said, its console at `<log_dir>/console.log`.
    pub fn starting(request: &BootRequest, backend: String) -> BootOutcome {
        BootOutcome {
            events: Vec::new(),
            console: String::new(),
            console_path: request.log_dir.join("console.log"),
            end: BootEnd::Completed,
            backend,
        }
    }
}

pub trait Backend: Sync {
    fn name(&self) -> String;
    /// The emulator's version line, recorded on every cell it ran.
    fn emulator(&self) -> Option<String> {
        None
    }
    /// Boots once, runs the job, and returns whatever the guest reported.
    /// `on_event` sees each event as it arrives (for progress display).
    fn boot(&self, request: &BootRequest, on_event: &mut dyn FnMut(&GuestEvent)) -> BootOutcome;
}
