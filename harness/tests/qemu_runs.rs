//! Real runs: real Debian kernels booted in QEMU, real Go reproducers built
//! with Debian's Go toolchains. Needs qemu-system-x86 and Debian's package
//! mirror (scripts/setup.sh installs the one; the cache keeps the other's
//! downloads between runs: set KMATRIX_CACHE to share it).

mod common;

use common::{
    fact, fixture, read_cells, repo_root, text, TempProject, KUBE_VIP_THREE_RELEASES,
    TPROXY_TWO_BY_TWO,
};
use kmatrix_metadata::{CellRecord, RunInfo};
use std::collections::BTreeMap;
use std::fs;

fn run_ok(project: &TempProject, args: &[&str]) -> std::process::Output {
    let output = project.kmatrix(args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    output
}

fn by_variant(cells: &[CellRecord]) -> BTreeMap<String, &CellRecord> {
    cells
        .iter()
        .map(|c| (c.variant.as_str().to_string(), c))
        .collect()
}

#[test]
fn kube_ovn_tproxy_on_a_real_kernel_then_resume_then_nothing_to_make() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-ovn-tproxy"));
    let out = project.root().join("out");
    let out_arg = out.to_str().unwrap();
    run_ok(
        &project,
        &[
            &[
                "run",
                "--scenario",
                "kube-ovn-tproxy",
                "--kernel",
                "debian-6.1",
            ][..],
            &TPROXY_TWO_BY_TWO,
            &["--out", out_arg],
        ]
        .concat(),
    );

    let cells = read_cells(&out);
    assert_eq!(cells.len(), 4, "2 versions x 2 variants x 1 kernel");
    // Debian's 6.1 has a PVH entry: its uncompressed vmlinux is what booted.
    let boots: Vec<_> = fs::read_dir(out.join("boots")).unwrap().flatten().collect();
    assert!(!boots.is_empty());
    for boot in boots {
        let command = fs::read_to_string(boot.path().join("qemu-command.txt")).unwrap();
        assert!(
            command.contains("\n# kernel: vmlinux through its PVH entry")
                && command.contains("kernels-pvh/"),
            "{command}"
        );
    }
    for cell in &cells {
        let release = cell.kernel_release.as_deref().expect("the guest booted");
        assert!(release.starts_with("6.1."), "{cell:?}");
        let verdict = cell.verdict.as_str();
        assert!(
            verdict != "infra-error" && verdict != "unavailable",
            "{cell:?}"
        );
        let probe = &cell.probes[0];
        let said = format!("{}{}", probe.stdout, probe.stderr);
        assert!(
            said.len() > 10,
            "the guest reported the reproducer's output: {cell:?}"
        );
        // What the reproducer printed must agree with what the guest's kernel
        // said of MPTCP and with the Go rules: only a go-1.24 go.mod without
        // GODEBUG=multipathtcp=0 asks for MPTCP.
        let mptcp_on = fact(cell, "mptcp.enabled") == "1";
        let asks_mptcp = cell.version == "v1.14.0" && cell.variant == "baseline";
        if verdict == "pass" {
            let expected = if mptcp_on && asks_mptcp {
                "protocol mptcp"
            } else {
                "protocol tcp"
            };
            assert!(said.contains(expected), "expected {expected}: {cell:?}");
        }
    }
    assert!(out.join("matrix.md").is_file() && out.join("matrix.csv").is_file());
    let console = out.join(cells[0].console_log.as_deref().unwrap());
    // Kernel messages at warning level and above are kept (loglevel=4).
    assert!(fs::read_to_string(console)
        .unwrap()
        .contains("reboot: Power down"));

    // Resume: drop two finished cells; only those two run again.
    let full = fs::read_to_string(out.join("cells.jsonl")).unwrap();
    let kept: Vec<&str> = full.lines().take(2).collect();
    fs::write(out.join("cells.jsonl"), kept.join("\n") + "\n").unwrap();
    let resumed = run_ok(
        &project,
        &[
            "run",
            "--resume",
            out_arg,
            "--scenario",
            "kube-ovn-tproxy",
            "--kernel",
            "debian-6.1",
        ],
    );
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        log.contains("4 cells planned, 2 already in"),
        "{}",
        text(&resumed)
    );
    assert!(log.contains("2 to run"), "{}", text(&resumed));
    let after = fs::read_to_string(out.join("cells.jsonl")).unwrap();
    assert_eq!(after.lines().count(), 4);
    for line in kept {
        assert!(after.contains(line), "a finished cell was rewritten");
    }

    // A second identical run finds everything in the cache.
    let again = project.root().join("again");
    run_ok(
        &project,
        &[
            &[
                "run",
                "--scenario",
                "kube-ovn-tproxy",
                "--kernel",
                "debian-6.1",
            ][..],
            &TPROXY_TWO_BY_TWO,
            &["--out", again.to_str().unwrap()],
        ]
        .concat(),
    );
    let info: RunInfo = serde_json::from_slice(&fs::read(again.join("run.json")).unwrap()).unwrap();
    assert_eq!(info.cache.made, 0, "nothing downloaded or built: {info:?}");
    assert!(info.cache.reused >= 4, "{info:?}");
}

#[test]
fn faults_get_the_right_verdicts_and_other_cells_are_kept() {
    let project = TempProject::new();
    project.add_scenario(&fixture("faults"));
    let out = project.root().join("out");
    run_ok(&project, &["run", "--out", out.to_str().unwrap()]);
    let cells = read_cells(&out);
    assert_eq!(
        cells.len(),
        6,
        "every cell is kept, whatever the others did"
    );
    let cells = by_variant(&cells);
    let verdict = |v: &str| cells[v].verdict.as_str().to_string();
    let signature = |v: &str| cells[v].signature.as_str().to_string();

    assert_eq!(verdict("baseline"), "pass");
    assert_eq!(verdict("go-panic"), "crash");
    assert_eq!(
        signature("go-panic"),
        "panic: assignment to entry in nil map"
    );
    assert_eq!(verdict("segfault"), "crash");
    assert!(
        signature("segfault").contains("nil pointer dereference"),
        "{}",
        signature("segfault")
    );
    assert!(
        signature("segfault").contains("(killed by SIG"),
        "{}",
        signature("segfault")
    );
    assert!(cells["segfault"].probes[0].stderr.contains("SIGSEGV"));
    assert_eq!(verdict("sleep"), "timeout");
    assert_eq!(verdict("kernel-panic"), "crash");
    assert!(
        signature("kernel-panic").starts_with("kernel: Kernel panic - not syncing"),
        "{}",
        signature("kernel-panic")
    );
    assert_eq!(
        cells["kernel-panic"].attempts, 3,
        "a guest crash is retried twice before it counts"
    );
    assert_eq!(verdict("guest-hang"), "timeout");
    assert!(signature("guest-hang").contains("guest stopped responding"));
    for cell in cells.values() {
        assert!(
            cell.kernel_release.as_deref().unwrap().starts_with("6.1."),
            "{cell:?}"
        );
    }
}

#[test]
fn shards_merged_equal_the_unsharded_run() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let kernels = ["--kernel", "debian-6.1", "--kernel", "debian-6.12"];
    let run = |name: &str, extra: &[&str]| {
        let out = project.root().join(name);
        let mut args = vec!["run", "--out", out.to_str().unwrap()];
        args.extend_from_slice(&kernels);
        args.extend_from_slice(extra);
        run_ok(&project, &args);
        out
    };
    let whole = run("whole", &[]);
    let one = run("shard-1", &["--shard", "1/2"]);
    let two = run("shard-2", &["--shard", "2/2"]);
    let merged = project.root().join("merged");
    let output = project.kmatrix(&[
        "merge",
        one.to_str().unwrap(),
        two.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = |dir: &std::path::Path| -> Vec<(String, String)> {
        let mut cells: Vec<(String, String)> = read_cells(dir)
            .iter()
            .map(|c| {
                (
                    c.cell_id.as_str().to_string(),
                    c.verdict.as_str().to_string(),
                )
            })
            .collect();
        cells.sort();
        cells
    };
    assert!(
        !read_cells(&one).is_empty() && !read_cells(&two).is_empty(),
        "both shards ran cells"
    );
    assert_eq!(cells(&merged), cells(&whole));
    assert!(merged.join("report.html").is_file() && merged.join("junit.xml").is_file());

    // The same cell with another verdict in a third input is reported, exit 1.
    let forged = project.root().join("forged");
    common::copy_tree(&one, &forged);
    let text_cells = fs::read_to_string(forged.join("cells.jsonl")).unwrap();
    let first = text_cells.lines().next().unwrap();
    let flipped = if first.contains("\"verdict\":\"pass\"") {
        first.replace("\"verdict\":\"pass\"", "\"verdict\":\"fail\"")
    } else {
        first.replacen("\"verdict\":\"", "\"verdict\":\"pass\",\"was\":\"", 1)
    };
    fs::write(forged.join("cells.jsonl"), flipped + "\n").unwrap();
    let conflict = project.root().join("conflict");
    let output = project.kmatrix(&[
        "merge",
        one.to_str().unwrap(),
        forged.to_str().unwrap(),
        "--out",
        conflict.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(conflict.join("conflicts.json").is_file());
}

/// Ctrl-C mid-run: the VMs stop, every finished cell stays on disk in a
/// whole cells.jsonl, the exit status is 130, and --resume finishes the rest.
#[test]
fn ctrl_c_keeps_finished_cells_and_resume_completes() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("out");
    // One VM at a time, two kernels: interrupt while the second boots.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(project.root())
        .args([
            "run",
            "-j",
            "1",
            "--kernel",
            "debian-6.1",
            "--kernel",
            "debian-6.12",
        ])
        .args(KUBE_VIP_THREE_RELEASES)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while read_cells(&out).len() < 6 {
        assert!(std::time::Instant::now() < deadline, "no cells finished");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let kept = read_cells(&out);
    assert!(
        kept.len() >= 6 && kept.len() < 12,
        "{} cells kept",
        kept.len()
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("--resume"));

    run_ok(
        &project,
        &[
            "run",
            "--resume",
            out.to_str().unwrap(),
            "-j",
            "1",
            "--kernel",
            "debian-6.1",
            "--kernel",
            "debian-6.12",
        ],
    );
    let all = read_cells(&out);
    assert_eq!(all.len(), 12);
    for cell in &kept {
        assert!(all.contains(cell), "a finished cell changed on resume");
    }
}

/// A service probe that never exits (`{service}`: crun running a container
/// that prints a line, then sleeps): killed at its own deadline, classified
/// `timeout` with what it printed kept, in one boot — the guest is not
/// taken for dead, so no cell is booted again.
#[test]
fn a_service_probe_past_its_deadline_is_its_own_timeout_in_one_boot() {
    let project = TempProject::new();
    let folder = project.add_scenario(&fixture("service-hang"));
    let source = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { puts(\"hang fixture: started\"); fflush(stdout); for (;;) pause(); }\n";
    let mut gcc = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-x", "c", "-", "-o"])
        .arg(folder.join("hang"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut gcc.stdin.take().unwrap(), source.as_bytes()).unwrap();
    assert!(gcc.wait().unwrap().success(), "gcc -static builds it");
    let out = project.root().join("out");
    let started = std::time::Instant::now();
    run_ok(&project, &["run", "--out", out.to_str().unwrap()]);
    eprintln!("the run took {:?}", started.elapsed());
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1, "{cells:#?}");
    let cell = &cells[0];
    assert_eq!(cell.verdict.as_str(), "timeout", "{cell:#?}");
    assert!(
        cell.signature.contains("5 s"),
        "the probe's own deadline: {cell:#?}"
    );
    assert_eq!(cell.attempts, 1, "one boot: {cell:#?}");
    assert!(
        cell.probes[0].stdout.contains("hang fixture: started"),
        "what it printed before its deadline is kept: {cell:#?}"
    );
    let run: RunInfo = serde_json::from_slice(&fs::read(out.join("run.json")).unwrap()).unwrap();
    let deaths: u32 = run.boots.values().map(|b| b.deaths).sum();
    assert_eq!(deaths, 0, "no guest death: {:#?}", run.boots);
}

/// A cell's view of the kernel does not depend on its neighbours: cells of
/// scenarios loading other modules boot apart, so a kube-vip-cidr cell
/// reports the same modules alone and beside caddy-mptcp's.
#[test]
fn a_cells_module_facts_are_the_same_alone_and_in_company() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let modules_of = |args: &[&str]| {
        let out = project.root().join(format!("out-{}", args.join("-")));
        run_ok(
            &project,
            &[
                &[
                    "run",
                    "--kernel",
                    "debian-6.1",
                    "--variant",
                    "baseline",
                    "--version",
                    "v0.8.4",
                ][..],
                args,
                &["--out", out.to_str().unwrap()],
            ]
            .concat(),
        );
        let cells = read_cells(&out);
        let vip = cells
            .iter()
            .find(|c| c.scenario == "kube-vip-cidr")
            .expect("the kube-vip cell");
        let facts: BTreeMap<String, String> = vip
            .facts
            .iter()
            .filter(|(k, _)| k.starts_with("module."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (facts, cells.len())
    };
    let (alone, n) = modules_of(&["--scenario", "kube-vip-cidr"]);
    assert_eq!(n, 1);
    let (in_company, n) = modules_of(&["--version", "v2.6.2"]);
    assert_eq!(n, 2, "kube-vip's cell and caddy's");
    assert_eq!(alone, in_company);
    assert_eq!(
        alone.keys().collect::<Vec<_>>(),
        ["module.dummy"],
        "only what kube-vip-cidr asks for: {alone:?}"
    );
}
