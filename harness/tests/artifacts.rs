//! Real artifacts on real kernels: Debian's Caddy packages as containers in
//! the guest (build-info facts and the listener protocol the guest saw),
//! the same Caddy as an image pulled from a local reference registry, a
//! crash loop, `kmatrix exec` of a local binary, and an image of more than
//! 500 MB running with the guest's default memory (it lives on a disk).

mod common;

use common::{fact, read_cells, repo_root, static_program, static_program_from, text, TempProject};
use kmatrix::events::Events;
use kmatrix::inputs::scenario::GuestSpec;
use kmatrix::provision::Provisioner;
use kmatrix::sources::cache::Cache;
use kmatrix::sources::oci::build::{write_layout, ImageSpec};
use kmatrix_metadata::Verdict;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run_ok(project: &TempProject, args: &[&str]) -> std::process::Output {
    let output = project.kmatrix(args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    output
}

fn probe_output(cell: &kmatrix_metadata::CellRecord, probe: &str) -> String {
    cell.probes
        .iter()
        .find(|p| p.probe_id == probe)
        .map(|p| format!("{}{}", p.stdout, p.stderr))
        .unwrap_or_default()
}

#[test]
fn debian_caddy_runs_as_a_container_and_its_build_info_matches_what_the_guest_saw() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let out = project.root().join("out");
    run_ok(
        &project,
        &[
            "run",
            "--kernel",
            "debian-6.1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 6, "3 versions x 2 variants");
    for cell in &cells {
        if cell.version == "v2.11.4-image" {
            // Docker Hub does not answer here: unavailable, with the reason.
            assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:?}");
            assert!(cell.signature.contains("registry-1.docker.io"), "{cell:?}");
            continue;
        }
        assert_eq!(cell.verdict, Verdict::Pass, "{cell:?}");
        assert!(fact(cell, "artifact").contains("caddy"), "{cell:?}");
        let expected_go = if cell.version == "v2.6.2" {
            "go1.19.8"
        } else {
            "go1.26.5"
        };
        assert_eq!(fact(cell, "go.version"), expected_go, "{cell:?}");
        // MPTCP only where Go >= 1.21 is asked for it (GODEBUG=multipathtcp=1):
        // the build info predicts it, the guest's socket confirms it.
        let mptcp = cell.version == "v2.11.4" && cell.variant == "godebug-multipathtcp-1";
        assert_eq!(
            fact(cell, "go.mptcp_listeners"),
            if mptcp { "on" } else { "off" },
            "{cell:?}"
        );
        let protocol = if mptcp {
            "listener protocol mptcp"
        } else {
            "listener protocol tcp"
        };
        for probe in ["loopback", "pod-to-pod-veth", "clusterip-dnat"] {
            let said = probe_output(cell, probe);
            assert!(
                said.contains("200 OK") && said.contains(protocol),
                "{probe}: {said}"
            );
        }
    }
}

/// Replaces `edit.0` with `edit.1` in the scenario copy in `folder`, runs its
/// baseline variant on debian-6.1, and returns the cell of `version`.
fn run_edited(
    project: &TempProject,
    folder: &Path,
    edit: (&str, &str),
    version: &str,
) -> (kmatrix_metadata::CellRecord, PathBuf) {
    let path = folder.join("scenario.toml");
    let scenario = fs::read_to_string(&path).unwrap().replace(edit.0, edit.1);
    fs::write(&path, scenario).unwrap();
    let out = project.root().join("out");
    run_ok(
        project,
        &[
            "run",
            "--kernel",
            "debian-6.1",
            "--variant",
            "baseline",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let cell = read_cells(&out)
        .into_iter()
        .find(|c| c.version == version)
        .unwrap();
    (cell, out)
}

#[test]
fn a_service_that_keeps_dying_is_a_crash_loop_with_its_last_lines() {
    let project = TempProject::new();
    let folder = project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let (cell, _) = run_edited(
        &project,
        &folder,
        ("/etc/caddy/Caddyfile", "/etc/caddy/missing-Caddyfile"),
        "v2.6.2",
    );
    assert_eq!(cell.verdict, Verdict::Crash, "{cell:?}");
    assert!(cell.signature.contains("CrashLoopBackOff"), "{cell:?}");
    assert!(
        cell.signature.contains("missing-Caddyfile"),
        "its last log lines: {cell:?}"
    );
}

/// Debian's Caddy (bookworm, with its dependency closure) as a one-layer
/// image in an OCI layout, pushed with skopeo into a local reference registry.
fn caddy_image_in_a_registry(project: &TempProject, dir: &Path, port: u16) -> String {
    let catalog = project.catalog();
    let cache = Cache::open(&kmatrix::sources::cache::Cache::default_root()).unwrap();
    let provisioner = Provisioner::new(&cache, &catalog, false, Events::none()).unwrap();
    let root = provisioner
        .rootfs(&GuestSpec {
            suite: "bookworm".into(),
            packages: vec!["caddy=2.6.2-5".into()],
            exclude: vec!["usr/share/doc/*".into()],
        })
        .unwrap();
    let tree = dir.join("caddy-root");
    kmatrix::files::copy_tree(&root, &tree, &kmatrix::files::all).unwrap();
    std::os::unix::fs::symlink("usr/lib64", tree.join("lib64")).unwrap_or(());
    let layout = dir.join("layout");
    write_layout(
        &tree,
        &ImageSpec {
            entrypoint: vec!["/usr/bin/caddy".into()],
            cmd: vec![
                "run".into(),
                "--config".into(),
                "/etc/caddy/Caddyfile".into(),
                "--adapter".into(),
                "caddyfile".into(),
            ],
            env: vec!["PATH=/usr/bin:/bin".into()],
            working_dir: None,
            architecture: None,
            uncompressed: false,
        },
        &layout,
        "2.6.2",
    )
    .unwrap();
    let reference = format!("127.0.0.1:{port}/kmatrix/caddy:2.6.2");
    let status = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:2.6.2", layout.display()))
        .arg(format!("docker://{reference}"))
        .status()
        .unwrap();
    assert!(status.success());
    reference
}

#[test]
fn caddy_pulled_from_a_local_registry_runs_as_itself() {
    let registry = common::LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let project = TempProject::new();
    let folder = project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let reference = caddy_image_in_a_registry(&project, dir.path(), registry.port);
    let (cell, out) = run_edited(
        &project,
        &folder,
        ("docker.io/library/caddy:2.11.4", &reference),
        "v2.11.4-image",
    );
    assert_eq!(cell.verdict, Verdict::Pass, "{cell:?}");
    assert!(fact(&cell, "artifact").contains(&reference), "{cell:?}");
    assert_eq!(
        fact(&cell, "go.version"),
        "go1.19.8",
        "the image's own binary: {cell:?}"
    );
    assert!(probe_output(&cell, "clusterip-dnat").contains("listener protocol tcp"));
    // Resolved through the registry: the fresh project's lock now pins the
    // reference to the digest the registry gave. (Its layers may already be
    // cached: the image is built reproducibly, so an earlier run's are it.)
    let lock = fs::read_to_string(project.root().join("images/kmatrix.lock")).unwrap();
    // "REFERENCE (sha256:...)"
    let digest = fact(&cell, "artifact")
        .rsplit_once('(')
        .map(|(_, d)| d.trim_end_matches(')').to_string())
        .unwrap_or_default();
    assert!(
        lock.contains(&format!("image:{reference}"))
            && !digest.is_empty()
            && lock.contains(&digest),
        "{lock}\n{cell:?}"
    );
    let _ = out;
}

#[test]
fn exec_runs_a_local_binary_on_each_kernel() {
    let project = TempProject::new();
    let dir = tempfile::tempdir().unwrap();
    let binary = static_program(dir.path(), "hello from a local binary");
    let out = project.root().join("exec");
    let output = run_ok(
        &project,
        &[
            "exec",
            "--kernel",
            "debian-6.1",
            "--kernel",
            "debian-6.12",
            "--binary",
            binary.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&output.stdout);
    for kernel in ["debian-6.1", "debian-6.12"] {
        let row = said
            .lines()
            .find(|l| l.starts_with(kernel))
            .unwrap_or_default();
        assert!(row.contains("pass") && row.contains("exit 0"), "{said}");
    }
    assert_eq!(
        said.matches("\n    hello from a local binary\n").count(),
        2,
        "{said}"
    );
    assert_eq!(read_cells(&out).len(), 2);
}

/// exec exits with the program's status, shows all of its stdout and
/// stderr, and refuses a dynamically linked binary before anything boots.
#[test]
fn exec_exits_with_the_programs_status_and_refuses_a_dynamic_binary() {
    let project = TempProject::new();
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(300);
    let binary = static_program_from(
        dir.path(),
        &format!(
            "#include <stdio.h>\nint main(void) {{ puts(\"one\"); puts(\"{long}\"); fputs(\"on stderr\\n\", stderr); return 3; }}\n"
        ),
    );
    let out = project.root().join("exec");
    let output = project.kmatrix(&[
        "exec",
        "--kernel",
        "debian-6.12",
        "--binary",
        binary.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    for line in [
        "exit 3",
        "    one\n",
        &format!("    {long}\n"),
        "  stderr:\n    on stderr\n",
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }

    let dynamic = project.kmatrix(&[
        "exec",
        "--kernel",
        "debian-6.12",
        "--binary",
        "/bin/ls",
        "--out",
        project.root().join("dynamic").to_str().unwrap(),
    ]);
    assert_eq!(dynamic.status.code(), Some(2), "{}", text(&dynamic));
    let said = String::from_utf8_lossy(&dynamic.stderr);
    assert!(
        said.contains("dynamically linked") && said.contains("ld-linux-x86-64"),
        "{said}"
    );
    assert!(
        !said.contains("kmatrix-exec-"),
        "no temporary file named: {said}"
    );

    let unknown = project.kmatrix(&[
        "exec",
        "--kernel",
        "nope",
        "--binary",
        binary.to_str().unwrap(),
    ]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    let said = text(&unknown);
    assert!(
        said.contains("images/kernels.toml") && !said.contains("kmatrix-exec-"),
        "{said}"
    );
}

#[test]
fn an_image_of_more_than_500_mb_runs_from_its_disk() {
    let project = TempProject::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    let program = static_program(dir.path(), "a big image answers");
    fs::copy(&program, root.join("usr/bin/hello")).unwrap();
    // 520 MB of incompressible bytes (xorshift), more than half the guest's memory.
    let mut file = std::io::BufWriter::new(fs::File::create(root.join("data/blob")).unwrap());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..520 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let layout = dir.path().join("layout");
    write_layout(
        &root,
        &ImageSpec {
            entrypoint: vec!["/usr/bin/hello".into()],
            ..Default::default()
        },
        &layout,
        "big",
    )
    .unwrap();
    let out = project.root().join("exec");
    let output = run_ok(
        &project,
        &[
            "exec",
            "--kernel",
            "debian-6.1",
            "--image",
            &format!("oci:{}:big", layout.display()),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&output.stdout);
    let row = said
        .lines()
        .find(|l| l.starts_with("debian-6.1"))
        .unwrap_or_default();
    assert!(row.contains("pass"), "{said}");
    assert!(said.contains("\n    a big image answers\n"), "{said}");
}
