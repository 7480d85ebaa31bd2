//! What a single-node cluster is, wherever it runs: its configuration
//! files, its credentials, and its components' command lines. The host's
//! cluster (`local.rs`) starts these as processes; the guest's (`guest.rs`)
//! writes them into the script its guest runs. Only paths and the API
//! server's bind address differ between the two.

use crate::inputs::scenario::KubeProxyMode;
use crate::sources::kbuild::logged_step;
use anyhow::Result;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ports the control plane listens on.
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

pub const NODE_NAME: &str = "localhost";
/// The pod bridge's own address. kubeadm wants a non-loopback advertise
/// address for the certificates; the API server need not listen on it.
pub const GATEWAY: &str = "10.244.0.1";
pub const BRIDGE: &str = "kmatrix0";
pub const POD_SUBNET: &str = "10.244.0.0/24";
pub const SERVICE_SUBNET: &str = "10.97.0.0/16";
pub const PAUSE_IMAGE: &str = "kmatrix.local/pause:3.10";
/// What `kubeadm init` binds and our phase-by-phase start does not: the
/// group kubeadm 1.29+ gives admin.conf's user and the API server's kubelet
/// client certificate, bound to cluster-admin. Without it the kubelet
/// refuses the API server (`kubectl logs`: "Forbidden (user=kube-apiserver-
/// kubelet-client, … subresource(s)=[proxy])"). Applied once the API server
/// is ready.
pub const CLUSTER_ADMINS: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:cluster-admins
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: kubeadm:cluster-admins
";
/// The cgroup every pod lives under, so a sweep finds all their processes.
pub const CGROUP_ROOT: &str = "/kmatrix-k8s";

/// Where a node's parts are, as its processes see them.
pub struct NodeLayout {
    /// Configuration, credentials and state (etcd, containerd, kubelet).
    pub dir: PathBuf,
    /// Kubernetes' binaries.
    pub bin: PathBuf,
    /// The root the Debian parts are under (`usr/bin/containerd`, ...).
    pub node: PathBuf,
    /// The runc containerd runs pods with.
    pub runc: PathBuf,
    /// What the API server listens on: 127.0.0.1 on the host; the guest's
    /// every address inside a guest, where QEMU forwards a host port to it.
    pub apiserver_bind: &'static str,
    pub version: String,
    pub kube_proxy: KubeProxyMode,
}

/// One process of the cluster.
pub struct Component {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl NodeLayout {
    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    pub fn node(&self, path: &str) -> PathBuf {
        self.node.join(path)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        // kubeadm 1.29+ puts admin.conf's user in kubeadm:cluster-admins,
        // bound to cluster-admin only by a full `kubeadm init`; super-admin.conf
        // is system:masters.
        self.dir.join("kubeconfig/super-admin.conf")
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// The folders the configuration and the state go into.
    pub fn folders(&self) -> Vec<PathBuf> {
        [
            "pki",
            "kubeconfig",
            "etcd",
            "kubelet",
            "containerd",
            "cni/net.d",
            "cni/ipam",
        ]
        .iter()
        .map(|sub| self.dir.join(sub))
        .collect()
    }

    /// containerd's configuration: its own root, state and socket; the
    /// CRI plugin with our runc, the pause image and the CNI folders.
    fn containerd_config(&self) -> String {
        format!(
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
  # The pods' network namespaces under the state folder, not the host's
  # /run/netns: the sweep's unmount frees them (and their veths) with the rest.
  netns_mounts_under_state_dir = true
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
            root = self.path("containerd/root"),
            state = self.path("containerd/state"),
            sock = self.containerd_socket().display(),
            opt = self.path("containerd/opt"),
            runc = self.runc.display(),
            cni_bin = self.node("usr/lib/cni").display(),
            cni_conf = self.path("cni/net.d"),
        )
    }

    /// The configuration files (path under [`NodeLayout::dir`], text).
    pub fn config_files(&self) -> Result<Vec<(&'static str, String)>> {
        let containerd = self.containerd_config();
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
                    "dataDir": self.path("cni/ipam"),
                }
            }, {"type": "loopback"}]
        });
        // failCgroupV1: false — the host (and a guest whose kernel has v1
        // memory) is cgroup v1, which the 1.35 kubelet refuses by default;
        // 1.31–1.34 read the field and default it to false already.
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
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
cgroupRoot: {CGROUP_ROOT}
failCgroupV1: false
failSwapOn: false
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
evictionHard: {{memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%}}
",
            ca = self.path("pki/ca.crt"),
            socket = self.containerd_socket().display(),
        );
        let proxy = format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: {mode}
ipvs: {{scheduler: rr}}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
hostnameOverride: {NODE_NAME}
clusterCIDR: {POD_SUBNET}
iptables: {{masqueradeAll: true}}
conntrack: {{maxPerCore: 0}}
",
            kubeconfig = self.kubeconfig().display(),
            mode = self.kube_proxy.as_str(),
        );
        Ok(vec![
            ("containerd/config.toml", containerd),
            (
                "cni/net.d/10-kmatrix.conflist",
                String::from_utf8(serde_json::to_vec_pretty(&cni)?)?,
            ),
            ("kubelet/config.yaml", kubelet),
            ("kube-proxy.yaml", proxy),
            ("cluster-admins.yaml", CLUSTER_ADMINS.to_string()),
        ])
    }

    /// Started first, in this order: etcd, containerd, the API server.
    pub fn control_plane(&self) -> Vec<Component> {
        let p = |rel: &str| self.path(rel);
        let local = "127.0.0.1";
        vec![
            Component {
                name: "etcd",
                program: self.bin("etcd"),
                args: vec![
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
            },
            Component {
                name: "containerd",
                program: self.node("usr/bin/containerd"),
                args: vec![format!("--config={}", p("containerd/config.toml"))],
            },
            Component {
                name: "kube-apiserver",
                program: self.bin("kube-apiserver"),
                args: vec![
                    format!("--advertise-address={GATEWAY}"),
                    format!("--bind-address={}", self.apiserver_bind),
                    format!("--secure-port={}", PORTS.apiserver),
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
            },
        ]
    }

    /// Started once the API server is ready: the controller manager and
    /// the scheduler.
    pub fn controllers(&self) -> Vec<Component> {
        let p = |rel: &str| self.path(rel);
        let controller = p("kubeconfig/controller-manager.conf");
        let scheduler = p("kubeconfig/scheduler.conf");
        vec![
            Component {
                name: "kube-controller-manager",
                program: self.bin("kube-controller-manager"),
                args: vec![
                    format!("--kubeconfig={controller}"),
                    format!("--authentication-kubeconfig={controller}"),
                    format!("--authorization-kubeconfig={controller}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--cluster-signing-cert-file={}", p("pki/ca.crt")),
                    format!("--cluster-signing-key-file={}", p("pki/ca.key")),
                    format!("--root-ca-file={}", p("pki/ca.crt")),
                    format!("--service-account-private-key-file={}", p("pki/sa.key")),
                    "--use-service-account-credentials=true".into(),
                    "--leader-elect=false".into(),
                ],
            },
            Component {
                name: "kube-scheduler",
                program: self.bin("kube-scheduler"),
                args: vec![
                    format!("--kubeconfig={scheduler}"),
                    format!("--authentication-kubeconfig={scheduler}"),
                    format!("--authorization-kubeconfig={scheduler}"),
                    "--bind-address=127.0.0.1".into(),
                    "--leader-elect=false".into(),
                ],
            },
        ]
    }

    /// Started last, once the pause image is in containerd and the pods'
    /// cgroup exists: the kubelet and kube-proxy.
    pub fn node_agents(&self) -> Vec<Component> {
        let p = |rel: &str| self.path(rel);
        vec![
            Component {
                name: "kubelet",
                program: self.bin("kubelet"),
                args: vec![
                    format!("--config={}", p("kubelet/config.yaml")),
                    format!("--kubeconfig={}", p("kubeconfig/kubelet.conf")),
                    format!("--hostname-override={NODE_NAME}"),
                    format!("--root-dir={}", p("kubelet/root")),
                    format!("--cert-dir={}", p("kubelet/pki")),
                ],
            },
            Component {
                name: "kube-proxy",
                program: self.bin("kube-proxy"),
                args: vec![format!("--config={}", p("kube-proxy.yaml"))],
            },
        ]
    }
}

/// Writes the cluster's certificates and kubeconfigs into `dir/pki` and
/// `dir/kubeconfig` with kubeadm (its `certs` and `kubeconfig` phases
/// only), every kubeconfig pointing at `https://127.0.0.1:<apiserver>`.
/// The files hold no path, so they serve a node wherever it runs.
pub fn write_credentials(
    kubeadm: &Path,
    dir: &Path,
    version: &str,
    extra_sans: &[&str],
    api_host: &str,
    log_path: &Path,
) -> Result<()> {
    for sub in ["pki", "kubeconfig"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let mut sans = vec!["127.0.0.1", "localhost", GATEWAY];
    sans.extend(extra_sans);
    let config = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {GATEWAY}
  bindPort: {port}
nodeRegistration:
  name: {NODE_NAME}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {version}
certificatesDir: {pki}
controlPlaneEndpoint: 127.0.0.1:{port}
apiServer:
  certSANs: [{sans}]
networking:
  serviceSubnet: {SERVICE_SUBNET}
  podSubnet: {POD_SUBNET}
",
        port = PORTS.apiserver,
        pki = dir.join("pki").display(),
        sans = sans.join(", "),
    );
    let config_path = dir.join("kubeadm.yaml");
    fs::write(&config_path, config)?;
    let mut log = File::create(log_path)?;
    for phase in [&["certs", "all"][..], &["kubeconfig", "all"][..]] {
        let mut command = Command::new(kubeadm);
        command
            .args(["init", "phase"])
            .args(phase)
            .arg("--config")
            .arg(&config_path);
        if phase[0] == "kubeconfig" {
            command.arg("--kubeconfig-dir").arg(dir.join("kubeconfig"));
        }
        logged_step(&mut command, &mut log, log_path, &mut |_| {})?;
    }
    // kubeadm points some kubeconfigs at the advertise address, others at
    // the control-plane endpoint; every component talks to `api_host`,
    // where the API server listens.
    let server = format!("https://{api_host}:{}", PORTS.apiserver);
    for entry in fs::read_dir(dir.join("kubeconfig"))? {
        let path = entry?.path();
        let text = fs::read_to_string(&path)?
            .replace(&format!("https://{GATEWAY}:{}", PORTS.apiserver), &server)
            .replace(&format!("https://127.0.0.1:{}", PORTS.apiserver), &server);
        fs::write(&path, text)?;
    }
    Ok(())
}
