//! The local cluster inside a QEMU guest of the kernel under test
//! (`<kernel>+k8s`): the same node as `local.rs` ([`NodeLayout`]'s files
//! and command lines), started by a script the guest's agent runs.
//!
//! * The node's parts are one read-only ext4 disk (Debian's packages and
//!   the Kubernetes binaries, `provision::cluster::guest_node_disk`); the
//!   script overlays a tmpfs on it, mounts cgroup v1, proc, sys and dev
//!   into it, and `chroot`s there, so every program finds its libraries.
//! * The credentials are made on the host with kubeadm, as for the host's
//!   cluster; they and the workloads' images (imported into containerd
//!   before the kubelet starts: nothing is pulled) travel in the initramfs.
//! * QEMU's user network forwards one free host port on 127.0.0.1 to the
//!   API server in the guest, so the workloads are applied and watched with
//!   the host's kubectl exactly as on the host's cluster. Nothing else of
//!   the guest is reachable.
//! * The components' logs stream out on the third serial port into the
//!   run's `cluster/node.log`; the kernel console is the boot's
//!   `console.log`, scanned for crashes as for any QEMU boot.
//!
//! The guest dies with the run: QEMU gets SIGKILL when its parent dies.

mod node_log;
mod scripts;

use super::node::{write_credentials, NodeLayout, PAUSE_IMAGE, PORTS};
use super::Cluster;
use crate::backend::machine::{Forward, Running, Serial};
use crate::backend::qemu::{Accel, QemuBackend};
use crate::backend::{BootRequest, GuestDisk, GuestFile};
use crate::cancel::{wait_for, Cancel, Deadline, Waited};
use crate::inputs::scenario::KubeProxyMode;
use crate::provision::cluster::GUEST_BIN_DIR;
use crate::provision::{Emulator, GuestCluster as GuestParts};
use crate::sources::modules::GUEST_MODULE_DIR;
use anyhow::{bail, Context, Result};
use kmatrix_agent::{GuestEvent, Job, JobCell, JobDisk, JobProbe, ProcessEnd};
use scripts::{node_script, start_script};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// The emulator and accelerator the run chose for its guests.
#[derive(Debug, Clone)]
pub struct GuestVm {
    pub emulator: Emulator,
    pub accel: Accel,
}

/// The agent's one job in this guest: start the node and keep it up.
const NODE_CELL: &str = "kubernetes-node";
/// Where the node disk is mounted, and the files of this boot put.
const DISK_MOUNT: &str = "/kmatrix/k8s-node";
const FILES_DIR: &str = "/kmatrix/k8s";
/// Inside the chroot: the cluster's folder and where this boot's files are.
const GUEST_CLUSTER_DIR: &str = "/var/lib/kmatrix/k8s-local";
const CHROOT_FILES: &str = "/kmatrix";
/// QEMU's user network: the guest's address and its gateway.
const GUEST_ADDRESS: &str = "10.0.2.15";
const GUEST_GATEWAY: &str = "10.0.2.2";
/// From QEMU's start to the agent's hello (kernel boot, ~30 modules).
const HELLO_DEADLINE: Duration = Duration::from_secs(240);
/// From the agent's hello to a Ready node: measured 105 s for the API
/// server alone under TCG on 2 cores; the whole node takes minutes.
const READY_DEADLINE: Duration = Duration::from_secs(1200);
/// Multi-threaded TCG uses both host cores, and the control plane is
/// several busy processes.
const GUEST_CPUS: u32 = 2;
/// How much longer than on the host a pod takes to start under TCG.
const TCG_SLOWDOWN: u32 = 4;
/// The cgroup v1 hierarchies the node mounts (the host here is cgroup v1 too;
/// the kubelet of 1.34 still runs on v1, in maintenance mode; 1.35 refuses it).
const CGROUP_HIERARCHIES: &[&str] = &[
    "cpuset",
    "cpu,cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls,net_prio",
    "perf_event",
    "hugetlb",
    "pids",
];

pub struct GuestNode {
    /// The guest; dropping the node stops it.
    qemu: Mutex<Running>,
    lines: Mutex<mpsc::Receiver<String>>,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    console: PathBuf,
    /// The agent's port, as it came (`cluster/agent.log`).
    agent_log: PathBuf,
    /// The node's port: its script and components (`cluster/node.log`).
    node_log: PathBuf,
    kernel_release: String,
    facts: BTreeMap<String, String>,
    accel: Accel,
}

impl GuestNode {
    /// Boots the guest with the node, the request's workloads' images
    /// imported into its containerd, and waits for a Ready node.
    pub fn start(
        request: &BootRequest,
        parts: &GuestParts,
        kube_proxy: KubeProxyMode,
        vm: &GuestVm,
        scratch: &Path,
        interrupted: &Cancel,
    ) -> Result<GuestNode> {
        let started = Instant::now();
        let log_dir = request.log_dir.join("cluster");
        fs::create_dir_all(&log_dir)?;
        let files = scratch.join("files");
        let _ = fs::remove_dir_all(&files);
        let layout = NodeLayout {
            dir: PathBuf::from(GUEST_CLUSTER_DIR),
            bin: Path::new("/").join(GUEST_BIN_DIR),
            node: PathBuf::from("/"),
            runc: PathBuf::from("/usr/sbin/runc"),
            // QEMU forwards to the guest's address, not its loopback.
            apiserver_bind: "0.0.0.0",
            version: parts.parts.version.clone(),
            kube_proxy,
        };
        write_node_files(request, parts, &layout, &files, &log_dir)?;
        // Host kubeconfig: the admin's, through the forwarded port.
        let port = free_port()?;
        let kubeconfig = host_kubeconfig(&files.join("cluster"), scratch, port)?;

        let initramfs = scratch.join("initramfs.cpio");
        let boot = boot_request(request, parts, &files)?;
        crate::backend::initramfs::write_initramfs(&boot, &initramfs)
            .with_context(|| format!("cannot write {}", initramfs.display()))?;
        let console = request.log_dir.join("console.log");
        let mut machine = QemuBackend::new(vm.emulator.clone(), vm.accel, interrupted.clone());
        machine.memory_mb = parts.disk.memory_mb;
        machine.cpus = GUEST_CPUS;
        let mut machine = machine.machine(
            &parts.kernel.boot.path,
            &initramfs,
            &console,
            &request.kernel_args,
        );
        machine.disks.push(parts.disk.image.clone());
        machine.forwards.push(Forward {
            host_port: port,
            guest_address: GUEST_ADDRESS.into(),
            guest_port: PORTS.apiserver,
        });
        machine.serials.push(Serial::File(log_dir.join("node.log")));
        let note = format!(
            "# kernel: {} ({}); node disk {}",
            parts.kernel.boot.how,
            parts.kernel.image.display(),
            parts.disk.image.display(),
        );
        // The guest dies with kmatrix, even with a kill -9.
        let mut running = Running::spawn(&machine, &request.log_dir, &note)
            .with_context(|| format!("cannot start {}", machine.emulator.binary.display()))?;
        let lines = running.lines();
        let mut node = GuestNode {
            qemu: Mutex::new(running),
            lines: Mutex::new(lines),
            kubectl: parts.parts.bin.join("kubectl"),
            kubeconfig,
            console,
            agent_log: log_dir.join("agent.log"),
            node_log: log_dir.join("node.log"),
            kernel_release: String::new(),
            facts: BTreeMap::new(),
            accel: vm.accel,
        };
        node.wait_for_hello(interrupted)?;
        let booted = started.elapsed();
        node.wait_for_ready(interrupted)?;
        let ready = started.elapsed();
        node.wait_for_images(interrupted)?;
        let images = started.elapsed();
        node.facts.insert(
            "cluster".into(),
            format!("local cluster in a {} guest", vm.accel.as_str()),
        );
        node.facts
            .insert("kubernetes".into(), parts.parts.version.clone());
        if let Some(version) = node_log::cgroup(&node.node_log()) {
            node.facts.insert("cluster.cgroup".into(), version.into());
        }
        node.facts
            .insert("kube-proxy".into(), node.proxier(kube_proxy, interrupted)?);
        node.facts.insert(
            "cluster.ready_s".into(),
            format!("{:.1}", ready.as_secs_f64()),
        );
        let times = [booted, ready, images].map(|d| d.as_secs_f64());
        fs::write(
            log_dir.join("ready.txt"),
            ready_line(times, vm.accel, parts.disk.memory_mb),
        )?;
        Ok(node)
    }

    /// Until the node is Ready and the default service account exists
    /// (workloads can be applied then).
    fn wait_for_ready(&self, interrupted: &Cancel) -> Result<()> {
        self.wait_until("a Ready node", interrupted, |n| {
            // Short: Ctrl-C is looked at between two polls.
            let out = super::command_output(
                n.kubectl_within(15),
                &[
                    "get",
                    "node",
                    super::node::NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            )?;
            Ok(out.trim() == "True")
        })?;
        self.wait_until("the default service account", interrupted, |n| {
            Ok(
                super::command_output(n.kubectl_within(15), &["get", "serviceaccount", "default"])
                    .is_ok(),
            )
        })
    }

    /// Until the node script says every workload image is in containerd
    /// (it imports them while the kubelet registers).
    fn wait_for_images(&self, interrupted: &Cancel) -> Result<()> {
        self.wait_until("the workloads' images in containerd", interrupted, |n| {
            Ok(node_log::said(&n.node_log(), scripts::IMAGES_IMPORTED))
        })
    }

    fn node_log(&self) -> String {
        fs::read_to_string(&self.node_log).unwrap_or_default()
    }

    /// The proxier kube-proxy says it uses (see [`node_log::proxier`]).
    fn proxier(&self, asked: KubeProxyMode, cancel: &Cancel) -> Result<String> {
        let waited = wait_for(
            cancel,
            Deadline::after(Duration::from_secs(60)),
            Duration::from_secs(1),
            || node_log::proxier(&self.node_log(), asked),
        )?;
        match waited {
            Waited::Ready(mode) => Ok(mode),
            Waited::Cancelled => bail!("interrupted while asking kube-proxy for its mode"),
            Waited::TimedOut => {
                bail!("kube-proxy never said which proxier it uses (cluster/node.log)")
            }
        }
    }

    /// Reads the agent's events until its hello; the node script ending
    /// or the guest stopping first is an error with what they said.
    fn wait_for_hello(&mut self, interrupted: &Cancel) -> Result<()> {
        let waited = wait_for(
            interrupted,
            Deadline::after(HELLO_DEADLINE),
            Duration::ZERO,
            || -> Result<_> {
                match self.next_event(Duration::from_millis(200))? {
                    Some(GuestEvent::Hello {
                        kernel_release,
                        facts,
                    }) => Ok(Some((kernel_release, facts))),
                    _ => Ok(None),
                }
            },
        )?;
        match waited {
            Waited::Ready((kernel_release, facts)) => {
                self.kernel_release = kernel_release;
                self.facts = facts;
                Ok(())
            }
            Waited::Cancelled => bail!("interrupted while the guest booted"),
            Waited::TimedOut => bail!(
                "the guest's agent did not start within {} s (console: {})",
                HELLO_DEADLINE.as_secs(),
                self.console.display()
            ),
        }
    }

    /// The next agent event, if one arrives within `wait`. The node
    /// script's end (the agent reports it as its probe's end) and QEMU's
    /// exit are errors.
    fn next_event(&self, wait: Duration) -> Result<Option<GuestEvent>> {
        let received = self.lines.lock().expect("lines").recv_timeout(wait);
        if let Ok(line) = &received {
            // The agent's words, kept for whoever debugs the node's start.
            use std::io::Write;
            if let Ok(mut log) = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.agent_log)
            {
                let _ = log.write_all(line.as_bytes());
            }
        }
        match received {
            Ok(line) => match GuestEvent::from_line(&line) {
                // The script's words go to the node's port, not the agent.
                Some(GuestEvent::ProbeDone { end, .. }) => bail!(
                    "the node's start script ended ({}); cluster/node.log ends:\n{}",
                    describe_end(&end),
                    node_log::script_end(&self.node_log(), 12)
                ),
                other => Ok(other),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!(
                    "{}",
                    self.died()
                        .unwrap_or_else(|| "QEMU closed its output".into())
                )
            }
        }
    }

    fn wait_until(
        &self,
        what: &str,
        interrupted: &Cancel,
        ready: impl Fn(&Self) -> Result<bool>,
    ) -> Result<()> {
        // Each try first drains the agent's port (2 s at most): the
        // script's end says more than the guest's power-off after it.
        let waited = wait_for(
            interrupted,
            Deadline::after(READY_DEADLINE),
            Duration::ZERO,
            || {
                if let Ok(true) = ready(self) {
                    return Ok(Some(()));
                }
                self.next_event(Duration::from_secs(2))?;
                match self.died() {
                    Some(why) => bail!("{why} while waiting for {what}"),
                    None => Ok(None),
                }
            },
        )?;
        match waited {
            Waited::Ready(()) => Ok(()),
            Waited::Cancelled => bail!("interrupted while waiting for {what}"),
            Waited::TimedOut => bail!(
                "no {what} within {} s of the guest's start (the node's logs: cluster/node.log)",
                READY_DEADLINE.as_secs()
            ),
        }
    }

    fn kubectl_within(&self, seconds: u32) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg(format!("--request-timeout={seconds}s"));
        command
    }
}

impl Cluster for GuestNode {
    fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    fn kubectl(&self) -> Command {
        // A hung guest must not hang the run.
        self.kubectl_within(120)
    }

    fn load_image(&self, _archive: &Path) -> Result<()> {
        bail!("images go into a guest's node when it boots, not later")
    }

    fn images_preloaded(&self) -> bool {
        true
    }

    fn facts(&self) -> BTreeMap<String, String> {
        self.facts.clone()
    }

    fn kernel_release(&self) -> String {
        self.kernel_release.clone()
    }

    fn slowdown(&self) -> u32 {
        match self.accel {
            Accel::Tcg => TCG_SLOWDOWN,
            Accel::Kvm => 1,
        }
    }

    fn died(&self) -> Option<String> {
        if !self.qemu.lock().expect("qemu").exited() {
            return None;
        }
        let console = fs::read_to_string(&self.console).unwrap_or_default();
        Some(format!(
            "the guest stopped; console: {}",
            last_lines(&console.replace('\r', ""), 15)
        ))
    }
}

/// The initramfs's contents: the agent, the module files the runner
/// planned, this boot's files under [`FILES_DIR`], and a job whose one
/// "probe" is the node's start script.
fn boot_request(request: &BootRequest, parts: &GuestParts, files: &Path) -> Result<BootRequest> {
    let mut guest_files: Vec<GuestFile> = request
        .files
        .iter()
        .filter(|f| f.guest_path.starts_with(GUEST_MODULE_DIR))
        .cloned()
        .collect();
    for path in walk(files)? {
        let relative = path.strip_prefix(files).expect("under files");
        guest_files.push(GuestFile {
            guest_path: format!("{FILES_DIR}/{}", relative.display()),
            host_path: path,
        });
    }
    let job = Job {
        entropy_seed_hex: request.job.entropy_seed_hex.clone(),
        modules: request.job.modules.clone(),
        disks: vec![JobDisk {
            device: "/dev/vda".into(),
            mount_point: DISK_MOUNT.into(),
            fstype: "ext4".into(),
        }],
        sealed_binaries: Vec::new(),
        cells: vec![JobCell {
            cell_id: NODE_CELL.into(),
            probes: vec![JobProbe {
                probe_id: "node".into(),
                argv: vec![
                    format!("{DISK_MOUNT}/bin/busybox"),
                    "sh".into(),
                    format!("{FILES_DIR}/start.sh"),
                ],
                env: BTreeMap::new(),
                // The host stops the guest when the workloads are done.
                timeout_ms: 7 * 24 * 3600 * 1000,
            }],
        }],
        shell: false,
    };
    Ok(BootRequest {
        label: request.label.clone(),
        environment: request.environment.clone(),
        agent: request.agent.clone(),
        files: guest_files,
        rootfs: Vec::new(),
        kernel_args: request.kernel_args.clone(),
        kube_proxy: request.kube_proxy,
        disks: vec![GuestDisk {
            host_path: parts.disk.image.clone(),
            tree: PathBuf::new(),
            mount_point: DISK_MOUNT.into(),
        }],
        job,
        log_dir: request.log_dir.clone(),
        workloads: Vec::new(),
    })
}

/// What the guest's node needs beside its disk: credentials and config
/// made here (as for the host's cluster), the pause and workload images,
/// and the two scripts.
fn write_node_files(
    request: &BootRequest,
    parts: &GuestParts,
    layout: &NodeLayout,
    files: &Path,
    log_dir: &Path,
) -> Result<()> {
    // Credentials: made here, as for the host's cluster.
    let cluster_files = files.join("cluster");
    write_credentials(
        &parts.parts.bin.join("kubeadm"),
        &cluster_files,
        &parts.parts.version,
        &[GUEST_ADDRESS],
        "127.0.0.1",
        &log_dir.join("kubeadm.log"),
    )?;
    fs::remove_file(cluster_files.join("kubeadm.yaml"))?;
    for (path, text) in layout.config_files()? {
        let target = cluster_files.join(path);
        fs::create_dir_all(target.parent().expect("config files are in folders"))?;
        fs::write(target, text)?;
    }
    let image_dir = files.join("images");
    fs::create_dir_all(&image_dir)?;
    super::images::one_binary_image(
        &parts.parts.bin.join("pause"),
        "/pause",
        PAUSE_IMAGE,
        &image_dir.join("0-pause.tar"),
    )?;
    // One archive per image: a version's variants share its image (four
    // 60 MB ollama images imported twice cost the node a minute under TCG).
    let mut written = std::collections::BTreeSet::new();
    for work in &request.workloads {
        if written.insert(&work.kube.image) {
            // A version without a reproducer fails in its own cell.
            let _ = super::images::workload_image(work, &image_dir);
        }
    }
    fs::write(files.join("start.sh"), start_script())?;
    fs::write(files.join("node.sh"), node_script(layout))?;
    Ok(())
}

/// `ready.txt`: when the agent said hello, the node was Ready and the
/// workloads' images were in containerd, in seconds after QEMU started.
fn ready_line([booted, ready, images]: [f64; 3], accel: Accel, memory_mb: u32) -> String {
    format!(
        "agent up {booted:.1} s after QEMU started; node Ready {ready:.1} s after; workload images in containerd {images:.1} s after ({}, {memory_mb} MB, {GUEST_CPUS} vCPUs)\n",
        accel.as_str()
    )
}

/// The admin's kubeconfig for the host, pointed at QEMU's forward of the
/// guest's API server to `port`.
fn host_kubeconfig(cluster_files: &Path, scratch: &Path, port: u16) -> Result<PathBuf> {
    let kubeconfig = scratch.join("admin.conf");
    let admin = fs::read_to_string(cluster_files.join("kubeconfig/super-admin.conf"))?;
    fs::write(
        &kubeconfig,
        admin.replace(
            &format!("https://127.0.0.1:{}", PORTS.apiserver),
            &format!("https://127.0.0.1:{port}"),
        ),
    )?;
    Ok(kubeconfig)
}

/// A port on 127.0.0.1 nothing listens on now, for QEMU to forward.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn describe_end(end: &ProcessEnd) -> String {
    match end {
        ProcessEnd::Exited { code } => format!("exit {code}"),
        ProcessEnd::Signaled { signal } => format!("signal {signal}"),
        ProcessEnd::TimedOut => "timed out".into(),
        ProcessEnd::SpawnFailed { error } => format!("could not start: {error}"),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
