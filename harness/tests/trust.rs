//! Verdicts a nightly can gate on, each fault made for real: kmatrix killed
//! by SIGKILL mid-run (no VM outlives it; `--resume` finishes exactly the
//! original selection), the emulator killed mid-cell (not the cell's
//! fault), a full results filesystem, two runs sharing one cache, a torn
//! `cells.jsonl`, and the modes of the files a run writes.

mod common;

use common::{fixture, read_cells, repo_root, text, TempProject, KUBE_VIP_THREE_RELEASES};
use kmatrix_metadata::{RunInfo, Verdict};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run_info(dir: &Path) -> RunInfo {
    serde_json::from_slice(&fs::read(dir.join("run.json")).unwrap()).unwrap()
}

fn spawn(project: &TempProject, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(project.root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !ready() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose command line mentions `needle` (QEMUs of a run directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("qemu") && cmdline.contains(needle)).then_some(cmdline)
        })
        .collect()
}

fn pid_files(out: &Path) -> Vec<PathBuf> {
    fs::read_dir(out.join("boots"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("qemu.pid"))
        .filter(|p| p.is_file())
        .collect()
}

#[test]
fn sigkill_leaves_no_vm_and_resume_finishes_exactly_the_original_selection() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    // A second scenario: the default matrix is more than the run's selection.
    project.add_scenario(&repo_root().join("scenarios/kube-ovn-tproxy"));
    let out = project.root().join("out");
    let selection = [
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "debian-6.1",
        "--kernel",
        "debian-6.12",
    ];
    let selection = [&selection[..], &KUBE_VIP_THREE_RELEASES].concat();
    let mut args = vec!["run", "-j", "1", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&selection);
    let mut child = spawn(&project, &args);
    wait_for(
        "a first cell and a running VM",
        Duration::from_secs(300),
        || !read_cells(&out).is_empty() && !pid_files(&out).is_empty(),
    );
    let killed_pid = child.id().to_string();
    let scratch_of_killed = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                std::fs::read_to_string(p.join("owner.pid")).is_ok_and(|t| t.trim() == killed_pid)
            })
            .collect()
    };
    assert_eq!(scratch_of_killed().len(), 1, "the run's scratch, owned");
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    let needle = out.to_string_lossy().into_owned();
    wait_for(
        "the VMs to die with kmatrix",
        Duration::from_secs(5),
        || processes_mentioning(&needle).is_empty(),
    );
    let kept = read_cells(&out);
    assert!(
        !kept.is_empty() && kept.len() < 12,
        "{} cells kept",
        kept.len()
    );

    // `--resume DIR` alone plans what the run was started with.
    let output = project.kmatrix(&["run", "--resume", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        scratch_of_killed().is_empty(),
        "the killed run's scratch is swept by the next run"
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!("12 cells planned, {} already in", kept.len())),
        "{}",
        text(&output)
    );
    let mut plan_args = vec!["plan", "--format", "json"];
    plan_args.extend_from_slice(&selection);
    let plan: Vec<serde_json::Value> =
        serde_json::from_slice(&project.kmatrix(&plan_args).stdout).unwrap();
    let planned: BTreeSet<String> = plan
        .iter()
        .map(|c| c["cell_id"].as_str().unwrap().to_string())
        .collect();
    let ran: BTreeSet<String> = read_cells(&out).into_iter().map(|c| c.cell_id).collect();
    assert_eq!(ran, planned, "exactly the original selection");
    let info = run_info(&out);
    assert!(
        info.command.iter().any(|a| a == "kube-vip-cidr"),
        "{info:?}"
    );
    assert_eq!(info.resumes.len(), 1, "{info:?}");
    assert_eq!(
        info.selection.as_ref().unwrap().kernels,
        ["debian-6.1", "debian-6.12"]
    );
    // Narrowing: a kernel the run never covered is refused, naming run.json.
    let outside = project.kmatrix(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--kernel",
        "debian-5.10",
    ]);
    assert_eq!(outside.status.code(), Some(2), "{}", text(&outside));
    assert!(String::from_utf8_lossy(&outside.stderr).contains("run.json"));
}

/// A copy of the fault fixture with one cell that sleeps 8 s, then passes.
fn slow_cell_project() -> TempProject {
    let project = TempProject::new();
    let folder = project.add_scenario(&fixture("faults"));
    let scenario = fs::read_to_string(folder.join("scenario.toml")).unwrap();
    let cut = scenario.find("[[variant]]").unwrap();
    let probe = scenario.find("[[probe]]").unwrap();
    let rewritten = format!(
        "{}[[variant]]\nid = \"baseline\"\ndescription = \"slow, then fine\"\nenv = {{ FAULT = \"slow\" }}\n\n{}",
        &scenario[..cut],
        scenario[probe..].replace("timeout_secs = 4", "timeout_secs = 20")
    );
    fs::write(folder.join("scenario.toml"), rewritten).unwrap();
    project
}

#[test]
fn an_emulator_killed_mid_cell_is_not_the_cells_fault() {
    let project = slow_cell_project();
    let out = project.root().join("out");
    let mut child = spawn(&project, &["run", "--out", out.to_str().unwrap()]);
    let mut pid_file = None;
    wait_for("the VM", Duration::from_secs(300), || {
        pid_file = pid_files(&out).into_iter().next();
        pid_file.is_some()
    });
    // The cell sleeps 8 s after a 2-4 s boot: this lands in the boot or the cell.
    std::thread::sleep(Duration::from_secs(6));
    let pid: i32 = fs::read_to_string(pid_file.unwrap())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].verdict, Verdict::Pass, "{:?}", cells[0]);
    assert!(cells[0].attempts >= 2, "{:?}", cells[0]);
    let info = run_info(&out);
    let stats = &info.boots["debian-6.1"];
    assert!(stats.deaths >= 1 && stats.boots >= 2, "{stats:?}");
    assert!(
        stats.death_signatures[0].contains("guest died"),
        "{stats:?}"
    );
    assert!(
        info.emulator.as_deref().unwrap_or("").contains("QEMU"),
        "{info:?}"
    );
    assert_eq!(cells[0].emulator, info.emulator);
}

#[test]
fn a_full_results_filesystem_is_a_clear_error_before_any_boot() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let small = project.root().join("small");
    fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "these tests run as root: mount a tmpfs");
    let output = project.kmatrix(&[
        "run",
        "--kernel",
        "debian-6.1",
        "--out",
        small.join("out").to_str().unwrap(),
    ]);
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("not enough free space in") && said.contains("MB free"),
        "{said}"
    );
    assert!(!said.contains("infra-error"), "no cell was blamed: {said}");
}

#[test]
fn two_runs_share_one_cache() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let cache = project.root().join("cache");
    let run = |name: &str| {
        let out = project.root().join(name);
        let child = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
            .arg("--root")
            .arg(project.root())
            .arg("--cache")
            .arg(&cache)
            .args(["run", "--kernel", "debian-6.1", "-j", "1"])
            .args(KUBE_VIP_THREE_RELEASES)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (out, child)
    };
    let (one, first) = run("one");
    let (two, second) = run("two");
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    let verdicts = |dir: &Path| -> Vec<(String, Verdict)> {
        read_cells(dir)
            .into_iter()
            .map(|c| (c.cell_id, c.verdict))
            .collect()
    };
    assert_eq!(verdicts(&one).len(), 6);
    assert_eq!(verdicts(&one), verdicts(&two));
    // Each artifact was made once, by one of them; the other waited for it
    // and reused it: the two made exactly as many as the cache holds.
    let (a, b) = (run_info(&one).cache, run_info(&two).cache);
    let entries: usize = fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|kind| kind.path().is_dir())
        .flat_map(|kind| fs::read_dir(kind.path()).unwrap().filter_map(Result::ok))
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && entry.path().join("kmatrix-artifact.json").is_file()
        })
        .count();
    assert!(entries > 0);
    assert_eq!(a.made + b.made, entries, "{a:?} {b:?}");
    let third = project.root().join("three");
    let output = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(project.root())
        .arg("--cache")
        .arg(&cache)
        .args(["run", "--kernel", "debian-6.1"])
        .args(KUBE_VIP_THREE_RELEASES)
        .arg("--out")
        .arg(&third)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(run_info(&third).cache.made, 0, "a third run makes nothing");
}

#[test]
fn a_torn_cells_file_is_dropped_with_a_warning_and_its_cell_runs_again() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("out");
    let first = project.kmatrix(
        &[
            &["run", "--kernel", "debian-6.1"][..],
            &KUBE_VIP_THREE_RELEASES,
            &["--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let path = out.join("cells.jsonl");
    let whole = fs::read_to_string(&path).unwrap();
    let last = whole.lines().last().unwrap().to_string();
    fs::write(&path, &whole[..whole.len() - last.len() / 2]).unwrap();

    let report = project.kmatrix(&["report", out.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    assert!(String::from_utf8_lossy(&report.stderr).contains("cut short"));

    let resumed = project.kmatrix(&["run", "--resume", out.to_str().unwrap()]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        log.contains("cells.jsonl:6: the last line is cut short"),
        "{log}"
    );
    assert!(log.contains("6 cells planned, 5 already in"), "{log}");
    assert_eq!(read_cells(&out).len(), 6);
}

#[test]
fn results_are_written_with_the_users_umask() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = project.root().join("out");
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(project.root())
        .args(["run", "--kernel", "debian-6.1"])
        .args(KUBE_VIP_THREE_RELEASES)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let console = out.join(read_cells(&out)[0].console_log.clone().unwrap());
    for file in [
        out.join("cells.jsonl"),
        out.join("run.json"),
        out.join("report.html"),
        out.join("junit.xml"),
        out.join("compatibility.md"),
        out.join("matrix.csv"),
        console,
    ] {
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{} is {mode:o}", file.display());
    }
    let no_images: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cpio"))
        .collect();
    assert!(
        no_images.is_empty(),
        "boot scratch left in the results: {no_images:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
