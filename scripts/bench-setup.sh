#!/usr/bin/env bash
# Installs the peers `kmatrix bench --peer ...` times kmatrix against, into
# the kmatrix cache (bench-peers/), from the registries this machine
# reaches. Not part of the test set-up: only the bench needs them.
#
#   virtme-ng  PyPI (pinned), in a venv. The Debian cloud kernels have no 9p,
#              so vng shares the host root over virtiofs: virtiofsd from
#              crates.io (Debian's is only in trixie/sid and needs glibc 2.39),
#              built against libseccomp-dev and libcap-ng-dev. vng's
#              initramfs needs busybox (busybox-static); its script I/O needs
#              udev (without it vng falls back to the console and exits 255).
#   vmtest     crates.io (pinned). See the README's bench notes for what it
#              needs on a machine whose KVM does not work.
set -euo pipefail
cd "$(dirname "$0")/.."

VIRTME_NG=1.42
VIRTIOFSD=1.14.0
VMTEST=0.18.0

cache="${KMATRIX_CACHE:-$HOME/.cache/kmatrix}"
peers="$cache/bench-peers"
mkdir -p "$peers"

need=()
command -v busybox >/dev/null || need+=(busybox-static)
command -v udevadm >/dev/null || need+=(udev)
[ -f /usr/include/seccomp.h ] || need+=(libseccomp-dev)
[ -f /usr/include/cap-ng.h ] || need+=(libcap-ng-dev)
command -v qemu-ga >/dev/null || need+=(qemu-guest-agent)
bash scripts/apt-install.sh bench-setup "${need[@]}"

if [ ! -x "$peers/virtme-ng/bin/vng" ]; then
  echo "bench-setup: virtme-ng $VIRTME_NG from PyPI" >&2
  python3 -m venv "$peers/virtme-ng"
  "$peers/virtme-ng/bin/pip" install -q "virtme-ng==$VIRTME_NG"
fi
if [ ! -x "$peers/virtiofsd/bin/virtiofsd" ]; then
  echo "bench-setup: virtiofsd $VIRTIOFSD from crates.io (a few minutes)" >&2
  cargo install -q --locked --root "$peers/virtiofsd" "virtiofsd@$VIRTIOFSD"
fi
if [ ! -x "$peers/vmtest/bin/vmtest" ]; then
  echo "bench-setup: vmtest $VMTEST from crates.io" >&2
  cargo install -q --locked --root "$peers/vmtest" "vmtest@$VMTEST"
fi
echo "bench-setup: peers ready in $peers" >&2
