//! The local cluster: one node on this host, assembled from the parts
//! `provision::cluster` builds (Kubernetes' binaries, Debian's etcd,
//! containerd, runc and CNI plugins). kubeadm only writes the certificates
//! and kubeconfigs; every component is a process kmatrix starts, with its
//! log in the run's folder:
//!
//! * etcd, the controller manager and the scheduler listen on 127.0.0.1
//!   only (ports [`super::node::PORTS`]); the kubelet too: its node is named
//!   `localhost`, so the API server reaches it there; kube-apiserver listens
//!   on the pod bridge's address (made before it starts), the endpoint of
//!   the `kubernetes` Service, so pods with a service account reach it and
//!   no other network does;
//! * containerd has its own root, state and socket under the cluster folder
//!   (a Docker engine's containerd is left alone), `restrict_oom_score_adj`
//!   (this VM lacks CAP_SYS_RESOURCE), the pause image built from the tree;
//! * pods are on a CNI bridge (`kmatrix0`, 10.244.0.0/24); kube-proxy in
//!   iptables mode programs Services (10.97.0.0/16), masquerading all
//!   Service traffic so a reply always comes back through the host.
//!
//! One cluster at a time on a host: a lock file is held while it runs, and
//! whoever takes it next first sweeps what a killed owner left (processes,
//! containers, mounts, iptables chains, the bridge).

use super::Cluster;
use crate::cancel::{wait_for, Cancel, Deadline, Waited};
use crate::files::FileLock;
use crate::inputs::scenario::KubeProxyMode;
use crate::provision::cluster::ClusterParts;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::node::{
    write_credentials, Component, NodeLayout, CGROUP_ROOT, GATEWAY, NODE_NAME, PAUSE_IMAGE,
};
pub use super::node::{BRIDGE, POD_SUBNET};
/// How long the control plane and the node get to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(240);

/// Where the one local cluster of this host lives while it runs: a fixed
/// place (not the run's temporary folder), so that every run on the host
/// finds the same lock and a killed run's leftovers.
pub fn cluster_dir() -> PathBuf {
    PathBuf::from("/var/lib/kmatrix/k8s-local")
}

fn lock_path() -> PathBuf {
    PathBuf::from("/var/lib/kmatrix/k8s-local.lock")
}

pub struct LocalCluster {
    dir: PathBuf,
    layout: NodeLayout,
    /// Programs the host runs instead of the node tree's (see ClusterParts).
    host_runtime: Option<PathBuf>,
    log_dir: PathBuf,
    /// In start order; stopped in reverse.
    processes: Vec<(String, Child)>,
    _lock: FileLock,
    /// How long the cluster took from nothing to a Ready node.
    pub ready_after: Duration,
}

impl LocalCluster {
    /// Starts the cluster and waits for a Ready node. Waits first for
    /// another run's cluster on this host to end (one at a time).
    pub fn start(
        parts: &ClusterParts,
        kube_proxy: KubeProxyMode,
        log_dir: &Path,
        interrupted: &Cancel,
    ) -> Result<LocalCluster> {
        let started = Instant::now();
        crate::provision::host::local_cluster_tools()?;
        let lock = FileLock::acquire(&lock_path())
            .context("cannot take the local cluster's lock (another run's cluster?)")?;
        sweep();
        let dir = cluster_dir();
        fs::create_dir_all(&dir)?;
        let log_dir = log_dir.join("cluster");
        fs::create_dir_all(&log_dir)?;
        fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
        let mut cluster = LocalCluster {
            layout: NodeLayout {
                dir: dir.clone(),
                bin: parts.bin.clone(),
                node: parts.node.clone(),
                runc: parts
                    .host_runtime
                    .as_ref()
                    .unwrap_or(&parts.node)
                    .join("usr/sbin/runc"),
                // Pods reach the API server through the `kubernetes`
                // Service, whose endpoint is the advertise address: the
                // bridge's own, not every address of this host.
                apiserver_bind: GATEWAY,
                version: parts.version.clone(),
                kube_proxy,
            },
            dir,
            host_runtime: parts.host_runtime.clone(),
            log_dir,
            processes: Vec::new(),
            _lock: lock,
            ready_after: Duration::ZERO,
        };
        cluster.write_configs()?;
        cluster.launch(interrupted)?;
        cluster.ready_after = started.elapsed();
        fs::write(
            cluster.log_dir.join("ready.txt"),
            format!(
                "node Ready {:.1} s after start (binaries from the cache)\n",
                cluster.ready_after.as_secs_f64()
            ),
        )?;
        Ok(cluster)
    }

    fn node(&self, path: &str) -> PathBuf {
        self.layout.node(path)
    }

    fn path_variable(&self) -> String {
        let mut path = vec![self.node("usr/bin").display().to_string()];
        if let Some(host) = &self.host_runtime {
            path.push(host.join("usr/sbin").display().to_string());
        }
        path.push(std::env::var("PATH").unwrap_or_default());
        path.push(self.node("usr/sbin").display().to_string());
        path.join(":")
    }

    fn write_configs(&self) -> Result<()> {
        for folder in self.layout.folders() {
            fs::create_dir_all(folder)?;
        }
        write_credentials(
            &self.layout.bin("kubeadm"),
            &self.dir,
            &self.layout.version,
            &[],
            GATEWAY,
            &self.log_dir.join("kubeadm.log"),
        )?;
        for (path, text) in self.layout.config_files()? {
            fs::write(self.dir.join(path), text)?;
        }
        Ok(())
    }

    fn spawn(&mut self, component: Component) -> Result<()> {
        let Component {
            name,
            program,
            args,
        } = component;
        let log = File::create(self.log_dir.join(format!("{name}.log")))?;
        let mut command = Command::new(&program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // containerd finds its shim on PATH; kube-proxy finds conntrack
            // (the host runtime's, else the host's, else the node tree's).
            .env("PATH", self.path_variable())
            .env(MARK_ENV, self.dir.as_os_str())
            // Its own process group: Ctrl-C on the terminal is the run's to handle.
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        self.processes.push((name.to_string(), child));
        Ok(())
    }

    fn launch(&mut self, interrupted: &Cancel) -> Result<()> {
        make_bridge()?;
        for component in self.layout.control_plane() {
            self.spawn(component)?;
        }
        self.wait_for("the API server", interrupted, |c| {
            c.kubectl_output(&["get", "--raw", "/readyz"])
                .map(|out| out.trim() == "ok")
        })?;
        self.kubectl_output(&[
            "apply",
            "-f",
            &self.dir.join("cluster-admins.yaml").display().to_string(),
        ])?;
        for component in self.layout.controllers() {
            self.spawn(component)?;
        }
        self.load_image_named(&self.layout.bin("pause"), PAUSE_IMAGE, &["/pause"])?;
        make_cgroup_root()?;
        allow_pod_forwarding()?;
        for component in self.layout.node_agents() {
            self.spawn(component)?;
        }
        self.wait_for("a Ready node", interrupted, |c| {
            let out = c.kubectl_output(&[
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok(out.trim() == "True")
        })?;
        // Pods are created once their namespace's service account exists.
        self.wait_for("the default service account", interrupted, |c| {
            Ok(
                c.kubectl_output(&["get", "serviceaccount", "default", "-n", "default"])
                    .is_ok(),
            )
        })?;
        Ok(())
    }

    fn kubectl_output(&self, args: &[&str]) -> Result<String> {
        super::command_output(self.kubectl(), args)
    }

    /// Polls `ready` until it says yes; a component that exits meanwhile,
    /// the deadline or Ctrl-C end the wait with its log's last lines.
    fn wait_for(
        &mut self,
        what: &str,
        interrupted: &Cancel,
        ready: impl Fn(&Self) -> Result<bool>,
    ) -> Result<()> {
        let waited = wait_for(
            interrupted,
            Deadline::after(READY_DEADLINE),
            Duration::from_millis(500),
            || {
                if let Ok(true) = ready(self) {
                    return Ok(Some(()));
                }
                for (name, child) in &mut self.processes {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!(
                            "{name} exited ({status}) while waiting for {what}: {}",
                            last_error(&self.log_dir.join(format!("{name}.log")))
                        );
                    }
                }
                Ok(None)
            },
        )?;
        match waited {
            Waited::Ready(()) => Ok(()),
            Waited::Cancelled => bail!("interrupted while waiting for {what}"),
            Waited::TimedOut => bail!(
                "no {what} within {} s (logs in {})",
                READY_DEADLINE.as_secs(),
                self.log_dir.display()
            ),
        }
    }

    /// A one-binary image made here, imported into the node's containerd.
    fn load_image_named(&self, binary: &Path, reference: &str, entrypoint: &[&str]) -> Result<()> {
        let archive = self
            .dir
            .join(format!("image-{}.tar", reference.replace(['/', ':'], "_")));
        super::images::one_binary_image(binary, entrypoint[0], reference, &archive)?;
        self.load_image(&archive)
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new(self.node("usr/bin/ctr"));
        command
            .arg("--address")
            .arg(self.layout.containerd_socket())
            .args(["--namespace", "k8s.io"]);
        command
    }
}

impl Cluster for LocalCluster {
    fn kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig()
    }

    fn kubectl(&self) -> Command {
        let mut command = Command::new(self.layout.bin("kubectl"));
        command.arg("--kubeconfig").arg(self.layout.kubeconfig());
        command
    }

    fn load_image(&self, archive: &Path) -> Result<()> {
        let output = self
            .ctr()
            .args(["images", "import", "--no-unpack=false"])
            .arg(archive)
            .output()
            .context("cannot run ctr")?;
        if !output.status.success() {
            bail!(
                "ctr images import {}: {}",
                archive.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn facts(&self) -> BTreeMap<String, String> {
        let mut facts = BTreeMap::from([
            ("kubernetes".to_string(), self.layout.version.clone()),
            ("cluster".to_string(), "k8s-local".to_string()),
            (
                "kube-proxy".to_string(),
                self.layout.kube_proxy.as_str().to_string(),
            ),
            (
                "cluster.ready_s".to_string(),
                format!("{:.1}", self.ready_after.as_secs_f64()),
            ),
        ]);
        let mptcp = fs::read_to_string("/proc/sys/net/mptcp/enabled")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "absent".into());
        facts.insert("mptcp.enabled".into(), mptcp);
        facts.insert(
            "cluster.cgroup".into(),
            if unified_cgroup() { "v2" } else { "v1" }.into(),
        );
        facts
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The kubelet first, so it starts no container while the rest stops.
        for (_, child) in self.processes.iter_mut().rev() {
            let _ = nix_kill(child.id() as i32, 15);
        }
        for (_, child) in self.processes.iter_mut().rev() {
            wait_or_kill(child, Duration::from_secs(10));
        }
        sweep();
    }
}

/// Marks every process kmatrix starts for a cluster (in its environment),
/// so a sweep can tell them from anything else on the host.
const MARK_ENV: &str = "KMATRIX_K8S_CLUSTER";

/// Removes what a cluster left on this host: its processes (found by their
/// mark, their containers by the pods' cgroup and containerd's shims by
/// their socket), mounts under its folder, kube-proxy's and the bridge
/// plugin's iptables rules, the bridge, and the folder. Only called with
/// the cluster lock held, so no live cluster is touched.
pub fn sweep() {
    let dir = cluster_dir();
    let marker = dir.to_string_lossy().into_owned();
    for _ in 0..3 {
        let mut victims = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            break;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cgroup = fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            let marked = contains(&environ, format!("{MARK_ENV}={marker}").as_bytes())
                || contains(&cmdline, marker.as_bytes())
                || cgroup
                    .lines()
                    .any(|l| l.contains(&format!(":{CGROUP_ROOT}/")));
            if marked {
                victims.push(pid);
            }
        }
        if victims.is_empty() {
            break;
        }
        for pid in &victims {
            let _ = nix_kill(*pid, 9);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    unmount_under(&dir);
    // kube-proxy's chains, then the bridge plugin's masquerade rules.
    super::iptables::cleanup_iptables();
    let _ = Command::new("ip")
        .args(["link", "delete", BRIDGE])
        .stderr(Stdio::null())
        .status();
    remove_cgroups();
    let _ = fs::remove_dir_all(&dir);
}

/// The pod bridge with its gateway address, before the API server binds
/// that address (the CNI bridge plugin takes the bridge as it finds it).
fn make_bridge() -> Result<()> {
    let gateway = format!(
        "{GATEWAY}/{}",
        POD_SUBNET.rsplit('/').next().unwrap_or("24")
    );
    for args in [
        &["link", "add", BRIDGE, "type", "bridge"][..],
        &["addr", "add", &gateway, "dev", BRIDGE],
        &["link", "set", BRIDGE, "up"],
    ] {
        super::command_output(Command::new("ip"), args)?;
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        let _ = Command::new("umount").arg("-l").arg(&mount).status();
    }
}

/// Pod-to-pod traffic is bridged, and bridged frames pass iptables' FORWARD
/// chain here (`bridge-nf-call-iptables`), whose policy a Docker engine
/// sets to DROP: accept the pod network's own traffic. The sweep removes
/// these rules by their comment.
fn allow_pod_forwarding() -> Result<()> {
    for direction in ["-s", "-d"] {
        let status = Command::new("iptables")
            .args(["-I", "FORWARD", "1", direction, POD_SUBNET])
            .args(["-m", "comment", "--comment", "kmatrix k8s-local pods"])
            .args(["-j", "ACCEPT"])
            .status()
            .context("cannot run iptables")?;
        if !status.success() {
            bail!("iptables refused the pod network's FORWARD rule ({status})");
        }
    }
    Ok(())
}

/// Whether this host mounts cgroup v2 (one tree) rather than v1.
fn unified_cgroup() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The kubelet puts every pod under [`CGROUP_ROOT`], which must exist in
/// each controller's hierarchy (cgroup v1) or in the one tree (v2).
fn make_cgroup_root() -> Result<()> {
    let relative = CGROUP_ROOT.trim_start_matches('/');
    if unified_cgroup() {
        return fs::create_dir_all(Path::new("/sys/fs/cgroup").join(relative))
            .context("cannot make the pods' cgroup");
    }
    for controller in fs::read_dir("/sys/fs/cgroup")?.filter_map(Result::ok) {
        let path = controller.path();
        // Hierarchies are folders with cgroup.procs; co-mounted names are links.
        if path.is_symlink() || !path.join("cgroup.procs").exists() {
            continue;
        }
        fs::create_dir_all(path.join(relative))
            .with_context(|| format!("cannot make the pods' cgroup in {}", path.display()))?;
    }
    Ok(())
}

fn remove_cgroups() {
    let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.filter_map(Result::ok) {
        let root = controller.path().join(CGROUP_ROOT.trim_start_matches('/'));
        if !root.is_dir() {
            continue;
        }
        // Leaves first: a cgroup is removed with rmdir once it is empty.
        let mut dirs = Vec::new();
        collect_dirs(&root, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

fn nix_kill(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid and signal number has no memory effects.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn wait_or_kill(child: &mut Child, grace: Duration) {
    let exited = wait_for::<_, ()>(
        &Cancel::new(),
        Deadline::after(grace),
        Duration::from_millis(100),
        || Ok(matches!(child.try_wait(), Ok(Some(_))).then_some(())),
    );
    if exited == Ok(Waited::Ready(())) {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A component's fatal line (klog's `F…`), else its log's last lines.
fn last_error(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    match text
        .lines()
        .rfind(|l| l.starts_with('F') && l.contains("] "))
    {
        Some(fatal) => fatal.to_string(),
        None => tail(path, 10),
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    crate::files::last_lines(&fs::read_to_string(path).unwrap_or_default(), n)
}
