//! The QEMU backend: one `qemu-system-x86_64` per boot, the kernel given
//! directly with an initramfs whose PID 1 is the agent. The first serial port
//! is the kernel console (kept in a file and scanned for crashes), the second
//! carries the agent's events on stdout. Every wait has a deadline.

use super::initramfs::write_initramfs;
use super::{Backend, BootEnd, BootOutcome, BootRequest};
use crate::provision::Emulator;
use kmatrix_agent::{GuestEvent, RESULTS_PORT_PARAM};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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
    pub interrupted: Arc<AtomicBool>,
    /// Where each boot's initramfs is written and removed after the boot:
    /// outside the results directory, which keeps only logs.
    pub scratch: PathBuf,
    /// Keep the initramfs in the boot's log folder (`kmatrix repro`).
    pub keep_initramfs: bool,
    /// `kmatrix shell`: the guest's console is this process's terminal
    /// (QEMU's stdio), the results port a file, and no deadline applies.
    pub interactive: bool,
}

/// The host's qboot, when the emulator brings no firmware of its own.
const HOST_QBOOT: &str = "/usr/share/qemu/qboot.rom";
/// Written into a boot's log folder while its QEMU runs.
pub const PID_FILE: &str = "qemu.pid";

impl QemuBackend {
    pub fn new(emulator: Emulator, accel: Accel, interrupted: Arc<AtomicBool>) -> Self {
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

    fn qboot(&self) -> Option<PathBuf> {
        let own = self.emulator.firmware.as_ref().map(|f| f.join("qboot.rom"));
        own.filter(|p| p.is_file())
            .or_else(|| Some(PathBuf::from(HOST_QBOOT)).filter(|p| p.is_file()))
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

    /// The full QEMU argument list for a boot, so a person can paste it.
    pub fn command(
        &self,
        kernel: &Path,
        initramfs: &Path,
        console: &Path,
        extra_cmdline: &[String],
    ) -> Vec<String> {
        let mut args: Vec<String> = vec![self.emulator.binary.display().to_string()];
        if let Some(firmware) = &self.emulator.firmware {
            args.extend(["-L".into(), firmware.display().to_string()]);
        }
        args.extend([
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
        ]);
        if let Some(qboot) = self.qboot() {
            // qboot skips SeaBIOS's device probing: about a second saved per boot.
            args.extend(["-bios".into(), qboot.display().to_string()]);
        }
        match self.accel {
            Accel::Tcg => args.extend(["-accel".into(), "tcg".into(), "-cpu".into(), "max".into()]),
            Accel::Kvm => {
                args.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()])
            }
        }
        args.extend([
            "-m".into(),
            self.memory_mb.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-device".into(),
            "virtio-rng-pci".into(),
            "-kernel".into(),
            kernel.display().to_string(),
            "-initrd".into(),
            initramfs.display().to_string(),
            "-append".into(),
            self.cmdline(extra_cmdline),
        ]);
        if self.interactive {
            // The console is the user's terminal (Ctrl-A X quits QEMU); the
            // agent's few events go to a file beside where the console would be.
            args.extend([
                "-serial".into(),
                "mon:stdio".into(),
                "-serial".into(),
                format!("file:{}", results_port_file(console).display()),
            ]);
        } else {
            args.extend([
                "-serial".into(),
                format!("file:{}", console.display()),
                "-serial".into(),
                "stdio".into(),
            ]);
        }
        args
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
        // The initramfs lives outside the results directory (or in it, for
        // `repro`), and a scratch one is removed when the boot ends.
        let scratch = match fs::create_dir_all(&request.log_dir).and_then(|_| {
            tempfile::Builder::new()
                .prefix("kmatrix-boot-")
                .tempdir_in(&self.scratch)
        }) {
            Ok(dir) => dir,
            Err(e) => {
                outcome.end = BootEnd::BackendFailed {
                    detail: format!(
                        "cannot make a scratch folder in {}: {e}",
                        self.scratch.display()
                    ),
                };
                return outcome;
            }
        };
        let Some(kernel) = request.environment.kernel() else {
            outcome.end = BootEnd::BackendFailed {
                detail: format!(
                    "{} is a container engine, not a kernel QEMU can boot",
                    request.environment.id()
                ),
            };
            return outcome;
        };
        let initramfs = if self.keep_initramfs {
            request.log_dir.join("initramfs.cpio")
        } else {
            scratch.path().join("initramfs.cpio")
        };
        if let Err(e) = write_initramfs(request, &initramfs) {
            outcome.end = BootEnd::BackendFailed {
                detail: format!("cannot write the initramfs {}: {e}", initramfs.display()),
            };
            return outcome;
        }
        let mut kernel_args = request.kernel_args.clone();
        if self.interactive {
            // The user's terminal shows the console: only what matters.
            kernel_args.push("quiet".into());
        }
        let mut args = self.command(&kernel.boot.path, &initramfs, &console_path, &kernel_args);
        for disk in &request.disks {
            args.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,if=virtio,readonly=on",
                    disk.host_path.display()
                ),
            ]);
        }
        let mut command_text = format!(
            "# kernel: {} ({})\n{}",
            kernel.boot.how,
            kernel.image.display(),
            shell_words(&args)
        );
        if !self.keep_initramfs {
            command_text = format!(
                "# the initramfs was removed after the boot; `kmatrix repro CELL` keeps one\n{command_text}"
            );
        }
        let _ = fs::write(request.log_dir.join("qemu-command.txt"), command_text);
        let stderr_path = request.log_dir.join("qemu-stderr.log");
        if self.interactive {
            outcome.end = self.attend(&args, &stderr_path, &console_path, &mut outcome.events);
            return outcome;
        }
        let spawned = File::create(&stderr_path).and_then(|stderr| spawn(&args, stderr));
        let mut child = match spawned {
            Ok(child) => child,
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
        let pid_file = request.log_dir.join(PID_FILE);
        let _ = fs::write(&pid_file, child.id().to_string());
        let lines = read_lines(&mut child);
        outcome.end = self.supervise(request, &mut child, &lines, &mut outcome.events, on_event);
        // Drain what is left: events written just before the guest stopped.
        while let Ok(line) = lines.try_recv() {
            if let Some(event) = GuestEvent::from_line(&line) {
                on_event(&event);
                outcome.events.push(event);
            }
        }
        let _ = child.wait();
        let _ = fs::remove_file(&pid_file);
        drop(scratch);
        outcome.console = fs::read_to_string(&console_path)
            .map(|s| s.replace('\r', ""))
            .unwrap_or_default();
        if outcome.end == BootEnd::Completed
            && !outcome.events.iter().any(|e| matches!(e, GuestEvent::Done))
        {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            outcome.end = BootEnd::GuestDied {
                detail: if stderr.trim().is_empty() {
                    "the guest stopped before the agent finished".into()
                } else {
                    format!("qemu: {}", stderr.lines().last().unwrap_or_default())
                },
            };
        }
        outcome
    }
}

impl QemuBackend {
    /// An interactive boot (`kmatrix shell`): QEMU on this terminal until
    /// the guest powers off (or the user quits QEMU, or the run is
    /// stopped); the agent's events are read from their file afterwards.
    fn attend(
        &self,
        args: &[String],
        stderr_path: &Path,
        console: &Path,
        events: &mut Vec<GuestEvent>,
    ) -> BootEnd {
        let spawned = File::create(stderr_path).and_then(|stderr| {
            let mut command = Command::new(&args[0]);
            command
                .args(&args[1..])
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(stderr);
            dies_with_parent(&mut command);
            command.spawn()
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return BootEnd::BackendFailed {
                    detail: format!("cannot start {}: {e}", args[0]),
                }
            }
        };
        let end = loop {
            if self.interrupted.load(Ordering::SeqCst) {
                let _ = child.kill();
                let _ = child.wait();
                break BootEnd::Interrupted;
            }
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break BootEnd::Completed,
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let port = fs::read_to_string(results_port_file(console)).unwrap_or_default();
        events.extend(port.lines().filter_map(GuestEvent::from_line));
        if end == BootEnd::Completed && !events.iter().any(|e| matches!(e, GuestEvent::Done)) {
            let stderr = fs::read_to_string(stderr_path).unwrap_or_default();
            return BootEnd::GuestDied {
                detail: match stderr.lines().last() {
                    Some(line) => format!("qemu: {line}"),
                    None => "QEMU stopped before the agent finished (Ctrl-A X?)".into(),
                },
            };
        }
        end
    }

    fn supervise(
        &self,
        request: &BootRequest,
        child: &mut Child,
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
        let mut deadline = Instant::now() + self.deadlines.boot;
        loop {
            if self.interrupted.load(Ordering::SeqCst) {
                let _ = child.kill();
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
                            Instant::now()
                                + cell_budgets
                                    .get(cell_id.as_str())
                                    .copied()
                                    .unwrap_or(self.deadlines.cell_grace),
                        ),
                        GuestEvent::Done => (
                            "the guest to power off".into(),
                            Instant::now() + self.deadlines.shutdown,
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
            if let Ok(Some(_)) = child.try_wait() {
                return BootEnd::Completed;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                if events.iter().any(|e| matches!(e, GuestEvent::Done)) {
                    // Every result is in; a guest slow to power off costs nothing.
                    return BootEnd::Completed;
                }
                return BootEnd::DeadlineExceeded { waiting_for };
            }
        }
    }
}

/// Where an interactive boot's agent events go: beside its console log.
fn results_port_file(console: &Path) -> PathBuf {
    console.with_file_name("results-port.log")
}

/// Starts QEMU (`args[0]` and its arguments) with its stdout piped (the
/// results port) and its stderr into `stderr`.
pub fn spawn(args: &[String], stderr: File) -> std::io::Result<Child> {
    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    dies_with_parent(&mut command);
    command.spawn()
}

fn dies_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // The VM dies with the thread that started it, so a `kill -9`
            // of kmatrix leaves no guest running.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// QEMU's stdout (the agent's results port), line by line, from a thread.
pub fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
            if sender
                .send(String::from_utf8_lossy(&buf).into_owned())
                .is_err()
            {
                break;
            }
            buf.clear();
        }
    });
    receiver
}

/// Quotes arguments for a POSIX shell, so a logged command pastes.
pub fn shell_words(args: &[String]) -> String {
    shell_words::join(args)
}

/// Boots left running by an earlier kmatrix in `run_dir` (a `qemu.pid` whose
/// process is a QEMU of that boot): each is stopped, and named in the result.
pub fn stop_stale_boots(run_dir: &Path) -> Vec<String> {
    let mut stopped = Vec::new();
    let Ok(entries) = fs::read_dir(run_dir) else {
        return stopped;
    };
    let boot_dirs = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("boots"))
        })
        .flat_map(|boots| {
            fs::read_dir(boots)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
        })
        .map(|e| e.path());
    for boot in boot_dirs {
        let pid_file = boot.join(PID_FILE);
        let Some(pid) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let ours = cmdline.contains("qemu") && cmdline.contains(&*boot.to_string_lossy());
        if ours {
            // SAFETY: a plain kill(2) of a process we identified by its command line.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            stopped.push(format!("{} (pid {pid})", boot.display()));
        }
        let _ = fs::remove_file(&pid_file);
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quote_what_needs_it() {
        let args: Vec<String> = vec!["qemu".into(), "-append".into(), "a b 'c'".into()];
        let words = shell_words(&args);
        assert!(words.starts_with("qemu -append '"), "{words}");
        assert_eq!(shell_words::split(&words).unwrap(), args);
    }
}
