//! The backends of a run, built in one place from one settings value: the
//! QEMU backend for kernels, the container backend for `docker`, the
//! Kubernetes backend for clusters (its guest clusters on the same emulator
//! and accelerator as the cells).

use super::docker::DockerBackend;
use super::kubernetes::{guest::GuestVm, KubernetesBackend};
use super::qemu::{Accel, QemuBackend};
use super::Backends;
use crate::cancel::Cancel;
use crate::provision::Emulator;
use std::path::PathBuf;

/// What every backend of a run is built from.
pub struct BackendSettings {
    pub emulator: Emulator,
    pub accel: Accel,
    /// The run's folder (container labels name it).
    pub run_dir: PathBuf,
    /// Where boots keep what they need only while they run.
    pub scratch: PathBuf,
    /// Keep each boot's initramfs in its log folder (`kmatrix repro`).
    pub keep_initramfs: bool,
    /// `kmatrix shell`: the guest's console on this terminal.
    pub interactive: bool,
    pub interrupted: Cancel,
}

/// The built backends; [`BackendSet::backends`] lends them to the runner.
pub struct BackendSet {
    pub qemu: QemuBackend,
    pub docker: DockerBackend,
    pub kubernetes: KubernetesBackend,
}

impl BackendSet {
    pub fn build(settings: BackendSettings) -> BackendSet {
        let mut qemu = QemuBackend::new(
            settings.emulator.clone(),
            settings.accel,
            settings.interrupted.clone(),
        );
        qemu.scratch = settings.scratch.clone();
        qemu.keep_initramfs = settings.keep_initramfs;
        qemu.interactive = settings.interactive;
        let docker = DockerBackend::new(
            settings.interrupted.clone(),
            &settings.run_dir,
            &settings.scratch,
        );
        let mut kubernetes = KubernetesBackend::new(settings.interrupted, &settings.scratch);
        kubernetes.vm = Some(GuestVm {
            emulator: settings.emulator,
            accel: settings.accel,
        });
        BackendSet {
            qemu,
            docker,
            kubernetes,
        }
    }

    pub fn backends(&self) -> Backends<'_> {
        Backends {
            vm: &self.qemu,
            container: &self.docker,
            cluster: &self.kubernetes,
        }
    }
}
