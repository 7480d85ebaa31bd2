//! Each case's reproduction on a real kernel in QEMU. The checks read what
//! the guest reported (output, stack traces, socket protocols), so a
//! reproducer that does nothing fails them: the `*_noop_*` tests prove it.

mod common;

use common::{fact, read_cells, repo_root, text, TempProject};
use kmatrix_metadata::CellRecord;
use std::fs;

/// Runs one scenario (optionally with its reproducer swapped for a no-op) on one kernel.
fn run_case(scenario: &str, kernel: &str, noop: bool) -> Vec<CellRecord> {
    let project = TempProject::new();
    let folder = project.add_scenario(&repo_root().join("scenarios").join(scenario));
    if noop {
        // The scenario's own reproducer, or the shared driver it names.
        let mut reproducer = folder.join("reproducer");
        if !reproducer.is_dir() {
            reproducer = project.root().join("scenarios/drivers/http-service");
        }
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

fn probe_text(cell: &CellRecord) -> String {
    cell.probes
        .iter()
        .map(|p| format!("{}\n{}", p.stdout, p.stderr))
        .collect()
}

fn check_kube_vip(cells: &[CellRecord]) -> Result<(), String> {
    if cells.len() != 22 {
        return Err(format!("expected 22 cells, got {}", cells.len()));
    }
    let before_961 = ["v0.8.0", "v0.8.1", "v0.8.2", "v0.8.3", "v0.8.4"];
    for cell in cells {
        let said = probe_text(cell);
        let crashes = !before_961.contains(&cell.version.as_str()) && cell.variant == "baseline";
        let verdict = cell.verdict.as_str();
        if crashes && cell.version == "v0.8.10" {
            // kube-vip#1072: the mask is refused with a message, then panic("").
            if verdict != "crash"
                || !said.contains("failed to set mask")
                || said.contains("index out of range")
            {
                return Err(format!("expected v0.8.10's refusal and panic: {cell:?}"));
            }
        } else if crashes {
            // The panic must come from netlink's broadcast computation, as reported upstream.
            if verdict != "crash"
                || !said.contains("index out of range [0] with length 0")
                || !said.contains("github.com/vishvananda/netlink.(*Handle).addrHandle")
            {
                return Err(format!("expected netlink's panic: {cell:?}"));
            }
        } else if verdict != "pass"
            || !said.contains("programmed 10.155.30.242/32 on kube-vip0")
            || !said.contains("programmed fd00:4269:6943::12/128 on kube-vip0")
        {
            return Err(format!("expected both VIPs programmed: {cell:?}"));
        }
    }
    Ok(())
}

fn check_ollama(cells: &[CellRecord]) -> Result<(), String> {
    if cells.len() != 8 {
        return Err(format!("expected 8 cells, got {}", cells.len()));
    }
    for cell in cells {
        let said = probe_text(cell);
        for path in [
            "over loopback",
            "pod to pod over veth",
            "through a DNAT'd ClusterIP",
        ] {
            if !said.contains(&format!("ollama reachable {path}")) {
                return Err(format!("{path} did not answer: {cell:?}"));
            }
        }
        // The real server, built from ollama's module at the tag, said so
        // itself (its /api/version answer, stamped as upstream stamps it,
        // and its build info).
        let tag = cell.version.trim_start_matches('v');
        if !said.contains(&format!("{{\"version\":\"{tag}\"}}"))
            || cell.fidelity != Some(kmatrix_metadata::Fidelity::Release)
            || fact(cell, "go.path") != "github.com/ollama/ollama"
        {
            return Err(format!("expected ollama {tag}'s own binary: {cell:?}"));
        }
        // The listener's protocol follows the Go rules and the guest's MPTCP switch.
        let mptcp = fact(cell, "mptcp.enabled") == "1"
            && cell.version == "v0.5.13"
            && cell.variant == "baseline";
        let expected = if mptcp {
            "listener protocol mptcp"
        } else {
            "listener protocol tcp"
        };
        if !said.contains(expected) || cell.verdict.as_str() != "pass" {
            return Err(format!("expected a pass with {expected}: {cell:?}"));
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

fn check_calico_everywhere_fine(cells: &[CellRecord]) -> Result<(), String> {
    if cells.len() != 6 {
        return Err(format!("expected 6 cells, got {}", cells.len()));
    }
    for cell in cells {
        if fact(cell, "btf") != "present" {
            return Err(format!("debian-6.1 ships its BTF: {cell:?}"));
        }
        let said = probe_text(cell);
        let expected: &[&str] = if cell.variant == "xdp-disabled" {
            &["XDP disabled"]
        } else {
            &[
                "(BTF loaded)",
                "XDP prefilter attached in native mode",
                "XDP prefilter attached in generic mode",
            ]
        };
        for text in expected {
            if !said.contains(text) || cell.verdict.as_str() != "pass" {
                return Err(format!("expected a pass saying {text:?}: {cell:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn calico_xdp_loads_and_attaches_both_ways_on_debian_6_1() {
    let cells = run_case("calico-xdp", "debian-6.1", false);
    check_calico_everywhere_fine(&cells).unwrap();
}

#[test]
fn calico_xdp_noop_reproducer_is_caught() {
    let cells = run_case("calico-xdp", "debian-6.1", true);
    assert!(
        check_calico_everywhere_fine(&cells).is_err(),
        "a do-nothing reproducer passed the check"
    );
}

/// Ubuntu 20.04's 5.4 comes from the Ubuntu archive: where it cannot be
/// fetched the cells are `unavailable` and there is nothing to assert.
#[test]
fn calico_xdp_3_27_3_btf_is_refused_on_ubuntu_20_04_where_reachable() {
    let cells = run_case("calico-xdp", "ubuntu-20.04", false);
    if cells.iter().any(|c| c.verdict.as_str() == "unavailable") {
        eprintln!(
            "skipped: the Ubuntu archive is out of reach here: {}",
            cells[0].signature
        );
        return;
    }
    for cell in &cells {
        let said = probe_text(cell);
        match (cell.version.as_str(), cell.variant.as_str()) {
            ("v3.27.3", "baseline") => {
                assert_eq!(cell.verdict.as_str(), "fail", "{cell:?}");
                assert!(
                    said.contains("Error loading .BTF into kernel") && said.contains("vlen != 0"),
                    "{cell:?}"
                );
            }
            ("v3.27.4", "baseline") => {
                assert_eq!(cell.verdict.as_str(), "pass", "{cell:?}");
                assert!(
                    said.contains("with bpftool v7.4") && said.contains("FUNC linkage made static"),
                    "bpftool 7.4's libbpf sanitises the BTF 5.4 refuses: {cell:?}"
                );
            }
            ("v3.26.4", "baseline") => {
                assert_eq!(cell.verdict.as_str(), "pass", "{cell:?}");
                assert!(
                    said.contains("kernel refused the BTF"),
                    "5.4 refuses 3.26's BTF too, harmlessly: {cell:?}"
                );
            }
            _ => assert_eq!(cell.verdict.as_str(), "pass", "{cell:?}"),
        }
    }
}

fn check_ovs_startup(cells: &[CellRecord]) -> Result<(), String> {
    if cells.len() != 10 {
        return Err(format!("expected 10 cells, got {}", cells.len()));
    }
    for cell in cells {
        let said = probe_text(cell);
        if cell.variant == "ip-tables-unavailable" {
            // The one start-up difference between the releases (kube-ovn#3281).
            let ok = match cell.version.as_str() {
                "v1.12.0" => {
                    cell.verdict.as_str() == "fail"
                        && said.contains("modprobe ip_tables failed under set -e")
                }
                _ => {
                    cell.verdict.as_str() == "pass"
                        && said.contains("optional since v1.12.2")
                        && said.contains("ovs-ovn ready: min")
                }
            };
            if !ok {
                return Err(format!("ip_tables handled unlike the release: {cell:?}"));
            }
            continue;
        }
        if cell.verdict.as_str() != "pass"
            || !said.contains("ovs-ovn ready: min")
            || !said.contains("br-int.mgmt: connection failed")
        {
            return Err(format!(
                "expected the real OVS/OVN stack to come up: {cell:?}"
            ));
        }
        if fact(cell, "module.openvswitch") != "loaded" {
            return Err(format!("the openvswitch module was not loaded: {cell:?}"));
        }
        let ipv6_off = cell.variant == "ipv6-disabled";
        if (fact(cell, "ipv6") == "off") != ipv6_off {
            return Err(format!("ipv6.disable=1 reached the wrong boot: {cell:?}"));
        }
    }
    Ok(())
}

#[test]
fn ovs_ovn_starts_from_debian_packages_on_debian_6_1() {
    let cells = run_case("kube-ovn-ovs-startup", "debian-6.1", false);
    check_ovs_startup(&cells).unwrap();
}

#[test]
fn ovs_ovn_noop_reproducer_is_caught() {
    let cells = run_case("kube-ovn-ovs-startup", "debian-6.1", true);
    assert!(
        check_ovs_startup(&cells).is_err(),
        "a do-nothing reproducer passed the check"
    );
}
