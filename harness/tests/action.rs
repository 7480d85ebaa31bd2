//! The GitHub Action (`action.yml`): linted with actionlint as a user's
//! workflow uses it, and its run step (`scripts/action-run.sh`) run for real
//! on one cell, gate and job summary included.

mod common;

use common::{repo_root, text};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// actionlint, as `.ci/run` installs it (`go install` of its module).
fn actionlint() -> PathBuf {
    let installed = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/kmatrix-tools/bin/actionlint"))
        .filter(|p| p.is_file());
    installed
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("actionlint"))
                    .find(|p| p.is_file())
            })
        })
        .expect("actionlint is installed by `bash .ci/run` (scripts/test.sh: go install github.com/rhysd/actionlint/cmd/actionlint)")
}

/// A user's repository using the action as `uses: ./` (actionlint then
/// checks the workflow's inputs against our action.yml), with `workflow`.
fn lint(workflow: &str) -> std::process::Output {
    let repo = tempfile::tempdir().unwrap();
    fs::copy(
        repo_root().join("action.yml"),
        repo.path().join("action.yml"),
    )
    .unwrap();
    let workflows = repo.path().join(".github/workflows");
    fs::create_dir_all(&workflows).unwrap();
    fs::write(workflows.join("kmatrix.yml"), workflow).unwrap();
    // actionlint finds the repository (and `./`) by its .git.
    let init = Command::new("git")
        .args(["init", "-q"])
        .current_dir(repo.path())
        .status()
        .unwrap();
    assert!(init.success());
    let output = Command::new(actionlint())
        .current_dir(repo.path())
        .args(["-no-color", "-shellcheck=", ".github/workflows/kmatrix.yml"])
        .output()
        .unwrap();
    drop(repo);
    output
}

#[test]
fn the_documented_workflow_passes_actionlint_and_a_wrong_input_does_not() {
    let example = fs::read_to_string(repo_root().join("docs/github-action.yml")).unwrap();
    // The example uses the published action; the linted copy the local one.
    let local = example.replace("kmatrix/kmatrix@main", "./");
    assert_ne!(local, example, "the example names the action it uses");
    let output = lint(&local);
    assert!(output.status.success(), "{}", text(&output));

    // A control: an input the action does not have is caught, so the lint
    // really read action.yml.
    let output = lint(&local.replace("fail-on:", "fail-when:"));
    let shown = text(&output);
    assert!(!output.status.success(), "{shown}");
    assert!(shown.contains("fail-when"), "{shown}");
}

#[test]
fn the_actions_run_step_gates_and_writes_the_job_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let outputs = dir.path().join("outputs");
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/action-run.sh"))
        .env("KMATRIX_BIN", env!("CARGO_BIN_EXE_kmatrix"))
        .env("KMATRIX_PROJECT", repo_root())
        .env("KMATRIX_SCENARIOS", "kube-vip-cidr")
        .env("KMATRIX_KERNELS", "debian-6.12")
        .env("KMATRIX_FAIL_ON", "findings")
        .env("RUNNER_TEMP", dir.path())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let outputs = fs::read_to_string(&outputs).unwrap();
    // kube-vip v0.8.5+ crash on a half-given CIDR: findings, so the gate fails.
    assert!(
        outputs.contains("exit-code=1"),
        "{outputs}\n{}",
        text(&output)
    );
    let run_dir = dir.path().join("kmatrix-run");
    assert!(outputs.contains(&format!("run-dir={}", run_dir.display())));
    assert!(run_dir.join("report.html").is_file());
    let summary = fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("## kube-vip-cidr"), "{summary}");
    assert!(summary.contains("Against `results/baseline`"), "{summary}");
    assert!(summary.contains("crash"), "{summary}");

    // A fail-on value that does not exist is refused without a run.
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/action-run.sh"))
        .env("KMATRIX_BIN", env!("CARGO_BIN_EXE_kmatrix"))
        .env("KMATRIX_FAIL_ON", "sometimes")
        .env("RUNNER_TEMP", dir.path())
        .env("GITHUB_OUTPUT", dir.path().join("outputs2"))
        .output()
        .unwrap();
    assert!(
        text(&output).contains("none of regressions"),
        "{}",
        text(&output)
    );
    let outputs = fs::read_to_string(dir.path().join("outputs2")).unwrap();
    assert_eq!(outputs.trim(), "exit-code=2");
}
