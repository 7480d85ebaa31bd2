//! `kmatrix shell`: an interactive shell on the guest's first serial port,
//! in the guest the cells would get (modules loaded, artifact disks
//! mounted, the container runtime sealed), with the cells' probes listed
//! rather than run.

use kmatrix_agent::{Job, JOB_PATH};
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The console the shell talks on (QEMU's stdio in `kmatrix shell`).
const TERMINAL: &str = "/dev/ttyS0";
/// Where busybox's applets are linked when the guest has busybox.
const APPLETS: &str = "/kmatrix/busybox";

/// Runs the shell until it exits; the caller powers the guest off.
pub fn run(job: &Job, kernel_release: &str) -> Result<(), String> {
    let (program, args) = shell_program()?;
    let mut path =
        "/kmatrix/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string();
    if link_applets() {
        // Last: the guest's own programs win over busybox's.
        path.push(':');
        path.push_str(APPLETS);
    }
    eprintln!("{}", banner(job, kernel_release));
    let terminal = OpenOptions::new()
        .read(true)
        .write(true)
        .open(TERMINAL)
        .map_err(|e| format!("cannot open {TERMINAL} for the shell: {e}"))?;
    let fd = terminal.as_raw_fd();
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", "/root")
        .env("TERM", "linux")
        .env("PS1", format!("kmatrix {kernel_release}:\\w# "))
        .current_dir("/")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // A session of its own with the serial port as its controlling
            // terminal: job control and Ctrl-C work as on any console.
            libc::setsid();
            libc::ioctl(fd, libc::TIOCSCTTY, 0);
            for target in 0..3 {
                libc::dup2(fd, target);
            }
            Ok(())
        });
    }
    let _ = std::fs::create_dir_all("/root");
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the shell {program}: {e}"))?;
    let _ = child.wait();
    Ok(())
}

/// `/bin/sh` where the guest has one, else busybox's.
fn shell_program() -> Result<(&'static str, &'static [&'static str]), String> {
    if Path::new("/bin/sh").exists() {
        Ok(("/bin/sh", &["-i"]))
    } else if Path::new("/bin/busybox").exists() {
        Ok(("/bin/busybox", &["sh", "-i"]))
    } else {
        Err("the guest has no /bin/sh and no /bin/busybox to run a shell with".into())
    }
}

/// Links busybox's applets (ls, cat, ip, wget, ...) into [`APPLETS`].
fn link_applets() -> bool {
    if !Path::new("/bin/busybox").exists() {
        return false;
    }
    let _ = std::fs::create_dir_all(APPLETS);
    Command::new("/bin/busybox")
        .args(["--install", "-s", APPLETS])
        .status()
        .is_ok_and(|s| s.success())
}

/// What the user is told before the prompt: where they are, what is
/// mounted, what the cells would run.
fn banner(job: &Job, kernel_release: &str) -> String {
    let mut lines = vec![
        String::new(),
        format!(
            "kmatrix shell on Linux {kernel_release}: the guest a cell gets, its cells not run."
        ),
    ];
    for disk in &job.disks {
        lines.push(format!(
            "  {} is mounted read-only at {}",
            disk.device, disk.mount_point
        ));
    }
    for cell in &job.cells {
        for probe in &cell.probes {
            let env: Vec<String> = probe.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            lines.push(format!(
                "  probe {} would run: {}{}",
                probe.probe_id,
                if env.is_empty() {
                    String::new()
                } else {
                    format!("env {} ", env.join(" "))
                },
                shell_quote(&probe.argv)
            ));
        }
    }
    lines.push(format!(
        "  the job is {JOB_PATH}; each probe would run in a network namespace of its own, from /tmp"
    ));
    lines.push("  `exit` (or Ctrl-D) powers the guest off; Ctrl-A X stops QEMU at once.".into());
    lines.join("\n")
}

fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
