#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, then formatting, lints and
# every test, the real QEMU boots and the real Docker engine included.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests need about 10 GB (target/ 2.4 GB, a cold kmatrix cache 5.8 GB,
# 3 GB while the local cluster's Kubernetes binaries build,
# plus scratch): say so up front rather than fail mid-compile.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${free_kb:-0}" -lt $((10 * 1024 * 1024)) ]; then
  echo "test.sh: warning: only $((free_kb / 1024)) MB free on $(df -P . | awk 'NR==2 {print $6}'); the tests need about 10 GB (target/, the kmatrix cache, a Kubernetes build). Free space (old target/ folders, <cache>/images and <cache>/layers) if the build fails with 'No space left on device'." >&2
fi
bash scripts/setup.sh
# The test runner: cargo-nextest from crates.io when the machine lacks it
# (a few minutes to compile, once; then it is on PATH in ~/.cargo/bin).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest (not on this machine)" >&2
  cargo install --quiet --locked cargo-nextest --version 0.9.151
fi
# actionlint checks the GitHub Action (tests/action.rs): its Go module built
# once, with the Go on this machine and no toolchain download.
actionlint=$HOME/.cache/kmatrix-tools/bin/actionlint
if [ ! -x "$actionlint" ]; then
  go=$(command -v go || echo /usr/local/go/bin/go)
  echo "test.sh: building actionlint v1.7.12 from its Go module" >&2
  GOTOOLCHAIN=local GOFLAGS=-mod=mod GOBIN=$(dirname "$actionlint") "$go" install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
fi
# The local Kubernetes cluster's binaries are built once from the
# k8s.io/kubernetes and etcd Go modules (about 6 minutes cold on 2 cores)
# and then reused from the cache; build them here rather than inside a
# test's deadline, with the disk the cluster inside ubuntu-22.04's guest
# runs from (ubuntu-22.04+k8s).
cargo build --quiet --bin kmatrix
target/debug/kmatrix kernels build k8s-local ubuntu-22.04+k8s
# The `docker` environment's tests need an engine: start one if none
# answers, and stop what was started when the tests end.
bash scripts/dockerd.sh start
trap 'bash scripts/dockerd.sh stop' EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo nextest run --workspace --no-fail-fast "$@"
