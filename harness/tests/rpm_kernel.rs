//! The enterprise (RPM) kernel path, run for real here where no vault
//! answers: the test lays a real kernel out as an el7 package does
//! (`/boot/vmlinuz-*`, `/lib/modules/*/kernel/**.ko.xz`, virtio as modules),
//! builds the RPM with Debian's `rpmbuild`, serves it over HTTP on
//! 127.0.0.1, and catalogs it by URL exactly as `centos-7` is. kmatrix then
//! fetches it with the code a user's vault download takes, unpacks it,
//! boots it with its virtio-blk module loaded by the agent before the disk
//! is first used, and runs a real cell on it.

mod common;

use common::{read_cells, repo_root, serve, text, TempProject};
use kmatrix::events::Events;
use kmatrix::provision::Environment;
use kmatrix::sources::cache::Cache;
use kmatrix::sources::modules::{load_order, parse_modules_dep};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian 6.1's cloud kernel builds virtio_pci and virtio_blk as modules,
/// as CentOS 7's does: the guest cannot reach its disks before loading them.
const KERNEL: &str = "debian-6.1";
/// What the cell below needs: the disk's path, and caddy-mptcp's modules.
const MODULES: [&str; 7] = [
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "veth",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
];

/// The kernel's image and module tree, from the cache (fetched if need be).
fn real_kernel(project: &TempProject) -> (PathBuf, PathBuf) {
    let fetched = kmatrix::ops::kernels::fetch(
        &kmatrix::Project::new(project.root()),
        &Cache::default_root(),
        &[KERNEL.to_string()],
        Events::none(),
    )
    .unwrap();
    let (_, made) = fetched.into_iter().next().unwrap();
    let Environment::Kernel(kernel) = made.unwrap().0 else {
        panic!("{KERNEL} is a kernel");
    };
    (
        kernel.image,
        kernel.modules.expect("a packaged kernel has modules"),
    )
}

/// `staged/` as an el7 kernel package lays itself out: the image in /boot,
/// the needed modules xz-compressed under /lib/modules/<release>/kernel,
/// and a modules.dep naming the .ko.xz files.
fn stage_el7_tree(image: &Path, modules: &Path, staged: &Path) -> String {
    let release = modules.file_name().unwrap().to_string_lossy().to_string();
    let boot = staged.join("boot");
    fs::create_dir_all(&boot).unwrap();
    fs::copy(image, boot.join(format!("vmlinuz-{release}"))).unwrap();
    let dep = parse_modules_dep(&fs::read_to_string(modules.join("modules.dep")).unwrap());
    let wanted: Vec<String> = MODULES.iter().map(|m| m.to_string()).collect();
    let (order, missing) = load_order(&dep, &wanted);
    // Built into this kernel (ext4 is): nothing to package.
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    for name in &missing {
        assert!(
            builtin.contains(&format!("/{name}.ko")),
            "{name} is neither a module nor built in"
        );
    }
    let tree = staged.join("lib/modules").join(&release);
    let mut dep_lines = Vec::new();
    for path in &order {
        let from = modules.join(path);
        let to = tree.join(format!("{path}.xz"));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&from, to.with_extension("")).unwrap();
        let xz = Command::new("xz")
            .arg("-9")
            .arg(to.with_extension(""))
            .status()
            .unwrap();
        assert!(xz.success());
        let (_, deps) = dep.values().find(|(p, _)| p == path).unwrap();
        let deps: Vec<String> = deps.iter().map(|d| format!("{d}.xz")).collect();
        dep_lines.push(format!("{path}.xz: {}", deps.join(" ")));
    }
    fs::write(tree.join("modules.dep"), dep_lines.join("\n") + "\n").unwrap();
    fs::write(tree.join("modules.builtin"), builtin).unwrap();
    release
}

/// `kernel-<version>-<release>.el7.x86_64.rpm` of `staged/`, built here.
fn build_rpm(staged: &Path, top: &Path, release: &str) -> PathBuf {
    let (version, build) = release.split_once('-').unwrap();
    let build = build.split('-').next().unwrap();
    let spec = top.join("kernel.spec");
    fs::create_dir_all(top).unwrap();
    fs::write(
        &spec,
        format!(
            "Name: kernel\nVersion: {version}\nRelease: {build}.el7\nSummary: test kernel\nLicense: GPLv2\nBuildArch: x86_64\n\
             %%description\nA real kernel laid out as an el7 package.\n\
             %%install\nmkdir -p %{{buildroot}}\ncp -a {}/. %{{buildroot}}/\n\
             %%files\n/boot/vmlinuz-{release}\n/lib/modules/{release}\n",
            staged.display()
        ),
    )
    .unwrap();
    let built = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args([
            "--define",
            "__os_install_post %{nil}",
            "--define",
            "debug_package %{nil}",
        ])
        .args(["--nodeps", "-bb"])
        .arg(&spec)
        .output()
        .expect("rpmbuild must be installed (scripts/setup.sh installs Debian's rpm)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    top.join(format!(
        "RPMS/x86_64/kernel-{version}-{build}.el7.x86_64.rpm"
    ))
}

#[test]
fn an_rpm_kernel_served_by_url_boots_with_virtio_blk_as_a_module_and_runs_a_cell() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let (image, modules) = real_kernel(&project);
    let work = tempfile::tempdir().unwrap();
    let staged = work.path().join("staged");
    let release = stage_el7_tree(&image, &modules, &staged);
    let rpm = build_rpm(&staged, &work.path().join("rpmbuild"), &release);
    let (_server, base) = serve(rpm.parent().unwrap());
    let url = format!("{base}/{}", rpm.file_name().unwrap().to_string_lossy());
    let catalog = project.root().join("images/kernels.toml");
    let mut text_of_catalog = fs::read_to_string(&catalog).unwrap();
    text_of_catalog.push_str(&format!(
        "\n[[kernel]]\nid = \"el-local\"\nversion = \"6.1\"\n\
         description = \"{KERNEL}'s kernel as an el7 RPM, served on 127.0.0.1 by the test\"\n\
         source = {{ kind = \"package-urls\", urls = [\"{url}\"] }}\n"
    ));
    fs::write(&catalog, text_of_catalog).unwrap();

    let out = work.path().join("run");
    let run = project.kmatrix(&[
        "run",
        "--scenario",
        "caddy-mptcp",
        "--kernel",
        "el-local",
        "--version",
        "v2.6.2",
        "--variant",
        "baseline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1, "{}", text(&run));
    let cell = &cells[0];
    assert_eq!(cell.kernel_release.as_deref(), Some(release.as_str()));
    // The disk holding caddy is reached only through the module.
    assert_eq!(
        cell.facts.get("module.virtio_blk").map(String::as_str),
        Some("loaded")
    );
    assert_eq!(
        cell.facts.get("module.virtio_pci").map(String::as_str),
        Some("loaded")
    );
    assert_eq!(
        cell.facts
            .get("disk./kmatrix/artifacts/caddy-mptcp--v2.6.2")
            .map(String::as_str),
        Some("mounted"),
        "{:?}",
        cell.facts
    );
    assert_eq!(cell.verdict.to_string(), "pass", "{cell:?}");
    // Every path ran: caddy's own version, and the real server in crun
    // reached over loopback, veth and a DNAT'd ClusterIP.
    assert_eq!(cell.probes.len(), 4, "{cell:?}");
    for probe in &cell.probes {
        assert_eq!(probe.verdict.to_string(), "pass", "{probe:?}");
    }
    // The lock pinned the RPM it fetched, by the URL it came from.
    let lock = fs::read_to_string(project.root().join("images/kmatrix.lock")).unwrap();
    assert!(
        lock.contains("[artifact.\"kernel:el-local\"]") && lock.contains(&url),
        "{lock}"
    );
}
