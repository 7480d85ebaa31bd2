//! Versions built from a component's Go module: fetched only through the go
//! command, `unavailable` within seconds (with the go command's reason)
//! where the module proxy cannot give the module, and never built from
//! bytes the lock does not pin. The real builds (ollama at four tags, cgo)
//! are checked in `cases.rs`.

mod common;

use common::{fixture, read_cells, repo_root, text, TempProject};
use kmatrix_metadata::Verdict;
use std::fs;
use std::path::Path;
use std::time::Instant;

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_module_proxy_makes_module_versions_unavailable_quickly() {
    let project = TempProject::new();
    project.add_scenario(&fixture("go-module"));
    let lock_before = fs::read(project.root().join("images/kmatrix.lock")).unwrap();
    let proxy = format!("http://127.0.0.1:{}", closed_port());
    let out = project.root().join("out");
    let started = Instant::now();
    let output = project.kmatrix_with_env(
        &[("GOPROXY", Path::new(&proxy))],
        &["run", "--version", "v0.6.5", "--out", out.to_str().unwrap()],
    );
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1, "{cells:#?}");
    let cell = &cells[0];
    assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:#?}");
    assert!(
        cell.signature.contains("github.com/ollama/ollama@v0.6.5")
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
