//! `kmatrix bisect` on real boots: the version axis of kube-vip-cidr on
//! debian-6.1, where the crash starts at v0.8.5 (kube-vip PR #961).

mod common;

use common::{read_cells, repo_root, text, TempProject};
use kmatrix_metadata::{BisectResult, Verdict};
use std::fs;

fn bisect(project: &TempProject, out: &std::path::Path, versions: &[&str]) -> BisectResult {
    let mut args = vec![
        "bisect",
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "debian-6.1",
        "--out",
        out.to_str().unwrap(),
    ];
    for version in versions {
        args.extend(["--version", version]);
    }
    let output = project.kmatrix(&args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("breaks between v0.8.4 (pass) and v0.8.5 (crash)"),
        "{}",
        text(&output)
    );
    serde_json::from_slice(&fs::read(out.join("bisect.json")).unwrap()).unwrap()
}

#[test]
fn bisect_finds_the_release_that_broke_it_and_reuses_what_it_ran() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("bisect");
    let versions = ["v0.8.2", "v0.8.3", "v0.8.4", "v0.8.5", "v0.8.6"];
    let result = bisect(&project, &out, &versions);
    assert_eq!(result.axis, "version");
    assert_eq!(
        result.boundary,
        Some(["v0.8.4".to_string(), "v0.8.5".to_string()])
    );
    // Both ends, then binary search: at most ceil(log2 5) + 2 boots.
    assert!(result.boots <= 5, "{result:?}");
    assert_eq!(result.verdicts["v0.8.2"], Verdict::Pass);
    assert_eq!(result.verdicts["v0.8.6"], Verdict::Crash);
    assert!(result.monotonic);
    // Every point it judged is a cell of the run directory, like a run's.
    let cells = read_cells(&out);
    assert_eq!(cells.len(), result.verdicts.len(), "{cells:#?}");
    for cell in &cells {
        assert_eq!(result.verdicts[&cell.version], cell.verdict);
        assert_eq!(cell.variant, "baseline");
    }
    assert!(out.join("matrix.md").is_file());

    // Again into the same directory: every point is reused, nothing boots.
    let again = bisect(&project, &out, &versions);
    assert_eq!(again.boots, 0, "{again:?}");
    assert_eq!(again.boundary, result.boundary);
}

#[test]
fn bisect_refuses_an_axis_it_cannot_search() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let output = project.kmatrix(&[
        "bisect",
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "debian-6.1",
        "--version",
        "v0.8.4",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("several --version"),
        "{}",
        text(&output)
    );
    let unknown = project.kmatrix(&[
        "bisect",
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "debian-6.1",
        "--version",
        "v0.8.4",
        "--version",
        "v9.9.9",
    ]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("--version v9.9.9"),
        "{}",
        text(&unknown)
    );
}
