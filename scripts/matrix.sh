#!/usr/bin/env bash
# The default matrix, end to end: set-up, then every scenario on its kernels.
# Extra arguments go to `kmatrix run` (e.g. --scenario, --kernel, --out).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release --quiet -- run "$@"
