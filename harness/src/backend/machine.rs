//! One QEMU machine: [`Machine`] describes a guest (emulator, accelerator,
//! memory, CPUs, kernel, initramfs, command line, disks, forwards, serial
//! ports) and builds QEMU's arguments from small functions; [`Running`]
//! owns the process it spawns — its command file, stderr log and pid file
//! in the boot's log folder — and kills it on drop. Every QEMU kmatrix
//! starts is one of these: cells, the cluster inside a guest, the KVM
//! probe, `shell`, `repro`, and the bench's bare boot (its arguments).

use super::qemu::Accel;
use crate::provision::Emulator;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Written into a boot's log folder while its QEMU runs.
pub const PID_FILE: &str = "qemu.pid";
/// The pasteable command line, in the boot's log folder.
pub const COMMAND_FILE: &str = "qemu-command.txt";
/// QEMU's own complaints, in the boot's log folder.
pub const STDERR_FILE: &str = "qemu-stderr.log";
/// The host's qboot, when the emulator brings no firmware of its own.
const HOST_QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// Where a serial port's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// A file on the host (a console log).
    File(PathBuf),
    /// QEMU's stdout, read by kmatrix (the agent's results port).
    Stdio,
    /// This process's terminal, with QEMU's monitor on Ctrl-A (a shell).
    Terminal,
}

/// A TCP port of the guest reachable on the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub host_port: u16,
    pub guest_address: String,
    pub guest_port: u16,
}

/// A guest, as QEMU is told to make it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub emulator: Emulator,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    /// Raw images attached read-only as virtio disks (`/dev/vda`, ...).
    pub disks: Vec<PathBuf>,
    /// With any, the guest gets one virtio NIC on a restricted user network.
    pub forwards: Vec<Forward>,
    /// `ttyS0`, `ttyS1`, ... in order.
    pub serials: Vec<Serial>,
}

impl Machine {
    /// QEMU's whole argument list, the program first.
    pub fn args(&self) -> Vec<String> {
        [
            self.program(),
            self.platform(),
            self.accelerator(),
            self.size(),
            self.boot(),
            self.disk_args(),
            self.network(),
            self.serial_args(),
        ]
        .concat()
    }

    fn program(&self) -> Vec<String> {
        let mut args = vec![self.emulator.binary.display().to_string()];
        if let Some(firmware) = &self.emulator.firmware {
            args.extend(["-L".into(), firmware.display().to_string()]);
        }
        args
    }

    fn platform(&self) -> Vec<String> {
        let mut args = words(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        let own = self.emulator.firmware.as_ref().map(|f| f.join("qboot.rom"));
        let qboot = own
            .filter(|p| p.is_file())
            .or_else(|| Some(PathBuf::from(HOST_QBOOT)).filter(|p| p.is_file()));
        if let Some(qboot) = qboot {
            // qboot skips SeaBIOS's device probing: about a second saved per boot.
            args.extend(["-bios".into(), qboot.display().to_string()]);
        }
        args
    }

    fn accelerator(&self) -> Vec<String> {
        match self.accel {
            Accel::Tcg => words(&["-accel", "tcg", "-cpu", "max"]),
            Accel::Kvm => words(&["-accel", "kvm", "-cpu", "host"]),
        }
    }

    fn size(&self) -> Vec<String> {
        vec![
            "-m".into(),
            self.memory_mb.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-device".into(),
            "virtio-rng-pci".into(),
        ]
    }

    fn boot(&self) -> Vec<String> {
        vec![
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initramfs.display().to_string(),
            "-append".into(),
            self.cmdline.clone(),
        ]
    }

    fn disk_args(&self) -> Vec<String> {
        self.disks
            .iter()
            .flat_map(|disk| {
                [
                    "-drive".to_string(),
                    format!("file={},format=raw,if=virtio,readonly=on", disk.display()),
                ]
            })
            .collect()
    }

    fn network(&self) -> Vec<String> {
        if self.forwards.is_empty() {
            return Vec::new();
        }
        let forwards: String = self
            .forwards
            .iter()
            .map(|f| {
                format!(
                    ",hostfwd=tcp:127.0.0.1:{}-{}:{}",
                    f.host_port, f.guest_address, f.guest_port
                )
            })
            .collect();
        vec![
            "-netdev".into(),
            format!("user,id=net0,restrict=on{forwards}"),
            "-device".into(),
            "virtio-net-pci,netdev=net0".into(),
        ]
    }

    fn serial_args(&self) -> Vec<String> {
        self.serials
            .iter()
            .flat_map(|serial| {
                let to = match serial {
                    Serial::File(path) => format!("file:{}", path.display()),
                    Serial::Stdio => "stdio".into(),
                    Serial::Terminal => "mon:stdio".into(),
                };
                ["-serial".to_string(), to]
            })
            .collect()
    }

    /// Whether QEMU's stdin and stdout are this process's terminal.
    fn on_terminal(&self) -> bool {
        self.serials.contains(&Serial::Terminal)
    }
}

fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A started QEMU. Dropping it kills the guest (if it still runs), reaps
/// it and removes its pid file.
pub struct Running {
    child: Child,
    pid_file: PathBuf,
}

impl Running {
    /// Starts `machine`, writing into `log_dir` the command (after `note`,
    /// comment lines saying what boots), QEMU's stderr and the pid file.
    /// The guest dies with the thread that started it, even on `kill -9`.
    pub fn spawn(machine: &Machine, log_dir: &Path, note: &str) -> std::io::Result<Running> {
        fs::create_dir_all(log_dir)?;
        let args = machine.args();
        fs::write(
            log_dir.join(COMMAND_FILE),
            format!("{note}\n{}", shell_words(&args)),
        )?;
        let stderr = File::create(log_dir.join(STDERR_FILE))?;
        let mut command = Command::new(&args[0]);
        command.args(&args[1..]).stderr(stderr);
        if machine.on_terminal() {
            command.stdin(Stdio::inherit()).stdout(Stdio::inherit());
        } else {
            command.stdin(Stdio::null()).stdout(Stdio::piped());
        }
        dies_with_parent(&mut command);
        let child = command.spawn()?;
        let pid_file = log_dir.join(PID_FILE);
        fs::write(&pid_file, child.id().to_string())?;
        Ok(Running { child, pid_file })
    }

    /// QEMU's stdout (a [`Serial::Stdio`] port), line by line, from a thread.
    pub fn lines(&mut self) -> mpsc::Receiver<String> {
        let stdout = self.child.stdout.take();
        let (sender, receiver) = mpsc::channel();
        let Some(stdout) = stdout else {
            return receiver; // no piped port: the channel is closed at once
        };
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

    /// Whether QEMU has exited (reaped if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the guest now and waits for QEMU to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.pid_file);
    }
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

    fn machine() -> Machine {
        Machine {
            emulator: Emulator::unused(),
            accel: Accel::Tcg,
            memory_mb: 512,
            cpus: 2,
            kernel: "/k/vmlinux".into(),
            initramfs: "/i/initramfs.cpio".into(),
            cmdline: "console=ttyS0 a=b".into(),
            disks: vec!["/d/node.img".into()],
            forwards: vec![Forward {
                host_port: 40000,
                guest_address: "10.0.2.15".into(),
                guest_port: 6443,
            }],
            serials: vec![Serial::File("/l/console.log".into()), Serial::Stdio],
        }
    }

    #[test]
    fn a_machine_says_everything_in_its_arguments() {
        let args = machine().args();
        // Plain spaces: the checks read the arguments, not their quoting.
        let text = args.join(" ");
        for part in [
            "-accel tcg -cpu max",
            "-m 512 -smp 2",
            "-kernel /k/vmlinux -initrd /i/initramfs.cpio -append console=ttyS0 a=b",
            "-drive file=/d/node.img,format=raw,if=virtio,readonly=on",
            "-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40000-10.0.2.15:6443",
            "-serial file:/l/console.log -serial stdio",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(shell_words::split(&shell_words(&args)).unwrap(), args);
        let bare = Machine {
            forwards: Vec::new(),
            disks: Vec::new(),
            ..machine()
        };
        assert!(!shell_words(&bare.args()).contains("-netdev"));
    }
}
