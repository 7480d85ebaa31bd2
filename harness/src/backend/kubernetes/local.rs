//! The local cluster: one node on this host, assembled from the parts
//! `provision::cluster` builds (Kubernetes' binaries, Debian's etcd,
//! containerd, runc and CNI plugins). kubeadm only writes the certificates
//! and kubeconfigs; every component is a process kmatrix starts, with its
//! log in the run's folder:
//!
//! * etcd, kube-apiserver, the controller manager and the scheduler listen on
//!   127.0.0.1 only (ports [`PORTS`]); the kubelet too: its node is named
//!   `localhost`, so the API server reaches it there;
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
use crate::files;
use crate::files::FileLock;
use crate::provision::cluster::ClusterParts;
use crate::sources::kbuild::logged_step;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The ports the control plane listens on, all on 127.0.0.1.
pub const PORTS: Ports = Ports {
    apiserver: 16443,
    etcd_client: 12379,
    etcd_peer: 12380,
};

pub struct Ports {
    pub apiserver: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
}

const NODE_NAME: &str = "localhost";
/// The pod bridge's own address. kubeadm wants a non-loopback advertise
/// address for the certificates; the API server still listens on 127.0.0.1.
const GATEWAY: &str = "10.244.0.1";
pub const BRIDGE: &str = "kmatrix0";
pub const POD_SUBNET: &str = "10.244.0.0/24";
const SERVICE_SUBNET: &str = "10.97.0.0/16";
pub const PAUSE_IMAGE: &str = "kmatrix.local/pause:3.4";
/// The cgroup every pod lives under, so a sweep finds all their processes.
const CGROUP_ROOT: &str = "/kmatrix-k8s";
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
    parts: ClusterParts,
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
        log_dir: &Path,
        interrupted: &AtomicBool,
    ) -> Result<LocalCluster> {
        let started = Instant::now();
        check_host_tools()?;
        let lock = FileLock::acquire(&lock_path())
            .context("cannot take the local cluster's lock (another run's cluster?)")?;
        sweep();
        let dir = cluster_dir();
        fs::create_dir_all(&dir)?;
        let log_dir = log_dir.join("cluster");
        fs::create_dir_all(&log_dir)?;
        fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
        let mut cluster = LocalCluster {
            dir,
            parts: parts.clone(),
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

    fn bin(&self, name: &str) -> PathBuf {
        self.parts.bin.join(name)
    }

    fn node(&self, path: &str) -> PathBuf {
        self.parts.node.join(path)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig/admin.conf")
    }

    fn write_configs(&self) -> Result<()> {
        let d = &self.dir;
        for sub in [
            "pki",
            "kubeconfig",
            "etcd",
            "kubelet",
            "containerd",
            "cni/net.d",
            "cni/ipam",
        ] {
            fs::create_dir_all(d.join(sub))?;
        }
        let kubeadm = format!(
            "apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {GATEWAY}
  bindPort: {port}
nodeRegistration:
  name: {NODE_NAME}
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: {version}
certificatesDir: {pki}
controlPlaneEndpoint: 127.0.0.1:{port}
apiServer:
  certSANs: [127.0.0.1, localhost, {GATEWAY}]
networking:
  serviceSubnet: {SERVICE_SUBNET}
  podSubnet: {POD_SUBNET}
",
            port = PORTS.apiserver,
            version = self.parts.version,
            pki = d.join("pki").display(),
        );
        fs::write(d.join("kubeadm.yaml"), kubeadm)?;
        let cfg = d.join("kubeadm.yaml");
        let log_path = self.log_dir.join("kubeadm.log");
        let mut log = File::create(&log_path)?;
        for phase in [&["certs", "all"][..], &["kubeconfig", "all"][..]] {
            let mut command = Command::new(self.bin("kubeadm"));
            command
                .args(["init", "phase"])
                .args(phase)
                .arg("--config")
                .arg(&cfg);
            if phase[0] == "kubeconfig" {
                command.arg("--kubeconfig-dir").arg(d.join("kubeconfig"));
            }
            logged_step(&mut command, &mut log, &log_path, &mut |_| {})?;
        }
        // kubeadm points some kubeconfigs at the advertise address; every
        // component talks to the API server where it listens.
        for entry in fs::read_dir(d.join("kubeconfig"))? {
            let path = entry?.path();
            let text = fs::read_to_string(&path)?;
            fs::write(
                &path,
                text.replace(
                    &format!("https://{GATEWAY}:{}", PORTS.apiserver),
                    &format!("https://127.0.0.1:{}", PORTS.apiserver),
                ),
            )?;
        }
        let containerd = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
            root = d.join("containerd/root").display(),
            state = d.join("containerd/state").display(),
            sock = self.containerd_socket().display(),
            opt = d.join("containerd/opt").display(),
            runc = self.node("usr/sbin/runc").display(),
            cni_bin = self.node("usr/lib/cni").display(),
            cni_conf = d.join("cni/net.d").display(),
        );
        fs::write(d.join("containerd/config.toml"), containerd)?;
        let cni = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "kmatrix",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": d.join("cni/ipam"),
                }
            }, {"type": "loopback"}]
        });
        fs::write(
            d.join("cni/net.d/10-kmatrix.conflist"),
            serde_json::to_vec_pretty(&cni)?,
        )?;
        let kubelet = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
cgroupRoot: {CGROUP_ROOT}
failSwapOn: false
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
evictionHard: {{memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%}}
",
            ca = d.join("pki/ca.crt").display()
        );
        fs::write(d.join("kubelet/config.yaml"), kubelet)?;
        let proxy = format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
hostnameOverride: {NODE_NAME}
clusterCIDR: {POD_SUBNET}
iptables: {{masqueradeAll: true}}
conntrack: {{maxPerCore: 0}}
",
            kubeconfig = self.kubeconfig().display()
        );
        fs::write(d.join("kube-proxy.yaml"), proxy)?;
        Ok(())
    }

    fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    fn spawn(&mut self, name: &str, program: PathBuf, args: Vec<String>) -> Result<()> {
        let log = File::create(self.log_dir.join(format!("{name}.log")))?;
        let mut command = Command::new(&program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // containerd finds its shim on PATH; kube-proxy finds conntrack.
            .env(
                "PATH",
                format!(
                    "{}:{}:{}",
                    self.node("usr/bin").display(),
                    std::env::var("PATH").unwrap_or_default(),
                    self.node("usr/sbin").display()
                ),
            )
            .env(MARK_ENV, self.dir.as_os_str())
            // Its own process group: Ctrl-C on the terminal is the run's to handle.
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        self.processes.push((name.to_string(), child));
        Ok(())
    }

    fn launch(&mut self, interrupted: &AtomicBool) -> Result<()> {
        let d = self.dir.clone();
        let p = |rel: &str| d.join(rel).display().to_string();
        let local = "127.0.0.1";
        self.spawn(
            "etcd",
            self.node("usr/bin/etcd"),
            vec![
                format!("--data-dir={}", p("etcd")),
                format!("--listen-client-urls=http://{local}:{}", PORTS.etcd_client),
                format!(
                    "--advertise-client-urls=http://{local}:{}",
                    PORTS.etcd_client
                ),
                format!("--listen-peer-urls=http://{local}:{}", PORTS.etcd_peer),
                format!(
                    "--initial-advertise-peer-urls=http://{local}:{}",
                    PORTS.etcd_peer
                ),
                format!(
                    "--initial-cluster=default=http://{local}:{}",
                    PORTS.etcd_peer
                ),
                "--unsafe-no-fsync".into(),
            ],
        )?;
        self.spawn(
            "containerd",
            self.node("usr/bin/containerd"),
            vec![format!("--config={}", p("containerd/config.toml"))],
        )?;
        self.spawn(
            "kube-apiserver",
            self.bin("kube-apiserver"),
            vec![
                format!("--advertise-address={GATEWAY}"),
                format!("--bind-address={local}"),
                format!("--secure-port={}", PORTS.apiserver),
                "--insecure-port=0".into(),
                format!("--etcd-servers=http://{local}:{}", PORTS.etcd_client),
                format!("--service-cluster-ip-range={SERVICE_SUBNET}"),
                format!("--client-ca-file={}", p("pki/ca.crt")),
                format!("--tls-cert-file={}", p("pki/apiserver.crt")),
                format!("--tls-private-key-file={}", p("pki/apiserver.key")),
                format!(
                    "--kubelet-client-certificate={}",
                    p("pki/apiserver-kubelet-client.crt")
                ),
                format!(
                    "--kubelet-client-key={}",
                    p("pki/apiserver-kubelet-client.key")
                ),
                "--kubelet-preferred-address-types=Hostname".into(),
                format!("--service-account-key-file={}", p("pki/sa.pub")),
                format!("--service-account-signing-key-file={}", p("pki/sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                "--allow-privileged=true".into(),
                format!(
                    "--proxy-client-cert-file={}",
                    p("pki/front-proxy-client.crt")
                ),
                format!(
                    "--proxy-client-key-file={}",
                    p("pki/front-proxy-client.key")
                ),
                format!(
                    "--requestheader-client-ca-file={}",
                    p("pki/front-proxy-ca.crt")
                ),
                "--requestheader-allowed-names=front-proxy-client".into(),
                "--requestheader-username-headers=X-Remote-User".into(),
                "--requestheader-group-headers=X-Remote-Group".into(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            ],
        )?;
        self.wait_for("the API server", interrupted, |c| {
            c.kubectl_output(&["get", "--raw", "/readyz"])
                .map(|out| out.trim() == "ok")
        })?;
        let controller = p("kubeconfig/controller-manager.conf");
        self.spawn(
            "kube-controller-manager",
            self.bin("kube-controller-manager"),
            vec![
                format!("--kubeconfig={controller}"),
                format!("--authentication-kubeconfig={controller}"),
                format!("--authorization-kubeconfig={controller}"),
                format!("--bind-address={local}"),
                "--port=0".into(),
                format!("--cluster-signing-cert-file={}", p("pki/ca.crt")),
                format!("--cluster-signing-key-file={}", p("pki/ca.key")),
                format!("--root-ca-file={}", p("pki/ca.crt")),
                format!("--service-account-private-key-file={}", p("pki/sa.key")),
                "--use-service-account-credentials=true".into(),
                "--leader-elect=false".into(),
            ],
        )?;
        let scheduler = p("kubeconfig/scheduler.conf");
        self.spawn(
            "kube-scheduler",
            self.bin("kube-scheduler"),
            vec![
                format!("--kubeconfig={scheduler}"),
                format!("--authentication-kubeconfig={scheduler}"),
                format!("--authorization-kubeconfig={scheduler}"),
                format!("--bind-address={local}"),
                "--port=0".into(),
                "--leader-elect=false".into(),
            ],
        )?;
        self.load_image_named(&self.bin("pause"), PAUSE_IMAGE, &["/pause"])?;
        make_cgroup_root()?;
        allow_pod_forwarding()?;
        self.spawn(
            "kubelet",
            self.bin("kubelet"),
            vec![
                format!("--config={}", p("kubelet/config.yaml")),
                format!("--kubeconfig={}", p("kubeconfig/kubelet.conf")),
                "--container-runtime=remote".into(),
                format!(
                    "--container-runtime-endpoint=unix://{}",
                    self.containerd_socket().display()
                ),
                format!("--hostname-override={NODE_NAME}"),
                format!("--root-dir={}", p("kubelet/root")),
                format!("--cert-dir={}", p("kubelet/pki")),
                format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            ],
        )?;
        self.spawn(
            "kube-proxy",
            self.bin("kube-proxy"),
            vec![format!("--config={}", p("kube-proxy.yaml"))],
        )?;
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
        super::kubectl_output(self.kubectl(), args)
    }

    /// Polls `ready` until it says yes; a component that exits meanwhile,
    /// the deadline or Ctrl-C end the wait with its log's last lines.
    fn wait_for(
        &mut self,
        what: &str,
        interrupted: &AtomicBool,
        ready: impl Fn(&Self) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                bail!("interrupted while waiting for {what}");
            }
            if let Ok(true) = ready(self) {
                return Ok(());
            }
            for (name, child) in &mut self.processes {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{name} exited ({status}) while waiting for {what}: {}",
                        last_error(&self.log_dir.join(format!("{name}.log")))
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no {what} within {} s (logs in {})",
                    READY_DEADLINE.as_secs(),
                    self.log_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A one-binary image made here, imported into the node's containerd.
    fn load_image_named(&self, binary: &Path, reference: &str, entrypoint: &[&str]) -> Result<()> {
        let archive = self
            .dir
            .join(format!("image-{}.tar", reference.replace(['/', ':'], "_")));
        super::workload::one_binary_image(binary, entrypoint[0], reference, &archive)?;
        self.load_image(&archive)
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new(self.node("usr/bin/ctr"));
        command
            .arg("--address")
            .arg(self.containerd_socket())
            .args(["--namespace", "k8s.io"]);
        command
    }
}

impl Cluster for LocalCluster {
    fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin("kubectl"));
        command.arg("--kubeconfig").arg(self.kubeconfig());
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
            ("kubernetes".to_string(), self.parts.version.clone()),
            ("cluster".to_string(), "k8s-local".to_string()),
            ("kube-proxy".to_string(), "iptables".to_string()),
            (
                "cluster.ready_s".to_string(),
                format!("{:.1}", self.ready_after.as_secs_f64()),
            ),
        ]);
        let mptcp = fs::read_to_string("/proc/sys/net/mptcp/enabled")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "absent".into());
        facts.insert("mptcp.enabled".into(), mptcp);
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
    cleanup_iptables();
    let _ = Command::new("ip")
        .args(["link", "delete", BRIDGE])
        .stderr(Stdio::null())
        .status();
    remove_cgroups();
    let _ = fs::remove_dir_all(&dir);
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

fn cleanup_iptables() {
    let Ok(saved) = Command::new("iptables-save").output() else {
        return;
    };
    let text = String::from_utf8_lossy(&saved.stdout);
    let mut table = "filter".to_string();
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut chains: Vec<(String, String)> = Vec::new();
    let pod_net = POD_SUBNET.trim_end_matches("/24").trim_end_matches(".0");
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split(' ').next().unwrap_or_default();
            if name.starts_with("KUBE-") || name.starts_with("CNI-") {
                chains.push((table.clone(), name.to_string()));
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let jumps_ours = rule.contains("-j KUBE-") || rule.contains("-j CNI-");
            let ours = rule.contains(pod_net) || rule.contains("kmatrix");
            let chain = rule.split(' ').next().unwrap_or_default();
            let in_builtin = !chain.starts_with("KUBE-") && !chain.starts_with("CNI-");
            if in_builtin && (jumps_ours || ours) {
                rules.push((table.clone(), rule.to_string()));
            }
        }
    }
    for (table, rule) in rules {
        let mut args = vec!["-t".to_string(), table, "-D".into()];
        args.extend(shell_split(&rule));
        let _ = Command::new("iptables")
            .args(&args)
            .stderr(Stdio::null())
            .status();
    }
    for flag in ["-F", "-X"] {
        for (table, chain) in &chains {
            let _ = Command::new("iptables")
                .args(["-t", table, flag, chain])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Splits an iptables-save rule into words, keeping quoted comments whole
/// (the bridge plugin's say `"name: \"kmatrix\" id: \"…\""`).
fn shell_split(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
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

/// The kubelet puts every pod under [`CGROUP_ROOT`], which must exist in
/// each controller's hierarchy (cgroup v1) or in the one tree (v2).
fn make_cgroup_root() -> Result<()> {
    let relative = CGROUP_ROOT.trim_start_matches('/');
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
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
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
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
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether the tools a local cluster needs on the host are there.
pub fn check_host_tools() -> Result<()> {
    files::require_tools(
        &["iptables", "iptables-save", "ip", "umount"],
        "a local cluster needs on the host",
    )
}

#[cfg(test)]
mod tests {
    use super::shell_split;

    #[test]
    fn iptables_rules_split_with_their_escaped_comments() {
        let rule = r#"POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: \"kmatrix\" id: \"4aae\"" -j CNI-8fe1"#;
        assert_eq!(
            shell_split(rule),
            [
                "POSTROUTING",
                "-s",
                "10.244.0.2/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "kmatrix" id: "4aae""#,
                "-j",
                "CNI-8fe1",
            ]
        );
    }
}
