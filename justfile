# Everyday recipes. `just --list` shows them.

# Install what kmatrix needs (QEMU, cpio) from Debian's packages.
setup:
    bash scripts/setup.sh

# Run the default matrix end to end (extra args go to `kmatrix run`).
matrix *ARGS:
    bash scripts/matrix.sh {{ARGS}}

# Formatting, lints and every test, real QEMU boots included (what CI runs).
test *ARGS:
    bash scripts/test.sh {{ARGS}}

# List scenarios, kernels and toolchains.
list:
    cargo run --quiet -- list

# Regenerate results/COMPATIBILITY.md from the committed baseline (CI checks it is fresh).
docs:
    cargo run --quiet -- report results/baseline --format markdown -o results/COMPATIBILITY.md

# Make a new baseline from a full run (then review and commit results/baseline).
baseline RUN:
    cargo run --quiet -- baseline accept {{RUN}}

# Benchmark one boot per kernel against one boot per cell (a ratio, measured here).
bench *ARGS:
    bash scripts/bench.sh {{ARGS}}

# The inner loop: unit tests, input and report checks, two real-QEMU smoke tests.
quick *ARGS:
    cargo nextest run --workspace --profile quick {{ARGS}}
