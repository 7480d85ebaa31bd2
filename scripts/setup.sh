#!/usr/bin/env bash
# Installs what kmatrix needs from Debian's packages, once: QEMU to boot the
# guests (bookworm's 7.2, for its libraries and as the fallback: kmatrix
# runs its own pinned QEMU from the cache); cpio and rpm2cpio to unpack RPM kernels (and the tests read
# kmatrix's initramfs back with cpio); rpmbuild for the tests' own RPM; the
# kernel build tools for source-built kernels. Kernels and Go toolchains are
# not installed: kmatrix unpacks them into its cache through a private apt
# configuration.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v rpm2cpio >/dev/null || need+=(rpm2cpio)
command -v rpmbuild >/dev/null || need+=(rpm)
command -v python3 >/dev/null || need+=(python3) # the RPM kernel test's HTTP server
command -v depmod >/dev/null || need+=(kmod)
for tool in make gcc flex bison bc perl xz zstd; do
  case $tool in xz) pkg=xz-utils ;; *) pkg=$tool ;; esac
  command -v $tool >/dev/null || need+=($pkg)
done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
command -v chromium >/dev/null || need+=(chromium) # the HTML report is checked in a real browser
command -v clang >/dev/null || need+=(clang)        # BPF objects (clang -target bpf)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v dpkg-deb >/dev/null || need+=(dpkg)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev) # the static guest agent
command -v mke2fs >/dev/null || need+=(e2fsprogs)          # image root filesystems (mke2fs -d)
command -v docker-registry >/dev/null || need+=(docker-registry) # the tests' real registry
command -v skopeo >/dev/null || need+=(skopeo)             # the tests fill it, and make archives
command -v openssl >/dev/null || need+=(openssl)           # the tests' token service signs with it
# The local Kubernetes cluster (k8s-local): its build runs rsync; kube-proxy
# and the sweep of a killed cluster use the host's iptables and ip.
command -v rsync >/dev/null || need+=(rsync)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
# The `docker` environment: Debian's engine, when no engine answers already
# (scripts/dockerd.sh starts it for the tests and stops it after).
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || need+=(docker.io)
fi

bash "$(dirname "$0")/apt-install.sh" setup "${need[@]}"
