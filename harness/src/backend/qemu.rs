//! The QEMU backend: one `qemu-system-x86_64` per boot, the kernel given
//! directly with an initramfs whose PID 1 is the agent. The first serial port
//! is the kernel console (kept in a file and scanned for crashes), the second
//! carries the agent's events on stdout. Every wait has a deadline.

use super::initramfs::write_initramfs;
use super::machine::{Machine, Running, Serial, STDERR_FILE};
use super::{said_done, Backend, BootEnd, BootOutcome, BootRequest};
use crate::cancel::{Cancel, Deadline};
use crate::provision::Emulator;
use kmatrix_agent::{GuestEvent, RESULTS_PORT_PARAM};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// The accelerator a guest runs under (spelled `tcg`/`kvm` in files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// The accelerator a results file names (`run.json`'s `accel`); `None`
    /// for anything else (`none`: the run booted no guest).
    pub fn from_name(name: &str) -> Option<Accel> {
        match name {
            "tcg" => Some(Accel::Tcg),
            "kvm" => Some(Accel::Kvm),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadlines {
    /// From start until the agent says hello.
    pub boot: Duration,
    /// Added to a cell's probe timeouts before the guest counts as hung.
    pub cell_grace: Duration,
    /// From the agent's last word until QEMU exits.
    pub shutdown: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            boot: Duration::from_secs(60),
            cell_grace: Duration::from_secs(20),
            shutdown: Duration::from_secs(15),
        }
    }
}

pub struct QemuBackend {
    pub emulator: Emulator,
    pub accel: Accel,
    pub memory_mb: u32,
    /// Virtual CPUs (`-smp`).
    pub cpus: u32,
    pub deadlines: Deadlines,
    pub interrupted: Cancel,
    /// Where each boot's initramfs is written and removed after the boot:
    /// outside the results directory, which keeps only logs.
    pub scratch: PathBuf,
    /// Keep the initramfs in the boot's log folder (`kmatrix repro`).
    pub keep_initramfs: bool,
    /// `kmatrix shell`: the guest's console is this process's terminal
    /// (QEMU's stdio), the results port a file, and no deadline applies.
    pub interactive: bool,
}

impl QemuBackend {
    pub fn new(emulator: Emulator, accel: Accel, interrupted: Cancel) -> Self {
        QemuBackend {
            emulator,
            accel,
            // Unused guest memory costs nothing under TCG; a Debian rootfs needs room.
            memory_mb: 1024,
            cpus: 1,
            deadlines: Deadlines::default(),
            interrupted,
            scratch: std::env::temp_dir(),
            keep_initramfs: false,
            interactive: false,
        }
    }

    /// The kernel command line: what every boot gets, then `extra`.
    pub fn cmdline(&self, extra: &[String]) -> String {
        let mut words: Vec<String> = [
            "console=ttyS0",
            "rdinit=/init",
            "panic=-1",
            "oops=panic",
            "loglevel=4",
            "random.trust_cpu=on",
            "mitigations=off",
            "cryptomgr.notests",
            "nokaslr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        words.push(format!("{RESULTS_PORT_PARAM}=/dev/ttyS1"));
        words.extend(extra.iter().cloned());
        words.join(" ")
    }

    /// The guest of a boot: this backend's emulator, accelerator and size,
    /// the console into `console` and the results port on QEMU's stdout
    /// (with `interactive`: the console on this terminal, the results port
    /// into a file beside where the console would be).
    pub fn machine(
        &self,
        kernel: &Path,
        initramfs: &Path,
        console: &Path,
        extra_cmdline: &[String],
    ) -> Machine {
        Machine {
            emulator: self.emulator.clone(),
            accel: self.accel,
            memory_mb: self.memory_mb,
            cpus: self.cpus,
            kernel: kernel.to_path_buf(),
            initramfs: initramfs.to_path_buf(),
            cmdline: self.cmdline(extra_cmdline),
            disks: Vec::new(),
            forwards: Vec::new(),
            serials: match self.interactive {
                true => vec![Serial::Terminal, Serial::File(results_port_file(console))],
                false => vec![Serial::File(console.to_path_buf()), Serial::Stdio],
            },
        }
    }

    /// The full QEMU argument list for a boot, so a person can paste it.
    pub fn command(
        &self,
        kernel: &Path,
        initramfs: &Path,
        console: &Path,
        extra_cmdline: &[String],
    ) -> Vec<String> {
        self.machine(kernel, initramfs, console, extra_cmdline)
            .args()
    }
}

impl Backend for QemuBackend {
    fn name(&self) -> String {
        format!("qemu-{}", self.accel.as_str())
    }

    fn emulator(&self) -> Option<String> {
        Some(self.emulator.version.clone())
    }

    fn boot(&self, request: &BootRequest, on_event: &mut dyn FnMut(&GuestEvent)) -> BootOutcome {
        let mut outcome = BootOutcome::starting(request, self.name());
        let console_path = outcome.console_path.clone();
        let Some(kernel) = request.environment.kernel() else {
            outcome.end = BootEnd::BackendFailed {
                detail: format!(
                    "{} is a container engine, not a kernel QEMU can boot",
                    request.environment.id()
                ),
            };
            return outcome;
        };
        let (scratch, initramfs) = match self.initramfs(request) {
            Ok(made) => made,
            Err(detail) => {
                outcome.end = BootEnd::BackendFailed { detail };
                return outcome;
            }
        };
        let mut kernel_args = request.kernel_args.clone();
        if self.interactive {
            // The user's terminal shows the console: only what matters.
            kernel_args.push("quiet".into());
        }
        let mut machine = self.machine(&kernel.boot.path, &initramfs, &console_path, &kernel_args);
        machine.disks = request.disks.iter().map(|d| d.host_path.clone()).collect();
        let mut note = format!("# kernel: {} ({})", kernel.boot.how, kernel.image.display());
        if !self.keep_initramfs {
            note = format!(
                "# the initramfs was removed after the boot; `kmatrix repro CELL` keeps one\n{note}"
            );
        }
        let mut running = match Running::spawn(&machine, &request.log_dir, &note) {
            Ok(running) => running,
            Err(e) => {
                outcome.end = BootEnd::BackendFailed {
                    detail: format!(
                        "cannot start {}: {e} (install Debian's qemu-system-x86)",
                        self.emulator.binary.display()
                    ),
                };
                return outcome;
            }
        };
        let stderr_path = request.log_dir.join(STDERR_FILE);
        if self.interactive {
            outcome.end = self.attend(
                &mut running,
                &stderr_path,
                &console_path,
                &mut outcome.events,
            );
            return outcome;
        }
        let lines = running.lines();
        outcome.end = self.supervise(request, &mut running, &lines, &mut outcome.events, on_event);
        // Drain what is left: events written just before the guest stopped.
        while let Ok(line) = lines.try_recv() {
            if let Some(event) = GuestEvent::from_line(&line) {
                on_event(&event);
                outcome.events.push(event);
            }
        }
        running.wait();
        drop(running);
        drop(scratch);
        outcome.console = fs::read_to_string(&console_path)
            .map(|s| s.replace('\r', ""))
            .unwrap_or_default();
        if outcome.end == BootEnd::Completed && !said_done(&outcome.events) {
            outcome.end =
                stopped_early(&stderr_path, "the guest stopped before the agent finished");
        }
        outcome
    }
}

impl QemuBackend {
    /// The boot's initramfs, written: outside the results directory in a
    /// scratch folder removed with the returned guard, or (for `repro`) in
    /// the boot's log folder.
    fn initramfs(&self, request: &BootRequest) -> Result<(tempfile::TempDir, PathBuf), String> {
        let scratch = fs::create_dir_all(&request.log_dir)
            .and_then(|_| {
                tempfile::Builder::new()
                    .prefix("kmatrix-boot-")
                    .tempdir_in(&self.scratch)
            })
            .map_err(|e| {
                format!(
                    "cannot make a scratch folder in {}: {e}",
                    self.scratch.display()
                )
            })?;
        let initramfs = match self.keep_initramfs {
            true => request.log_dir.join("initramfs.cpio"),
            false => scratch.path().join("initramfs.cpio"),
        };
        write_initramfs(request, &initramfs)
            .map_err(|e| format!("cannot write the initramfs {}: {e}", initramfs.display()))?;
        Ok((scratch, initramfs))
    }

    /// An interactive boot (`kmatrix shell`): QEMU on this terminal until
    /// the guest powers off (or the user quits QEMU, or the run is
    /// stopped); the agent's events are read from their file afterwards.
    fn attend(
        &self,
        running: &mut Running,
        stderr_path: &Path,
        console: &Path,
        events: &mut Vec<GuestEvent>,
    ) -> BootEnd {
        let end = loop {
            if self.interrupted.is_cancelled() {
                running.kill();
                break BootEnd::Interrupted;
            }
            if running.exited() {
                break BootEnd::Completed;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let port = fs::read_to_string(results_port_file(console)).unwrap_or_default();
        events.extend(port.lines().filter_map(GuestEvent::from_line));
        if end == BootEnd::Completed && !said_done(events) {
            return stopped_early(
                stderr_path,
                "QEMU stopped before the agent finished (Ctrl-A X?)",
            );
        }
        end
    }

    fn supervise(
        &self,
        request: &BootRequest,
        running: &mut Running,
        lines: &mpsc::Receiver<String>,
        events: &mut Vec<GuestEvent>,
        on_event: &mut dyn FnMut(&GuestEvent),
    ) -> BootEnd {
        let cell_budgets: BTreeMap<&str, Duration> = request
            .job
            .cells
            .iter()
            .map(|cell| {
                let probes: u64 = cell.probes.iter().map(|p| p.timeout_ms).sum();
                (
                    cell.cell_id.as_str(),
                    Duration::from_millis(probes) + self.deadlines.cell_grace,
                )
            })
            .collect();
        let mut waiting_for = "the agent to start (kernel boot)".to_string();
        let mut deadline = Deadline::after(self.deadlines.boot);
        loop {
            if self.interrupted.is_cancelled() {
                running.kill();
                return BootEnd::Interrupted;
            }
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let Some(event) = GuestEvent::from_line(&line) else {
                        continue;
                    };
                    on_event(&event);
                    (waiting_for, deadline) = match &event {
                        GuestEvent::CellStart { cell_id } => (
                            format!("cell {cell_id} to finish"),
                            Deadline::after(
                                cell_budgets
                                    .get(cell_id.as_str())
                                    .copied()
                                    .unwrap_or(self.deadlines.cell_grace),
                            ),
                        ),
                        GuestEvent::Done => (
                            "the guest to power off".into(),
                            Deadline::after(self.deadlines.shutdown),
                        ),
                        _ => (waiting_for, deadline),
                    };
                    events.push(event);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: QEMU is exiting.
                    return BootEnd::Completed;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if running.exited() {
                return BootEnd::Completed;
            }
            if deadline.passed() {
                running.kill();
                if said_done(events) {
                    // Every result is in; a guest slow to power off costs nothing.
                    return BootEnd::Completed;
                }
                return BootEnd::DeadlineExceeded { waiting_for };
            }
        }
    }
}

/// A boot QEMU ended without the agent's last word: the guest stopped
/// early, and QEMU's last line on stderr (if any) says why.
fn stopped_early(stderr_path: &Path, otherwise: &str) -> BootEnd {
    let stderr = fs::read_to_string(stderr_path).unwrap_or_default();
    BootEnd::GuestDied {
        detail: match stderr.lines().rfind(|l| !l.trim().is_empty()) {
            Some(line) => format!("qemu: {line}"),
            None => otherwise.into(),
        },
    }
}

/// Where an interactive boot's agent events go: beside its console log.
fn results_port_file(console: &Path) -> PathBuf {
    console.with_file_name("results-port.log")
}

/// The pasteable command line of a boot (kept here for its callers).
pub use super::machine::shell_words;
