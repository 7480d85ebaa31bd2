//! Each case's reproduction on a real kernel in QEMU. The checks read what
//! the guest reported (output, stack traces, socket protocols), so a
//! reproducer that does nothing fails them: the `*_noop_*` tests prove it.

mod common;

use common::{read_cells, repo_root, text, TempProject};
use serde_json::Value;
use std::fs;

/// Runs one scenario (optionally with its reproducer swapped for a no-op) on one kernel.
fn run_case(scenario: &str, kernel: &str, noop: bool) -> Vec<Value> {
    let project = TempProject::new();
    let folder = project.add_scenario(&repo_root().join("scenarios").join(scenario));
    if noop {
        let reproducer = folder.join("reproducer");
        for entry in fs::read_dir(&reproducer).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "go") {
                fs::remove_file(path).unwrap();
            }
        }
        fs::write(
            reproducer.join("main.go"),
            "package main\n\nfunc main() {}\n",
        )
        .unwrap();
    }
    let out = project.root().join("out");
    let output = project.kmatrix(&["run", "--kernel", kernel, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    read_cells(&out)
}

fn probe_text(cell: &Value) -> String {
    cell["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}\n{}",
                p["stdout"].as_str().unwrap(),
                p["stderr"].as_str().unwrap()
            )
        })
        .collect()
}

fn check_kube_vip(cells: &[Value]) -> Result<(), String> {
    if cells.len() != 6 {
        return Err(format!("expected 6 cells, got {}", cells.len()));
    }
    for cell in cells {
        let said = probe_text(cell);
        let crashes = cell["version"] != "v0.8.4" && cell["variant"] == "baseline";
        let verdict = cell["verdict"].as_str().unwrap();
        if crashes {
            // The panic must come from netlink's broadcast computation, as reported upstream.
            if verdict != "crash"
                || !said.contains("index out of range [0] with length 0")
                || !said.contains("github.com/vishvananda/netlink.(*Handle).addrHandle")
            {
                return Err(format!("expected netlink's panic: {cell}"));
            }
        } else if verdict != "pass"
            || !said.contains("programmed 10.155.30.242/32 on kube-vip0")
            || !said.contains("programmed fd00:4269:6943::12/128 on kube-vip0")
        {
            return Err(format!("expected both VIPs programmed: {cell}"));
        }
    }
    Ok(())
}

fn check_ollama(cells: &[Value]) -> Result<(), String> {
    if cells.len() != 4 {
        return Err(format!("expected 4 cells, got {}", cells.len()));
    }
    for cell in cells {
        let said = probe_text(cell);
        for path in [
            "over loopback",
            "pod to pod over veth",
            "through a DNAT'd ClusterIP",
        ] {
            if !said.contains(&format!("ollama API reachable {path}")) {
                return Err(format!("{path} did not answer: {cell}"));
            }
        }
        // The listener's protocol follows the Go rules and the guest's MPTCP switch.
        let mptcp = cell["facts"]["mptcp.enabled"] == "1"
            && cell["version"] == "v0.6.0"
            && cell["variant"] == "baseline";
        let expected = if mptcp {
            "listener protocol mptcp"
        } else {
            "listener protocol tcp"
        };
        if !said.contains(expected) || cell["verdict"] != "pass" {
            return Err(format!("expected a pass with {expected}: {cell}"));
        }
    }
    Ok(())
}

#[test]
fn kube_vip_cidr_panics_in_netlink_from_v0_8_5_only() {
    let cells = run_case("kube-vip-cidr", "debian-6.1", false);
    check_kube_vip(&cells).unwrap();
}

#[test]
fn kube_vip_cidr_noop_reproducer_is_caught() {
    let cells = run_case("kube-vip-cidr", "debian-6.1", true);
    assert!(
        check_kube_vip(&cells).is_err(),
        "a do-nothing reproducer passed the check"
    );
}

#[test]
fn ollama_mptcp_answers_on_every_path_on_debian_6_1() {
    let cells = run_case("ollama-mptcp", "debian-6.1", false);
    check_ollama(&cells).unwrap();
}

#[test]
fn ollama_mptcp_noop_reproducer_is_caught() {
    let cells = run_case("ollama-mptcp", "debian-6.1", true);
    assert!(
        check_ollama(&cells).is_err(),
        "a do-nothing reproducer passed the check"
    );
}
