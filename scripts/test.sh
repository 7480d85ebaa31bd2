#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, then formatting, lints and
# every test, the real QEMU boots included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo nextest run --workspace --no-fail-fast "$@"
