#!/usr/bin/env bash
# kube-ovn's own install.sh, with kube-ovn's own binaries built from its Go
# module at v1.14.10 and Debian trixie's Open vSwitch/OVN, on a kmatrix
# cluster: how far the real components come up (docs/kubernetes.md, "kube-ovn's
# full install, measured"). An experiment, not a matrix cell: it holds a
# cluster with a placeholder workload while install.sh runs against it.
#
#   scripts/experiments/kube-ovn-install.sh k8s-local
#   scripts/experiments/kube-ovn-install.sh ubuntu-22.04+k8s
#
# Needs: mmdebstrap and umoci (Debian packages), target/release/kmatrix, the
# Go module proxy (kube-ovn v1.14.10 is the v1.14 tag it serves). On the
# host's cluster `/` must be a shared mount (`mount --make-rshared /`, as
# systemd leaves it): kube-ovn's DaemonSets mount /run/openvswitch with
# mountPropagation. It writes kube-ovn's hostPath folders on the node (on
# k8s-local: this host's /etc/origin, /run/openvswitch, /etc/cni/net.d, ...)
# and removes them at the end.
set -euo pipefail
kernel=${1:?usage: $0 k8s-local|<kernel>+k8s}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${KO_WORK:-/tmp/kube-ovn-install}
kmatrix=$repo/target/release/kmatrix
version=v1.14.10
mkdir -p "$work"

step() { echo "== $(date +%T) $*"; }

# 1. kube-ovn's binaries, built as its build.mk builds them (CGO off,
#    -trimpath -w -s, PIE but for the CNI plugin), with Debian's Go 1.25
#    (go.mod says go 1.25.1), from the module the proxy serves.
src=$work/src
if [ ! -x "$src/out/kube-ovn-daemon" ]; then
  step "building kube-ovn $version from its module"
  go125=$(ls -d ~/.cache/kmatrix/toolchains/*/root/usr/lib/go-1.25 | head -1)
  [ -d "$go125" ] || { echo "no go-1.25 toolchain: run kmatrix kernels build or a kube-ovn-tproxy cell first" >&2; exit 2; }
  mod=$(GOTOOLCHAIN=local GOMODCACHE=$HOME/.cache/kmatrix/gomod "$go125/bin/go" mod download -json "github.com/kubeovn/kube-ovn@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  rm -rf "$src"; cp -r "$mod" "$src"; chmod -R u+w "$src"
  (
    cd "$src"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod PATH=$go125/bin:$PATH
    export GOCACHE=$HOME/.cache/kmatrix/go-build GOMODCACHE=$HOME/.cache/kmatrix/gomod
    ld="-w -s -X github.com/kubeovn/kube-ovn/versions.VERSION=$version"
    go build -trimpath -ldflags "$ld" -o out/kube-ovn ./cmd/cni
    for b in kube-ovn-cmd:./cmd kube-ovn-daemon:./cmd/daemon kube-ovn-controller:./cmd/controller; do
      go build -trimpath -ldflags "$ld" -buildmode=pie -o "out/${b%%:*}" "${b#*:}"
    done
  )
fi

# 2. The image: Debian trixie with Open vSwitch 3.5 / OVN 25.03 and the
#    tools kube-ovn's base image installs, plus the binaries, the module's
#    dist/images scripts and links laid out as its Dockerfile lays them.
root=$work/root
if [ ! -d "$work/oci" ]; then
  step "assembling the image"
  rm -rf "$root"
  mmdebstrap --variant=apt --mode=root --include=openvswitch-switch,ovn-central,ovn-host,iproute2,iptables,kmod,procps,hostname,netbase,ca-certificates,ethtool,ncat,conntrack,ipset,ipvsadm,arping,iputils-ping,uuid-runtime,openssl,ndisc6,libcap2-bin,python3,curl,dumb-init,bash,net-tools,containernetworking-plugins trixie "$root" http://deb.debian.org/debian
  # As kube-ovn's base image: no /etc/localtime (its DaemonSets mount the
  # node's there; a node without one gets a folder, which cannot go over
  # the link Debian ships).
  rm -f "$root"/etc/localtime
  rm -rf "$root"/usr/share/doc "$root"/usr/share/locale "$root"/usr/share/man "$root"/var/lib/apt/lists/*
  mkdir -p "$root"/kube-ovn "$root"/var/run/openvswitch "$root"/var/run/ovn "$root"/etc/cni/net.d "$root"/opt/cni/bin
  d=$src/dist/images
  cp "$d"/*.sh "$d"/kubectl-ko "$d"/01-kube-ovn.conflist "$root"/kube-ovn/ && chmod +x "$root"/kube-ovn/*.sh
  cp "$d"/grace_stop_ovn_controller "$root"/usr/share/ovn/scripts/
  cp "$src"/out/* "$root"/kube-ovn/
  for l in monitor speaker webhook leader-checker ic-controller; do ln -sf /kube-ovn/kube-ovn-cmd "$root/kube-ovn/kube-ovn-$l"; done
  ln -sf /kube-ovn/kube-ovn-controller "$root"/kube-ovn/kube-ovn-pinger
  cp "$root"/usr/lib/cni/loopback "$root"/usr/lib/cni/portmap "$root"/usr/lib/cni/macvlan "$root"/
  chroot "$root" /kube-ovn/iptables-wrapper-installer.sh --no-sanity-check
  (cd "$root" && tar --numeric-owner -cf "$work/root.tar" .)
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$version"
  umoci raw add-layer --image "$work/oci:$version" "$work/root.tar"
  umoci config --image "$work/oci:$version" --config.workingdir /kube-ovn \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd /bin/bash
  rm -f "$work/root.tar"
fi

# 3. A project holding one placeholder workload whose image is that one
#    (kmatrix loads it into the node as kmatrix.local/kube-ovn:v1.14.10; the
#    node never pulls), and the openvswitch module for a guest's kernel.
project=$work/project
rm -rf "$project"; mkdir -p "$project"/scenarios
cp -r "$repo"/images "$project"/
cp -r "$repo"/scripts/experiments/kube-ovn-hold "$project"/scenarios/kube-ovn
sed -i "s|@OCI@|oci:$work/oci:$version|" "$project"/scenarios/kube-ovn/scenario.toml
# The guest's memory: the image travels in the initramfs and is imported
# into containerd on a tmpfs.
sed -i 's/^guest_memory_mb = .*/guest_memory_mb = 8192/' "$project"/images/kubernetes.toml

step "starting the cluster ($kernel)"
rm -rf "$work/run"; touch "$work/started"
(cd "$project" && exec "$kmatrix" run --kernel "$kernel" --out "$work/run") > "$work/run.log" 2>&1 &
holder=$!
cleanup() {
  kill -INT $holder 2>/dev/null; wait $holder 2>/dev/null || true
  if [ "$kernel" = k8s-local ]; then
    # install.sh's hostPath folders on this host.
    rm -rf /etc/origin /run/openvswitch /run/ovn /var/log/kube-ovn /var/log/openvswitch /var/log/ovn \
      /usr/local/bin/kubectl-ko /etc/cni/net.d/01-kube-ovn.conflist \
      /opt/cni/bin/kube-ovn /opt/cni/bin/loopback /opt/cni/bin/portmap /opt/cni/bin/macvlan
  fi
}
trap cleanup EXIT
kubectl=$(ls ~/.cache/kmatrix/kubernetes-built/*/bin/kubectl | head -1)
mkdir -p "$work/bin"; ln -sf "$kubectl" "$work/bin/kubectl"; export PATH=$work/bin:$PATH
kubeconfig() {
  if [ "$kernel" = k8s-local ]; then echo /var/lib/kmatrix/k8s-local/kubeconfig/super-admin.conf
  else find "${TMPDIR:-/tmp}" -maxdepth 3 -name admin.conf -path "*kubernetes-*" -newer "$work/started" 2>/dev/null | head -1; fi
}
until [ -n "$(kubeconfig)" ] && KUBECONFIG=$(kubeconfig) kubectl get pods -A 2>/dev/null | grep -q "hold.*Running"; do
  kill -0 $holder 2>/dev/null || { echo "the cluster run ended:" >&2; tail -5 "$work/run.log" >&2; exit 1; }
  sleep 5
done
export KUBECONFIG=$(kubeconfig)

# 4. kube-ovn's own install.sh at the tag, two lines changed: the image's
#    registry (the node holds it as kmatrix.local/kube-ovn:v1.14.10) and
#    root instead of nobody (the image has no file capabilities: kube-ovn's
#    Dockerfile setcap's its binaries, this assembly does not).
mkdir -p "$work/install"; cd "$work/install"
sed -e 's|^REGISTRY="docker.io/kubeovn"|REGISTRY="kmatrix.local"|' \
    -e 's|^RUN_AS_USER=65534 .*|RUN_AS_USER=0|' "$src/dist/images/install.sh" > install.sh
# install.sh puts OVN's databases on the control-plane node; kmatrix's node has no role label.
kubectl label node --all node-role.kubernetes.io/control-plane= --overwrite
step "kube-ovn's install.sh with ENABLE_TPROXY=true"
(ENABLE_TPROXY=true timeout 1800 bash install.sh > install.log 2>&1; echo "install.sh exit $?" >> install.log) &

# 5. kube-ovn-cni: its daemon's own words, first as installed, then with
#    the workaround (GODEBUG=multipathtcp=0 in its DaemonSet).
cni_state() {
  kubectl -n kube-system get pod -l app=kube-ovn-cni \
    -o jsonpath='{.items[0].status.containerStatuses[0].ready} {.items[0].status.containerStatuses[0].restartCount}' 2>/dev/null
}
watch_cni() { # $1: label. Ready, or a fatal line from the daemon, or 25 min.
  # Under TCG the daemon's health server can miss the liveness probe's
  # 30 s + 3 x 7 s and be restarted (exit 143) before it gets Ready: a
  # restart alone is no verdict, the daemon's own fatal line is.
  local deadline=$((SECONDS + 1500)) ready restarts
  while [ $SECONDS -lt $deadline ]; do
    read -r ready restarts <<<"$(cni_state)"
    if [ "$ready" = true ]; then step "$1: kube-ovn-cni Ready (restarts: $restarts)"; return 0; fi
    if [ "${restarts:-0}" -ge 2 ] && kubectl -n kube-system logs ds/kube-ovn-cni --previous 2>/dev/null | grep -q "^F[0-9]"; then
      step "$1: kube-ovn-cni exits on a fatal line (restarts: $restarts)"; return 1
    fi
    sleep 10
  done
  step "$1: kube-ovn-cni neither Ready nor failing in 25 min"; return 2
}
if [ "$kernel" != k8s-local ]; then
  # Under TCG the daemon needs minutes before its health server answers:
  # the liveness probe (30 s + 3 x 7 s) would restart it forever. The one
  # change to kube-ovn's manifests besides the two in install.sh.
  until kubectl -n kube-system get ds kube-ovn-cni >/dev/null 2>&1; do sleep 5; done
  kubectl -n kube-system patch ds kube-ovn-cni --type=json \
    -p='[{"op":"replace","path":"/spec/template/spec/containers/0/livenessProbe/initialDelaySeconds","value":300}]'
fi
mkdir -p "$work/logs"
watch_cni "as installed" || true
kubectl -n kube-system logs ds/kube-ovn-cni --previous > "$work/logs/cni-installed.log" 2>&1 || true
grep -h "^F[0-9]" "$work/logs/cni-installed.log" || echo "(no fatal line)"
kubectl -n kube-system set env ds/kube-ovn-cni GODEBUG=multipathtcp=0
sleep 20
watch_cni "GODEBUG=multipathtcp=0" || true
kubectl -n kube-system logs ds/kube-ovn-cni > "$work/logs/cni-workaround.log" 2>&1 || true
grep -h "^F[0-9]" "$work/logs/cni-workaround.log" || echo "(no fatal line)"
for t in deploy/ovn-central ds/ovs-ovn deploy/kube-ovn-controller; do
  kubectl -n kube-system logs "$t" --tail=300 > "$work/logs/${t//\//_}.log" 2>&1 || true
done
kubectl get pods -A -o wide | tee "$work/logs/pods.txt"
step "logs in $work/logs, install.sh's output in $work/install/install.log"
