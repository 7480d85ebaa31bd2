//! `kmatrix bench` on real boots: one round on debian-6.1, every figure
//! really run (the floor powered off, each kmatrix run booted and ran its
//! cells), the ratios computed from the medians, and a peer that cannot run
//! here reported with its reason instead of a number.

mod common;

use common::{repo_root, text, TempProject};
use kmatrix_metadata::{BenchResult, BENCH_FILE, BENCH_FLOOR};
use std::fs;

#[test]
fn one_round_times_every_figure_and_says_why_a_peer_is_missing() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("bench");
    let output = project.kmatrix(&[
        "bench",
        "--kernel",
        "debian-6.1",
        "--rounds",
        "1",
        "--cells",
        "2",
        "--peer",
        "vmtest",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let bench: BenchResult =
        serde_json::from_slice(&fs::read(out.join(BENCH_FILE)).unwrap()).unwrap();
    assert_eq!(bench.kernel, "debian-6.1");
    assert_eq!(bench.cells.len(), 2);
    assert!(
        bench.emulator.starts_with("QEMU emulator version"),
        "{bench:?}"
    );
    let figure = |id: &str| {
        bench
            .figures
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no figure {id}: {bench:?}"))
    };
    for id in [
        BENCH_FLOOR,
        "bare-qemu-bzimage",
        "kmatrix-one-cell",
        "kmatrix-n-cells",
        "kmatrix-boot-per-cell",
    ] {
        let f = figure(id);
        assert_eq!(f.runs_ms.len(), 1, "{f:?}");
        assert!(f.unavailable.is_none(), "{f:?}");
        assert!(f.median_ms.unwrap() > 0 && f.vs_floor.is_some(), "{f:?}");
    }
    assert_eq!(figure(BENCH_FLOOR).vs_floor, Some(1.0));
    // Two one-cell runs take longer than one of them.
    assert!(
        figure("kmatrix-boot-per-cell").median_ms > figure("kmatrix-one-cell").median_ms,
        "{bench:?}"
    );
    // Not installed by the test set-up (or, where it is, the kernel has no 9p).
    let vmtest = figure("vmtest");
    assert!(vmtest.runs_ms.is_empty());
    let why = vmtest.unavailable.as_deref().unwrap_or_default();
    assert!(
        why.contains("bench-setup.sh") || why.contains("9p"),
        "{why}"
    );
    let table = fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(table.contains("| what | median | × bare QEMU |"), "{table}");
    assert!(
        text(&output).contains("| kmatrix-one-cell"),
        "{}",
        text(&output)
    );
}

#[test]
fn an_unknown_peer_is_bad_input() {
    let project = TempProject::new();
    let output = project.kmatrix(&["bench", "--peer", "qemu-magic"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("known: virtme-ng, vmtest"),
        "{}",
        text(&output)
    );
}
