//! The tools a user would otherwise pick to run a program on a kernel,
//! doing the same work as kmatrix's one-cell figure: the same reproducer,
//! arguments and environment, its kernel module loaded first, on the same
//! kernel image, under the same accelerator, each with the QEMU its users
//! get by default (the host's; its notes say which). Each is found where
//! `scripts/bench-setup.sh` installs it; one that is missing is a figure
//! marked unavailable with the reason, never a guess.

use super::{figure, Timed};
use crate::backend::qemu::Accel;
use crate::backend::qemu::{shell_words, QemuBackend};
use crate::plan::Cell;
use crate::project::Planned;
use crate::provision::{KernelArtifact, Provisioner};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The peers `--peer` accepts.
pub const PEERS: &[&str] = &["virtme-ng", "vmtest"];

/// Where `scripts/bench-setup.sh` installs the peers, inside the cache.
const PEERS_DIR: &str = "bench-peers";

/// The one-cell figure's work, as a shell script any VM runner can run.
pub struct Work {
    /// The kernel image (the bzImage: both peers boot what a user has).
    kernel_image: PathBuf,
    /// The job, on the host: the peers share the host's file system with
    /// the guest, so host paths work inside it.
    script: PathBuf,
    /// What the reproducer prints when it did its work.
    expect_stdout: Option<regex::Regex>,
    accel: Accel,
}

impl Work {
    /// The first probe of `cell`, with its guest paths turned into host
    /// paths and its modules loaded by `insmod` first.
    pub fn of(
        provisioner: &Provisioner,
        planned: &Planned,
        cell: &Cell,
        kernel: &KernelArtifact,
        qemu: &QemuBackend,
        dir: &Path,
    ) -> Result<Work> {
        let provisioned = provisioner.prepare(&planned.scenarios, std::slice::from_ref(cell))?;
        let probe = cell
            .probes
            .first()
            .context("the bench's cell has no probe")?;
        let host_path = |word: &String| match provisioned.files.get(word) {
            Some(Ok(path)) => path.display().to_string(),
            _ => word.clone(),
        };
        let mut script =
            String::from("#!/bin/sh\n# kmatrix bench: one cell's work, for a peer.\nset -e\n");
        // In load order, decompressed: what kmatrix's agent loads too.
        let modules = crate::sources::modules::plan(
            kernel.modules.as_deref(),
            &cell.modules,
            &dir.join("modules"),
        )?;
        for (host, _) in &modules.files {
            script.push_str(&format!("insmod {}\n", host.display()));
        }
        let env: Vec<String> = probe
            .env
            .iter()
            .map(|(k, v)| shell_words(&[format!("{k}={v}")]))
            .collect();
        let argv: Vec<String> = probe.argv.iter().map(host_path).collect();
        script.push_str(&format!(
            "exec env {} {}\n",
            env.join(" "),
            shell_words(&argv)
        ));
        fs::create_dir_all(dir)?;
        let path = dir.join("peer-job.sh");
        fs::write(&path, script)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(Work {
            kernel_image: kernel.image.clone(),
            script: path,
            expect_stdout: probe.expect.pass_stdout.clone(),
            accel: qemu.accel,
        })
    }
}

/// The figure of one peer: timed when it is installed, or why not.
pub fn prepare(peer: &str, work: &Work, cache_root: &Path) -> Timed {
    let root = cache_root.join(PEERS_DIR);
    let made = match peer {
        "virtme-ng" => virtme_ng(work, &root),
        "vmtest" => vmtest(work, &root),
        other => Err(format!(
            "unknown peer {other} (known: {})",
            PEERS.join(", ")
        )),
    };
    match made {
        Ok(peer_command) => {
            let command = if peer_command.path_first.is_empty() {
                shell_words(&peer_command.argv)
            } else {
                let dirs: Vec<String> = peer_command
                    .path_first
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                format!(
                    "PATH={}:$PATH {}",
                    dirs.join(":"),
                    shell_words(&peer_command.argv)
                )
            };
            let expect = work.expect_stdout.clone();
            let mut figure = figure(peer, &peer_command.what, command);
            figure.notes = peer_command.notes.clone();
            Timed {
                figure,
                run: Box::new(move |scratch| run_peer(&peer_command, expect.as_ref(), scratch)),
            }
        }
        Err(why) => {
            let mut figure = figure(peer, "", String::new());
            figure.unavailable = Some(why);
            Timed {
                figure,
                run: Box::new(|_| Ok(())),
            }
        }
    }
}

/// Runs a peer; its output must show the reproducer did its work.
fn run_peer(peer: &PeerCommand, expect: Option<&regex::Regex>, scratch: &Path) -> Result<()> {
    fs::create_dir_all(scratch)?;
    let argv = &peer.argv;
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(scratch)
        .stdin(Stdio::null());
    if !peer.path_first.is_empty() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = peer.path_first.clone();
        dirs.extend(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(dirs)?);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot start {}", argv[0]))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::write(scratch.with_extension("log"), &said)?;
    let did_work = expect.is_none_or(|re| re.is_match(&said));
    if !output.status.success() || !did_work {
        bail!(
            "`{}` ({}) did not show the reproducer's output; its log: {}",
            shell_words(argv),
            output.status,
            scratch.with_extension("log").display()
        );
    }
    Ok(())
}

/// How to run one peer on the work.
struct PeerCommand {
    argv: Vec<String>,
    /// Folders put first on PATH (helpers the peer looks up there).
    path_first: Vec<PathBuf>,
    what: String,
    /// What it took to make it run here.
    notes: Vec<String>,
}

/// virtme-ng (`vng`, from PyPI): boots the kernel with the host's file
/// system as the guest's root and runs a command.
fn virtme_ng(work: &Work, root: &Path) -> Result<PeerCommand, String> {
    let vng = root.join("virtme-ng/bin/vng");
    if !vng.is_file() {
        return Err(format!(
            "virtme-ng is not installed ({} missing): run scripts/bench-setup.sh",
            vng.display()
        ));
    }
    if !root.join("virtiofsd/bin/virtiofsd").is_file() {
        return Err("virtiofsd is not installed: run scripts/bench-setup.sh".into());
    }
    let mut argv = vec![
        vng.display().to_string(),
        "--run".into(),
        work.kernel_image.display().to_string(),
        "--cpus".into(),
        "1".into(),
        "--memory".into(),
        "1G".into(),
        "--busybox".into(),
        "/bin/busybox".into(),
    ];
    if work.accel == Accel::Tcg {
        argv.push("--disable-kvm".into());
    }
    argv.extend(["--exec".into(), work.script.display().to_string()]);
    let notes = vec![
        "installed from PyPI into a venv (scripts/bench-setup.sh)".to_string(),
        "the Debian cloud kernel has no 9p, so the root is shared over virtiofs: virtiofsd from crates.io (Debian's needs glibc 2.39), found on PATH".into(),
        "its initramfs needs busybox (busybox-static) and the kernel's own virtio/virtiofs modules, which vng finds beside the image in kmatrix's cache".into(),
        "the kernel module the cell needs is loaded with insmod from the same cache; --disable-kvm under TCG".into(),
        format!(
            "it runs the QEMU a vng user gets, the host's qemu-system-x86_64 ({}): given kmatrix's pinned QEMU 10 (--qemu) the same run took 44 s here, 32 s of it before the kernel's first line (SeaBIOS under QEMU 10; kmatrix boots with qboot)",
            host_qemu_version()
        ),
    ];
    Ok(PeerCommand {
        argv,
        // vng runs virtme-run from PATH, and finds virtiofsd there.
        path_first: vec![root.join("virtme-ng/bin"), root.join("virtiofsd/bin")],
        what: "virtme-ng (`vng --run`) running the same reproducer, host root over virtiofs".into(),
        notes,
    })
}

/// vmtest (from crates.io): boots the kernel with the host's root and runs
/// a command through qemu-guest-agent.
fn vmtest(work: &Work, root: &Path) -> Result<PeerCommand, String> {
    let vmtest = root.join("vmtest/bin/vmtest");
    if !vmtest.is_file() {
        return Err(format!(
            "vmtest is not installed ({} missing): run scripts/bench-setup.sh",
            vmtest.display()
        ));
    }
    // vmtest's kernel mode boots with `rootfstype=9p` and the host root
    // exported over virtio-9p, with no initramfs of its own: the kernel
    // needs 9p built in, or a shim initramfs loading its modules.
    if let Some(config) = kernel_config(&work.kernel_image) {
        let nine_p = config
            .lines()
            .find_map(|l| l.strip_prefix("CONFIG_NET_9P_VIRTIO="))
            .map(str::to_string);
        match nine_p.as_deref() {
            Some("y") => {}
            Some("m") => {
                return Err(
                    "vmtest mounts the host root over 9p (rootfstype=9p) with no initramfs; this kernel has 9p only as modules (CONFIG_NET_9P_VIRTIO=m), which would need a shim initramfs slipped in through a QEMU wrapper (-q)".into(),
                )
            }
            _ => {
                return Err(
                    "vmtest mounts the host root over 9p (rootfstype=9p); this kernel's config has no 9p at all (CONFIG_NET_9P is not set: not built in, no module), so vmtest cannot boot it"
                        .into(),
                )
            }
        }
    }
    let argv = vec![
        vmtest.display().to_string(),
        "--kernel".into(),
        work.kernel_image.display().to_string(),
        work.script.display().to_string(),
    ];
    Ok(PeerCommand {
        argv,
        path_first: Vec::new(),
        what: "vmtest (`vmtest --kernel`) running the same reproducer".into(),
        notes: vec!["installed from crates.io (scripts/bench-setup.sh)".into()],
    })
}

/// The kernel's build configuration, where its package ships one beside
/// the image (`boot/config-<release>`).
fn kernel_config(image: &Path) -> Option<String> {
    let name = image.file_name()?.to_str()?;
    let release = name.strip_prefix("vmlinuz-")?;
    fs::read_to_string(image.with_file_name(format!("config-{release}"))).ok()
}

/// The first line of the host QEMU's `--version`, for the peers' notes.
fn host_qemu_version() -> String {
    crate::provision::version_of(Path::new(crate::provision::HOST_QEMU))
        .unwrap_or_else(|e| format!("no host QEMU: {e:#}"))
}
