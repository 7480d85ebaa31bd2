#!/usr/bin/env bash
# Benchmark (`just bench`): the peers' set-up, then `kmatrix bench` from a
# release build, with virtme-ng and vmtest beside it. Every figure is taken
# in this one invocation on this machine and compared only with the others
# taken with it; nothing is compared with numbers from elsewhere.
#
#   bash scripts/bench.sh [kmatrix bench options]   e.g. --kernel debian-6.12 --rounds 9
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/bench-setup.sh
cargo build --release --quiet
exec target/release/kmatrix bench --peer virtme-ng --peer vmtest "$@"
