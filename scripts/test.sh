#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, then formatting, lints and
# every test, the real QEMU boots and the real Docker engine included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The `docker` environment's tests need an engine: start one if none
# answers, and stop what was started when the tests end.
bash scripts/dockerd.sh start
trap 'bash scripts/dockerd.sh stop' EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo nextest run --workspace --no-fail-fast "$@"
