//! Choosing between KVM and TCG. `/dev/kvm` existing is not enough: on some
//! hosts a guest under KVM hangs or aborts. So `auto` boots one real guest
//! under KVM and keeps KVM only if the agent answers; the answer is
//! remembered per host boot (`/proc/sys/kernel/random/boot_id`).

use super::qemu::{Accel, QemuBackend};
use super::{entropy_seed, Backend, BootRequest};
use crate::cancel::Cancel;
use crate::provision::{Emulator, KernelArtifact};
use kmatrix_agent::Job;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if a test guest really runs under it here, else TCG.
    Auto,
    Tcg,
    Kvm,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccelDecision {
    /// `None` when the run needed no guest (nothing was decided).
    pub accel: Option<Accel>,
    pub reason: String,
}

impl AccelDecision {
    /// What a guest boots under (TCG when nothing was decided).
    pub fn accel(&self) -> Accel {
        self.accel.unwrap_or(Accel::Tcg)
    }

    /// As results files spell it: `kvm`, `tcg`, or `none`.
    pub fn name(&self) -> &'static str {
        self.accel.map_or("none", Accel::as_str)
    }
}

/// Decides the accelerator. `probe_kvm` boots a test guest under KVM and
/// says whether the agent answered (with a reason when it did not).
pub fn decide(
    choice: AccelChoice,
    cache_root: &Path,
    probe_kvm: impl FnOnce() -> Result<(), String>,
) -> AccelDecision {
    let decision = |accel: Accel, reason: String| AccelDecision {
        accel: Some(accel),
        reason,
    };
    match choice {
        AccelChoice::Tcg => return decision(Accel::Tcg, "TCG requested (--accel tcg)".into()),
        AccelChoice::Kvm => return decision(Accel::Kvm, "KVM requested (--accel kvm)".into()),
        AccelChoice::Auto => {}
    }
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return decision(Accel::Tcg, format!("no usable /dev/kvm ({e}); using TCG"));
    }
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let remembered = cache_root.join("accel").join(format!("{boot_id}.json"));
    if let Some(known) = fs::read(&remembered)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<AccelDecision>(&bytes).ok())
    {
        return known;
    }
    let decided = match probe_kvm() {
        Ok(()) => decision(Accel::Kvm, "a test guest ran under KVM".into()),
        Err(why) => decision(
            Accel::Tcg,
            format!("/dev/kvm exists but a test guest did not run under KVM ({why}); using TCG"),
        ),
    };
    if let Some(parent) = remembered.parent() {
        let _ = fs::create_dir_all(parent);
        let _ = fs::write(
            &remembered,
            serde_json::to_vec(&decided).unwrap_or_default(),
        );
    }
    decided
}

/// Boots a guest under KVM with no cells and says whether the agent answered.
pub fn probe_kvm(
    emulator: &Emulator,
    kernel: &KernelArtifact,
    agent: &Path,
    log_dir: &Path,
    interrupted: Cancel,
) -> Result<(), String> {
    let mut backend = QemuBackend::new(emulator.clone(), Accel::Kvm, interrupted);
    backend.deadlines.boot = Duration::from_secs(20);
    let request = BootRequest {
        label: "kvm probe".into(),
        environment: crate::provision::Environment::Kernel(kernel.clone()),
        agent: agent.to_path_buf(),
        files: Vec::new(),
        rootfs: Vec::new(),
        kernel_args: Vec::new(),
        kube_proxy: None,
        disks: Vec::new(),
        job: Job {
            entropy_seed_hex: entropy_seed(),
            modules: Vec::new(),
            disks: Vec::new(),
            sealed_binaries: Vec::new(),
            cells: Vec::new(),
            shell: false,
        },
        log_dir: log_dir.to_path_buf(),
        workloads: Vec::new(),
    };
    let outcome = backend.boot(&request, &mut |_| {});
    match outcome.finished() {
        true => Ok(()),
        false => Err(outcome.end.describe()),
    }
}

#[cfg(test)]
mod decision_tests {
    use super::*;

    #[test]
    fn a_remembered_decision_reads_back_typed_and_names_itself_as_files_do() {
        let remembered = r#"{"accel":"tcg","reason":"kvm aborted"}"#;
        let decision: AccelDecision = serde_json::from_str(remembered).unwrap();
        assert_eq!(decision.accel, Some(Accel::Tcg));
        assert_eq!(decision.name(), "tcg");
        assert_eq!(serde_json::to_string(&decision).unwrap(), remembered);
        let none = AccelDecision {
            accel: None,
            reason: "no cell needed a guest".into(),
        };
        assert_eq!((none.name(), none.accel()), ("none", Accel::Tcg));
        assert_eq!(Accel::from_name("kvm"), Some(Accel::Kvm));
        assert_eq!(Accel::from_name("none"), None);
    }
}
