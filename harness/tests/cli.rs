//! The command line's small promises: a closed pipe ends output quietly,
//! a wrong answer is never exit 0, bad input is exit 2 and says so.

mod common;

use common::{repo_root, text, TempProject};
use std::fs;
use std::process::{Command, Stdio};

fn kmatrix() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kmatrix"));
    command.arg("--root").arg(repo_root());
    command
}

#[test]
fn a_closed_pipe_is_no_panic() {
    for args in [&["kernels", "list"][..], &["plan", "--format", "json"][..]] {
        let mut child = kmatrix()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then close the pipe, as `| head -1` does.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 64];
        std::io::Read::read(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(output.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

#[test]
fn diff_of_versions_a_run_does_not_hold_is_exit_2() {
    let output = kmatrix()
        .args(["diff", "--versions", "nonexist", "alsonot"])
        .arg(repo_root().join("results/baseline"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("holds no cells of version `nonexist`")
            && text(&output).contains("v0.8.9, v0.8.10"),
        "names the versions it holds, in version order: {}",
        text(&output)
    );
}

#[test]
fn an_empty_issue_link_and_a_reused_run_folder_are_bad_input() {
    let project = TempProject::new();
    let folder = project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let file = folder.join("scenario.toml");
    let original = fs::read_to_string(&file).unwrap();
    fs::write(
        &file,
        original.replace(
            "issue = \"https://github.com/kube-vip/kube-vip/issues/1052\"",
            "issue = \"\"",
        ),
    )
    .unwrap();
    let output = project.kmatrix(&["plan"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("is not a link"), "{}", text(&output));
    fs::write(&file, original).unwrap();

    let out = project.root().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::copy(
        repo_root().join("harness/tests/fixtures/runs/sample/cells.jsonl"),
        out.join("cells.jsonl"),
    )
    .unwrap();
    let output = project.kmatrix(&[
        "run",
        "--kernel",
        "centos-7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--resume"), "{}", text(&output));
}

/// A run refused on its input (a kernel the catalog lacks) leaves no
/// folder behind, and the error names the catalog.
#[test]
fn a_bad_kernel_leaves_no_run_folder() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("never");
    let output = project.kmatrix(&[
        "run",
        "--kernel",
        "no-such-kernel",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("no-such-kernel"),
        "{}",
        text(&output)
    );
    assert!(!out.exists(), "{} was left behind", out.display());
}

/// `run --fail-on`: findings and regressions make the exit status 1, the
/// end of the run lists them, and a wrong --baseline is found before
/// anything boots.
#[test]
fn fail_on_gates_the_exit_status_on_findings_and_regressions() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("out");
    let out_arg = out.to_str().unwrap();
    let cell = [
        "--kernel",
        "debian-6.12",
        "--version",
        "v0.8.5",
        "--variant",
        "baseline",
    ];
    let missing = project.root().join("no-baseline");
    let mut args = vec!["run", "--out", out_arg, "--fail-on", "regressions"];
    args.extend(["--baseline", missing.to_str().unwrap()]);
    args.extend(cell);
    let refused = project.kmatrix(&args);
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused));
    assert!(!out.exists(), "nothing ran: {}", text(&refused));

    let mut args = vec!["run", "--out", out_arg, "--fail-on", "findings"];
    args.extend(cell);
    let run = project.kmatrix(&args);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let said = String::from_utf8_lossy(&run.stdout);
    for line in [
        "slowest cells:",
        "findings (fail, crash, timeout): 1",
        "crash       kube-vip-cidr v0.8.5 baseline on debian-6.12: ",
        "--fail-on: 1 cells are fail, crash or timeout",
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }

    // A baseline where that cell passed: a regression.
    let baseline = project.root().join("baseline");
    fs::create_dir_all(&baseline).unwrap();
    let cells = fs::read_to_string(out.join("cells.jsonl")).unwrap();
    assert!(cells.contains("\"verdict\":\"crash\""), "{cells}");
    fs::write(
        baseline.join("cells.jsonl"),
        cells.replace("\"verdict\":\"crash\"", "\"verdict\":\"pass\""),
    )
    .unwrap();
    let resumed = project.kmatrix(&[
        "run",
        "--resume",
        out_arg,
        "--fail-on",
        "regressions",
        "--baseline",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(resumed.status.code(), Some(1), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("--fail-on: 1 regressions against the baseline"),
        "{}",
        text(&resumed)
    );
    let resumed = project.kmatrix(&["run", "--resume", out_arg]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
}

/// One broken scenario is reported, and does not block commands about the
/// others: `plan --scenario OTHER` works, `list` lists the rest and ends
/// with the broken one's file:line error (exit 2).
#[test]
fn a_broken_scenario_does_not_block_the_others() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let broken = project.add_scenario(&repo_root().join("scenarios/calico-xdp"));
    let file = broken.join("scenario.toml");
    let text_of = fs::read_to_string(&file).unwrap();
    fs::write(
        &file,
        text_of.replacen("timeout_secs = ", "timeout_secs = = ", 1),
    )
    .unwrap();

    let plan = project.kmatrix(&["plan", "--scenario", "kube-vip-cidr"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let list = project.kmatrix(&["list"]);
    assert_eq!(list.status.code(), Some(2), "{}", text(&list));
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("kube-vip-cidr"),
        "{}",
        text(&list)
    );
    assert!(
        String::from_utf8_lossy(&list.stderr).contains("calico-xdp/scenario.toml:"),
        "{}",
        text(&list)
    );
    let all = project.kmatrix(&["plan"]);
    assert_eq!(
        all.status.code(),
        Some(2),
        "the whole plan needs every scenario: {}",
        text(&all)
    );
}

/// `diff --common`: a small run against a full baseline compares only the
/// cells both hold, with no "removed" wall.
#[test]
fn diff_common_compares_only_the_cells_both_runs_hold() {
    let project = TempProject::new();
    let sample = repo_root().join("harness/tests/fixtures/runs/sample/cells.jsonl");
    let small = project.root().join("small.jsonl");
    let first = fs::read_to_string(&sample)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    fs::write(&small, format!("{first}\n")).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["diff"];
        args.extend(extra);
        args.extend([sample.to_str().unwrap(), small.to_str().unwrap()]);
        project.kmatrix(&args)
    };
    let all = run(&[]);
    assert!(text(&all).contains("Removed cells"), "{}", text(&all));
    let common = run(&["--common"]);
    assert_eq!(common.status.code(), Some(0), "{}", text(&common));
    assert!(!text(&common).contains("Removed"), "{}", text(&common));
}

/// Versions are listed in version order in messages (v0.8.2 before v0.8.10).
#[test]
fn an_unknown_version_lists_the_known_ones_in_version_order() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let output = project.kmatrix(&["plan", "--version", "v9"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("v0.8.8, v0.8.9, v0.8.10"),
        "{}",
        text(&output)
    );
}
