//! Versions built from a component's Go module: fetched only through the go
//! command, `unavailable` within seconds (with the go command's reason)
//! where the module proxy cannot give the module, and never built from
//! bytes the lock does not pin. The real builds (ollama at four tags, cgo)
//! are checked in `cases.rs`.

mod common;

use common::{fixture, free_port, read_cells, repo_root, serve, text, TempProject};
use kmatrix_metadata::Verdict;
use std::fs;
use std::path::Path;
use std::time::Instant;

#[test]
fn an_unreachable_module_proxy_makes_module_versions_unavailable_quickly() {
    let project = TempProject::new();
    project.add_scenario(&fixture("go-module"));
    let lock_before = fs::read(project.root().join("images/kmatrix.lock")).unwrap();
    let proxy = format!("http://127.0.0.1:{}", free_port());
    let out = project.root().join("out");
    let started = Instant::now();
    let output = project.kmatrix_with_env(
        &[("GOPROXY", Path::new(&proxy))],
        &[
            "run",
            "--version",
            "v99.0.0",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1, "{cells:#?}");
    let cell = &cells[0];
    assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:#?}");
    assert!(
        cell.signature.contains("github.com/ollama/ollama@v99.0.0")
            && cell.signature.contains(&proxy)
            && cell.signature.contains("connection refused"),
        "the signature names the module, the proxy and the cause: {cell:#?}"
    );
    eprintln!("unavailable after {took:?}");
    assert_eq!(
        fs::read(project.root().join("images/kmatrix.lock")).unwrap(),
        lock_before,
        "nothing was pinned"
    );
}

#[test]
fn a_module_version_the_proxy_refuses_is_unavailable_with_its_answer() {
    let project = TempProject::new();
    project.add_scenario(&fixture("go-module"));
    let out = project.root().join("out");
    let output = project.kmatrix(&[
        "run",
        "--version",
        "kube-vip-v0.8.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cell = &read_cells(&out)[0];
    assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:#?}");
    assert!(
        cell.signature
            .contains("module github.com/kube-vip/kube-vip@v0.8.5 cannot be had here"),
        "{cell:#?}"
    );
}

#[test]
fn a_module_whose_bytes_differ_from_the_pin_is_never_built_and_the_lock_stays() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/ollama-mptcp"));
    let lock_path = project.root().join("images/kmatrix.lock");
    let lock = fs::read_to_string(&lock_path).unwrap();
    let key = "[[artifact.\"module:github.com/ollama/ollama@v0.5.13\".packages]]";
    assert!(lock.contains(key), "the committed lock pins v0.5.13");
    let pinned = "h1:URBx4e6nyAaVhEGXH6AWVqORhebcSQcJ7hLTS0xkAPg=";
    let tampered = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    fs::write(&lock_path, lock.replace(pinned, tampered)).unwrap();
    let lock_before = fs::read(&lock_path).unwrap();
    let out = project.root().join("out");
    let output = project.kmatrix(&[
        "run",
        "--scenario",
        "ollama-mptcp",
        "--kernel",
        "debian-6.1",
        "--version",
        "v0.5.13",
        "--variant",
        "baseline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cell = &read_cells(&out)[0];
    assert_eq!(cell.verdict, Verdict::InfraError, "{cell:#?}");
    assert!(
        cell.signature.contains(tampered)
            && cell.signature.contains(pinned)
            && cell.signature.contains("refusing to build unpinned bytes"),
        "the mismatch names both hashes: {cell:#?}"
    );
    assert!(cell.probes.is_empty(), "nothing ran: {cell:#?}");
    assert_eq!(
        fs::read(&lock_path).unwrap(),
        lock_before,
        "the lock is untouched"
    );
}

#[test]
fn a_version_given_on_the_command_line_joins_the_plan_and_a_wrong_one_is_exit_2() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/ollama-mptcp"));
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let plan = project.kmatrix(&[
        "plan",
        "--scenario",
        "ollama-mptcp",
        "--kernel",
        "debian-6.1",
        "--version",
        "v0.5.13",
        "--variant",
        "baseline",
        "--add-version",
        "module:github.com/ollama/ollama@v0.6.5",
        "--add-version",
        "rc=binary:/bin/true",
        "--format",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&plan.stdout).unwrap();
    let versions: Vec<&str> = cells
        .iter()
        .map(|c| c["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v0.5.13", "v0.6.5", "rc"], "{}", text(&plan));
    // A module no selected scenario builds is bad input, said as such.
    let wrong = project.kmatrix(&[
        "plan",
        "--scenario",
        "kube-vip-cidr",
        "--add-version",
        "module:github.com/ollama/ollama@v0.6.5",
    ]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("no selected scenario can run it"),
        "{}",
        text(&wrong)
    );
    let malformed = project.kmatrix(&["plan", "--add-version", "v0.6.5"]);
    assert_eq!(malformed.status.code(), Some(2), "{}", text(&malformed));
    assert!(
        text(&malformed).contains("[ID=]module:PATH@VERSION"),
        "{}",
        text(&malformed)
    );
}

#[test]
fn a_run_resumes_from_another_folder_with_the_project_it_came_from() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("out");
    // centos-7's vault does not answer here: the cell is decided without a boot.
    let first = project.run_one_kube_vip_cell(&["centos-7"], &out);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let run: kmatrix_metadata::RunInfo =
        serde_json::from_slice(&fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run.project.as_deref(),
        Some(fs::canonicalize(project.root()).unwrap().to_str().unwrap())
    );
    // As if killed before its cell was written.
    fs::write(out.join("cells.jsonl"), "").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let resumed = std::process::Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .args(["run", "--resume", out.to_str().unwrap()])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(read_cells(&out).len(), 1, "{}", text(&resumed));
    let after: kmatrix_metadata::RunInfo =
        serde_json::from_slice(&fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        after.command, run.command,
        "the recorded command stays the original"
    );
}

/// A Debian mirror that refuses, or whose name does not resolve: the
/// kernel's cells say so (the mirror and apt's reason), within seconds,
/// never "not in Debian" — and the host mirror's lists are left alone.
#[test]
fn an_unreachable_debian_mirror_is_named_with_its_cause() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let port = free_port();
    let refused = format!("http://127.0.0.1:{port}/debian");
    // A server that answers, without a Debian archive at that path.
    let empty = tempfile::tempdir().unwrap();
    let (server, served) = serve(empty.path());
    let missing = format!("{served}/debian");
    for (mirror, cause) in [
        (
            refused.as_str(),
            format!("no network to {refused}: 127.0.0.1:{port} refused the connection (nothing listens there) (apt-get update: "),
        ),
        (
            "http://no-such-host.invalid/debian",
            "no network to http://no-such-host.invalid/debian: DNS failure: the name no-such-host.invalid does not resolve".to_string(),
        ),
        (
            missing.as_str(),
            format!("mirror {missing}: HTTP 404 from {}: it has no such file", served.trim_start_matches("http://")),
        ),
    ] {
        let started = Instant::now();
        let output = project.kmatrix_with_env(
            &[("KMATRIX_DEBIAN_MIRROR", Path::new(mirror))],
            &[
                "plan",
                "--check",
                "--scenario",
                "kube-vip-cidr",
                "--kernel",
                "debian-sid",
            ],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let said = text(&output);
        assert!(
            said.contains(&cause) && !said.contains("is not in Debian"),
            "{cause}: {said}"
        );
        eprintln!("{mirror}: {:?}", started.elapsed());
    }
    drop(server);
}
