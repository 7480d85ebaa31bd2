#!/usr/bin/env bash
# Benchmark: what booting one VM per kernel (all cells in one boot) saves
# over one boot per cell. Both runs are measured here, in this script, on
# this machine, and reported as a ratio; nothing is compared with numbers
# from elsewhere. Kernels and builds come from the cache (a first run fills it).
#
#   bash scripts/bench.sh [SCENARIO] [KERNEL]
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-kube-vip-cidr}
kernel=${2:-debian-6.1}
cargo build --release --quiet
kmatrix=target/release/kmatrix
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Warm the cache so neither timing includes downloads or builds.
$kmatrix run --scenario "$scenario" --kernel "$kernel" --out "$work/warm" >/dev/null 2>&1

mapfile -t cells < <($kmatrix plan --scenario "$scenario" --kernel "$kernel" --format json \
  | python3 -c 'import json,sys; print("\n".join(c["cell_id"] for c in json.load(sys.stdin)))')

now() { date +%s.%N; }
start=$(now)
$kmatrix run --scenario "$scenario" --kernel "$kernel" -j 1 --out "$work/one-boot" >/dev/null 2>&1
one_boot=$(python3 -c "print($(now) - $start)")

start=$(now)
for cell in "${cells[@]}"; do
  $kmatrix run --scenario "$scenario" --kernel "$kernel" -j 1 --cell "$cell" --out "$work/cell-$cell" >/dev/null 2>&1
done
per_cell=$(python3 -c "print($(now) - $start)")

python3 - "$scenario" "$kernel" "${#cells[@]}" "$one_boot" "$per_cell" <<'PY'
import sys
scenario, kernel, n, one, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(f"{scenario} on {kernel}, {n} cells, TCG:")
print(f"  one boot for all cells : {one:6.1f} s")
print(f"  one boot per cell      : {per:6.1f} s")
print(f"  ratio                  : {per / one:6.2f}x  (one boot per kernel is this much faster)")
PY
