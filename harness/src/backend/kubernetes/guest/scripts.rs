//! The node's two shell scripts: the start outside the node's root, and
//! the node itself (the host cluster's components, in its order).

use super::{
    CGROUP_HIERARCHIES, CHROOT_FILES, DISK_MOUNT, FILES_DIR, GUEST_ADDRESS, GUEST_GATEWAY,
};
use crate::backend::kubernetes::node::{Component, NodeLayout};

/// Runs outside the node, with the disk's static busybox: lays a tmpfs over
/// the read-only node disk, gives it proc, sys, dev, cgroups (v1, or v2
/// where the kernel has no v1 memory controller) and the network, and
/// enters it.
pub(super) fn start_script() -> String {
    let mut s = String::from(
        "# The node's start, outside its root (written by kmatrix).\n# Everything it and the node say goes to the third serial port (the run's cluster/node.log).\nexec > /dev/ttyS2 2>&1\nset -ex\n",
    );
    // The agent gives every probe a network namespace of its own; the
    // node is the guest's, on the network card QEMU forwards to.
    s.push_str(&format!(
        "if [ -z \"$KMATRIX_NODE_NETNS\" ]; then\n  export KMATRIX_NODE_NETNS=guest\n  exec {DISK_MOUNT}/bin/busybox nsenter -t 1 -n {DISK_MOUNT}/bin/busybox sh \"$0\"\nfi\n"
    ));
    s.push_str(&format!(
        "bb={DISK_MOUNT}/bin/busybox\nnode=/node\nsay() {{ echo \"kmatrix-node: $*\"; }}\n"
    ));
    s.push_str(&format!(
        r#"$bb mkdir -p /rw $node
$bb mount -t tmpfs -o mode=0755 tmpfs /rw
$bb mkdir -p /rw/upper /rw/work
$bb mount -t overlay overlay -o lowerdir={DISK_MOUNT},upperdir=/rw/upper,workdir=/rw/work $node
for d in proc sys dev run tmp var/lib/kmatrix var/log {chroot_files}; do $bb mkdir -p $node/$d; done
$bb mount -t proc proc $node/proc
$bb mount -t sysfs sysfs $node/sys
$bb mount -t devtmpfs devtmpfs $node/dev
$bb mkdir -p $node/dev/pts $node/dev/shm
$bb mount -t devpts devpts $node/dev/pts
$bb mount -t tmpfs tmpfs $node/dev/shm
# containerd's overlayfs snapshots need a tmpfs beneath them, not an overlay.
for d in run tmp var/lib/kmatrix; do $bb mount -t tmpfs tmpfs $node/$d; done
$bb mount -o bind {FILES_DIR} $node{chroot_files}
# cgroup v1, as on this host; a kernel without v1 memory or cpuset (Debian's
# 6.12 turns CONFIG_MEMCG_V1 and CONFIG_CPUSETS_V1 off) gets the unified
# hierarchy, every controller delegated from its root. Probed on a scratch
# mount first: a v1 hierarchy holds its controllers away from v2.
v1=yes
for c in memory cpuset; do
  $bb mkdir -p /rw/probe-$c
  if $bb mount -t cgroup -o $c cgroup /rw/probe-$c; then $bb umount /rw/probe-$c; else v1=; fi
done
if [ -n "$v1" ]; then
  $bb mount -t tmpfs -o mode=0755 cgroup $node/sys/fs/cgroup
  for c in {hierarchies}; do
    $bb mkdir -p $node/sys/fs/cgroup/$c
    $bb mount -t cgroup -o $c cgroup $node/sys/fs/cgroup/$c || say "cgroup $c not mounted"
  done
  for pair in cpu:cpu,cpuacct cpuacct:cpu,cpuacct net_cls:net_cls,net_prio net_prio:net_cls,net_prio; do
    $bb ln -s ${{pair#*:}} $node/sys/fs/cgroup/${{pair%%:*}}
  done
  say "cgroup v1"
else
  $bb mount -t cgroup2 cgroup2 $node/sys/fs/cgroup
  for c in $($bb cat $node/sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > $node/sys/fs/cgroup/cgroup.subtree_control || say "cgroup v2: $c not delegated"
  done
  say "cgroup v2 (this kernel has no v1 memory or cpuset): $($bb cat $node/sys/fs/cgroup/cgroup.subtree_control)"
fi
$bb ls /sys/class/net
# The one network card: QEMU's user network (its name varies by kernel).
# Only a device has `device`: the `dummy` module (IPVS) adds dummy0.
nic=
for n in /sys/class/net/*; do
  if [ -e "$n/device" ]; then nic=${{n##*/}}; break; fi
done
[ -n "$nic" ] || {{ say "no network card: is virtio_net loaded?"; exit 1; }}
$bb ip link set lo up
$bb ip link set "$nic" up
$bb ip addr add {GUEST_ADDRESS}/24 dev "$nic"
$bb ip route add default via {GUEST_GATEWAY}
echo 1 > /proc/sys/net/ipv4/ip_forward
echo "nameserver 10.0.2.3" > $node/etc/resolv.conf
say "node root ready"
# The node's root becomes its mount namespace's root, as switch_root makes
# it (moved over /, then chroot): a bare chroot leaves the namespace's root
# on the initramfs, where `kubectl exec` and exec probes land (setns resets
# root there) and find nothing. Then shared, as systemd leaves a kubelet
# host's mounts: a hostPath volume with mountPropagation (kube-ovn's
# /run/openvswitch) is refused on a private one.
cd $node
$bb mount --move . /
exec $bb chroot . /bin/busybox sh -c "/bin/busybox mount --make-rshared / && exec /bin/busybox sh {chroot_files}/node.sh"
"#,
        chroot_files = CHROOT_FILES,
        hierarchies = CGROUP_HIERARCHIES.join(" "),
    ));
    s
}

/// Runs inside the node: the same components as the host's cluster, in
/// the same order, each logging into /var/log/kmatrix (streamed to the
/// host); then watches them, and ends (failing the boot) if one exits.
/// What the node script says once every workload image is in containerd.
pub(super) const IMAGES_IMPORTED: &str = "workload images imported";

pub(super) fn node_script(layout: &NodeLayout) -> String {
    let dir = layout.dir.display();
    let socket = layout.containerd_socket();
    let mut s = format!(
        r#"# The node's start, inside its root (written by kmatrix).
set -ex
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:{bin}:/usr/local/busybox
/bin/busybox mkdir -p /usr/local/busybox /usr/local/sbin /var/log/kmatrix /run/kmatrix
/bin/busybox --install -s /usr/local/busybox
# Debian's iptables has no alternatives links unpacked: kube-proxy gets the
# legacy backend, whose xt_* modules every kernel here has.
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf /usr/sbin/xtables-legacy-multi /usr/local/sbin/$t
done
say() {{ echo "kmatrix-node: $*" > /dev/ttyS2; }}
mkdir -p {folders}
cp -a {chroot_files}/cluster/. {dir}/
# The pods' cgroup: in each v1 hierarchy, or once in v2 with the root's
# controllers passed on (the kubelet checks them there).
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/{cgroup_root}
  for c in $(cat /sys/fs/cgroup/{cgroup_root}/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/{cgroup_root}/cgroup.subtree_control
  done
else
  for c in /sys/fs/cgroup/*/; do [ -L "${{c%/}}" ] || mkdir -p "${{c}}{cgroup_root}"; done
fi
: > /run/kmatrix/pids
start() {{
  name=$1; shift
  "$@" > /var/log/kmatrix/$name.log 2>&1 &
  echo "$name $!" >> /run/kmatrix/pids
  (tail -n +1 -f /var/log/kmatrix/$name.log | sed "s/^/[$name] /" > /dev/ttyS2) &
  say "started $name"
}}
check() {{
  while read -r name pid; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited:" >&2
      tail -n 30 /var/log/kmatrix/$name.log >&2
      exit 1
    fi
  done < /run/kmatrix/pids
}}
"#,
        bin = layout.bin.display(),
        folders = layout
            .folders()
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        chroot_files = CHROOT_FILES,
        cgroup_root = crate::backend::kubernetes::node::CGROUP_ROOT.trim_start_matches('/'),
    );
    let start = |s: &mut String, components: Vec<Component>| {
        for c in components {
            let mut words = vec![c.name.to_string(), c.program.display().to_string()];
            words.extend(c.args);
            s.push_str(&format!("start {}\n", shell_words::join(&words)));
        }
    };
    // Under TCG the kubelet (an 80 MB Go program) takes ~30 s to start: it
    // starts as soon as containerd has the pause image and waits for the
    // API server itself, so its start overlaps the API server's. The
    // controller manager exits if the API server is up but its RBAC not
    // yet bootstrapped ("extension-apiserver-authentication is forbidden":
    // no kubelet restarts it here, as for kubeadm's static pods), so it,
    // the scheduler and kube-proxy wait for /readyz. Workload images are
    // imported while the kubelet registers; the host waits for
    // IMAGES_IMPORTED too.
    start(&mut s, layout.control_plane());
    let import = |image: &str| {
        format!(
            "  ctr --address {socket} --namespace k8s.io images import --no-unpack=false \"{image}\" > /dev/null\n  say \"imported {image}\"\n",
            socket = socket.display()
        )
    };
    s.push_str(&format!(
        "until [ -S {socket} ]; do check; sleep 1; done\nfor image in {CHROOT_FILES}/images/0-pause.tar; do\n{}done\n",
        import("$image"),
        socket = socket.display(),
    ));
    let (kubelet, proxy): (Vec<Component>, Vec<Component>) = layout
        .node_agents()
        .into_iter()
        .partition(|c| c.name == "kubelet");
    start(&mut s, kubelet);
    s.push_str(&format!(
        "until kubectl --kubeconfig={admin} get --raw /readyz > /dev/null 2>&1; do check; sleep 1; done\nsay \"API server ready\"\nkubectl --kubeconfig={admin} apply -f {dir}/cluster-admins.yaml\n",
        admin = layout.kubeconfig().display()
    ));
    start(&mut s, layout.controllers());
    start(&mut s, proxy);
    s.push_str(&format!(
        "for image in {CHROOT_FILES}/images/*.tar; do\n  [ \"${{image##*/}}\" = 0-pause.tar ] && continue\n{}done\nsay \"{IMAGES_IMPORTED}\"\n",
        import("$image"),
    ));
    s.push_str(&format!(
        "say \"node started in {dir}\"\nset +x\nwhile true; do check; sleep 5; done\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::super::GUEST_CLUSTER_DIR;
    use super::*;
    use crate::inputs::scenario::KubeProxyMode;
    use crate::provision::cluster::GUEST_BIN_DIR;
    use std::path::{Path, PathBuf};

    fn layout() -> NodeLayout {
        NodeLayout {
            dir: PathBuf::from(GUEST_CLUSTER_DIR),
            bin: Path::new("/").join(GUEST_BIN_DIR),
            node: PathBuf::from("/"),
            runc: PathBuf::from("/usr/sbin/runc"),
            apiserver_bind: "0.0.0.0",
            version: "v1.34.4".into(),
            kube_proxy: KubeProxyMode::Iptables,
        }
    }

    #[test]
    fn the_node_script_starts_the_host_clusters_components_in_order() {
        let script = node_script(&layout());
        let order: Vec<usize> = [
            "start etcd /opt/kmatrix/bin/etcd",
            "start containerd /usr/bin/containerd",
            "start kube-apiserver /opt/kmatrix/bin/kube-apiserver",
            "0-pause.tar",
            "start kubelet",
            "get --raw /readyz",
            "cluster-admins.yaml",
            "start kube-controller-manager",
            "start kube-scheduler",
            "start kube-proxy",
            "workload images imported",
        ]
        .iter()
        .map(|needle| {
            script
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} not in\n{script}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{script}");
        // Inside the guest the API server must take QEMU's forwarded port.
        assert!(script.contains("--bind-address=0.0.0.0"), "{script}");
        // The same arguments as on the host, quoted for the shell.
        assert!(
            script.contains("--config=/var/lib/kmatrix/k8s-local/containerd/config.toml"),
            "{script}"
        );
        let parsed = shell_words::split(
            script
                .lines()
                .find(|l| l.starts_with("start kube-apiserver"))
                .expect("an apiserver line"),
        )
        .expect("the line parses as shell words");
        assert!(parsed.contains(&"--requestheader-allowed-names=front-proxy-client".to_string()));
    }

    #[test]
    fn the_start_script_mounts_every_cgroup_hierarchy_and_enters_the_node() {
        let script = start_script();
        for hierarchy in CGROUP_HIERARCHIES {
            assert!(script.contains(hierarchy), "{hierarchy}");
        }
        // Kernels without v1 memory/cpuset get cgroup v2 with controllers.
        assert!(script.contains("mount -t cgroup2 cgroup2 $node/sys/fs/cgroup"));
        assert!(script.contains("cgroup.subtree_control"));
        assert!(script.contains(&format!("lowerdir={DISK_MOUNT}")));
        // Every mount made, then the node moved over / (exec's setns lands
        // there), entered, and made shared (mountPropagation).
        let moved = script.find("$bb mount --move . /").expect("moved");
        let after = &script[moved..];
        assert!(!after.contains("mount -t") && !after.contains("mount -o bind"));
        assert!(script.trim_end().ends_with(
            "exec $bb chroot . /bin/busybox sh -c \"/bin/busybox mount --make-rshared / && exec /bin/busybox sh /kmatrix/node.sh\""
        ));
    }
}
