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
