//! A kernel given as a path, as a developer gives their own build: a
//! bzImage laid out as a kernel tree has it, and the folder
//! `make modules_install INSTALL_MOD_PATH=DIR` writes. The image and modules
//! are Debian's 6.12 (fetched and pinned by kmatrix as any catalog kernel,
//! then copied out): what matters here is that kmatrix boots them from
//! where the user has them. Real QEMU boots.

mod common;

use common::{repo_root, static_program, text, TempProject};
use kmatrix::events::Events;
use kmatrix::ids::KernelId;
use kmatrix::provision::Provisioner;
use kmatrix::sources::cache::Cache;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `DIR/linux/arch/x86/boot/bzImage` and `DIR/mods/lib/modules/<release>`.
fn a_kernel_build_in(dir: &Path) -> (PathBuf, PathBuf, String) {
    let project = TempProject::new();
    let catalog = project.catalog();
    let cache = Cache::open(&Cache::default_root()).unwrap();
    let provisioner = Provisioner::new(&cache, &catalog, false, Events::none()).unwrap();
    let kernel = provisioner.kernel(&KernelId::new("debian-6.12")).unwrap();
    let boot = dir.join("linux/arch/x86/boot");
    fs::create_dir_all(&boot).unwrap();
    fs::copy(&kernel.image, boot.join("bzImage")).unwrap();
    let modules = kernel.modules.expect("Debian's kernel has modules");
    let release = modules.file_name().unwrap().to_string_lossy().into_owned();
    let installed = dir.join("mods/lib/modules");
    fs::create_dir_all(&installed).unwrap();
    common::copy_tree(&modules, &installed.join(&release));
    (boot.join("bzImage"), dir.join("mods"), release)
}

fn kmatrix(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .current_dir(dir)
        .arg("--root")
        .arg(repo_root())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_and_exec_boot_a_kernel_given_as_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, release) = a_kernel_build_in(dir.path());
    let kernel = "./linux/arch/x86/boot/bzImage,modules=./mods";

    // A real cell whose guest needs modules (its artifact's disk: virtio_blk, ext4).
    let out = dir.path().join("run");
    let output = kmatrix(
        dir.path(),
        &[
            "run",
            "--scenario",
            "caddy-mptcp",
            "--version",
            "v2.6.2",
            "--variant",
            "baseline",
            "--kernel",
            kernel,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let cells = common::read_cells(&out);
    assert_eq!(cells.len(), 1, "{cells:?}");
    let cell = &cells[0];
    assert_eq!(cell.verdict.as_str(), "pass", "{cell:?}");
    assert!(cell.kernel.starts_with("bzImage@"), "{}", cell.kernel);
    assert_eq!(cell.kernel_release.as_deref(), Some(release.as_str()));
    assert_eq!(
        common::fact(cell, "module.virtio_blk"),
        "loaded",
        "{cell:?}"
    );
    // Nothing is written beside the user's kernel.
    let beside: Vec<_> = fs::read_dir(dir.path().join("linux/arch/x86/boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec!["bzImage"]);

    // exec, with the modules, then without: the program's disk needs
    // virtio_blk and ext4, which Debian builds as modules.
    let hello = static_program(dir.path(), "hello from my own kernel");
    let exec = |kernel: &str, out: &str| {
        kmatrix(
            dir.path(),
            &[
                "exec",
                "--kernel",
                kernel,
                "--binary",
                hello.to_str().unwrap(),
                "--out",
                dir.path().join(out).to_str().unwrap(),
            ],
        )
    };
    let output = exec(kernel, "exec");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("hello from my own kernel"), "{shown}");
    assert!(
        shown.contains(&release),
        "the row names the release: {shown}"
    );

    let output = exec("./linux/arch/x86/boot/bzImage", "exec-bare");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("unavailable"), "{shown}");
    assert!(
        shown.contains("lacks virtio_blk or ext4") && shown.contains("modules=DIR"),
        "says what is missing and how to give it: {shown}"
    );
}

#[test]
fn a_kernel_path_that_is_not_a_kernel_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "not a kernel").unwrap();
    for (given, says) in [
        ("./no/such/bzImage", "no kernel image here"),
        ("./notes.txt", "not a Linux kernel image"),
    ] {
        let output = kmatrix(
            dir.path(),
            &["plan", "--scenario", "caddy-mptcp", "--kernel", given],
        );
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(2), "{given}: {shown}");
        assert!(shown.contains(says), "{given}: {shown}");
    }
}
