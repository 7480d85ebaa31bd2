//! The fault suite: pins and fetch failures met as a user meets them, with
//! real fetches from a real HTTP server (Python's) on 127.0.0.1. Bytes that
//! differ from their pin are refused with the lock key, both digests, where
//! they came from and the command that accepts them, and the lock stays
//! byte-identical; `kmatrix lock accept` changes exactly the chosen entry and
//! prints old and new digests; `--locked` adds no pin; an unreachable host,
//! a name that does not resolve and a missing file each say so, in seconds.

mod common;

use common::{free_port, read_cells, repo_root, serve, text, TempProject};
use kmatrix_metadata::Verdict;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A kernel package as a .deb (`/boot/vmlinuz-9.9.9-fault`, whose bytes
/// are `content`): enough to fetch, unpack and pin; nothing boots it.
fn kernel_deb(dir: &Path, content: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{}", content.len()));
    fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::write(
        tree.join("DEBIAN/control"),
        "Package: linux-image-fault\nVersion: 9.9.9\nArchitecture: amd64\nMaintainer: kmatrix tests <t@example.invalid>\nDescription: a fake kernel\n",
    )
    .unwrap();
    fs::write(tree.join("boot/vmlinuz-9.9.9-fault"), content).unwrap();
    let deb = dir.join("linux-image-fault_9.9.9_amd64.deb");
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    deb
}

fn sha256(path: &Path) -> String {
    kmatrix::hashing::sha256_file(path).unwrap()
}

fn add_kernel(project: &TempProject, id: &str, url: &str) {
    let catalog = project.root().join("images/kernels.toml");
    let mut text_of = fs::read_to_string(&catalog).unwrap();
    text_of.push_str(&format!(
        "\n[[kernel]]\nid = \"{id}\"\nversion = \"9.9\"\ndescription = \"a test kernel by URL\"\n\
         source = {{ kind = \"package-urls\", urls = [\"{url}\"] }}\n"
    ));
    fs::write(&catalog, text_of).unwrap();
}

/// `kmatrix --cache CACHE ARGS...` in the project.
fn kmatrix(project: &TempProject, cache: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--cache", cache.to_str().unwrap()];
    all.extend_from_slice(args);
    project.kmatrix(&all)
}

#[test]
fn served_bytes_that_differ_from_the_pin_are_refused_and_only_accept_moves_the_pin() {
    let project = TempProject::new();
    let work = tempfile::tempdir().unwrap();
    let served = work.path().join("served");
    fs::create_dir_all(&served).unwrap();
    let first = kernel_deb(work.path(), "the first kernel");
    fs::copy(&first, served.join("linux-image-fault_9.9.9_amd64.deb")).unwrap();
    let (_server, base) = serve(&served);
    let url = format!("{base}/linux-image-fault_9.9.9_amd64.deb");
    add_kernel(&project, "fault", &url);
    let lock_path = project.root().join("images/kmatrix.lock");

    // First use pins it, and says so.
    let fetched = kmatrix(
        &project,
        &work.path().join("cache1"),
        &["kernels", "fetch", "fault"],
    );
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert!(
        text(&fetched)
            .contains("kernel:fault: pinned on first use (new entry in images/kmatrix.lock)"),
        "{}",
        text(&fetched)
    );
    let pinned = sha256(&first);
    assert!(fs::read_to_string(&lock_path).unwrap().contains(&pinned));

    // The server now serves other bytes under the same URL.
    let second = kernel_deb(&work.path().join("b"), "a kernel someone swapped in");
    fs::copy(&second, served.join("linux-image-fault_9.9.9_amd64.deb")).unwrap();
    let found = sha256(&second);
    let before = fs::read(&lock_path).unwrap();
    let refused = kmatrix(
        &project,
        &work.path().join("cache2"),
        &["kernels", "fetch", "fault"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    for said in [
        "kernel:fault",
        "checksum mismatch",
        pinned.as_str(),
        found.as_str(),
        url.as_str(),
        "kmatrix lock accept kernel:fault",
    ] {
        assert!(text(&refused).contains(said), "{said}: {}", text(&refused));
    }
    assert_eq!(
        fs::read(&lock_path).unwrap(),
        before,
        "the lock is untouched"
    );

    // A run on those bytes: the kernel's cells are unavailable with the same
    // words, nothing boots, the lock stays as it was.
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let out = work.path().join("run");
    // (The shared cache: the agent, emulator and toolchains are there; no
    // entry holds this URL, whose port is new each time.)
    let run = project.run_one_kube_vip_cell(&["fault"], &out);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].verdict, Verdict::Unavailable);
    assert!(
        cells[0].signature.contains("checksum mismatch"),
        "{:?}",
        cells[0]
    );
    assert!(cells[0].kernel_release.is_none(), "no guest booted");
    assert_eq!(
        fs::read(&lock_path).unwrap(),
        before,
        "the lock is untouched"
    );

    // Accepting moves exactly that pin and prints both digests.
    let others = |lock: &str| -> String {
        lock.split("\n[")
            .filter(|s| !s.contains("kernel:fault"))
            .collect::<Vec<_>>()
            .join("\n[")
    };
    let accepted = kmatrix(
        &project,
        &work.path().join("cache2"),
        &["lock", "accept", "kernel:fault"],
    );
    assert!(accepted.status.success(), "{}", text(&accepted));
    let said = text(&accepted);
    assert!(
        said.contains(&format!("- {url} sha256:{pinned}"))
            && said.contains(&format!("+ {url} sha256:{found}")),
        "{said}"
    );
    let after = fs::read_to_string(&lock_path).unwrap();
    assert!(
        after.contains(&found) && !after.contains(&pinned),
        "{after}"
    );
    assert_eq!(
        others(&after),
        others(&String::from_utf8(before).unwrap()),
        "no other entry moved"
    );
    let again = kmatrix(
        &project,
        &work.path().join("cache2"),
        &["kernels", "fetch", "fault"],
    );
    assert!(again.status.success(), "{}", text(&again));

    // An entry the lock does not have is bad input, and nothing changes.
    let unknown = kmatrix(
        &project,
        &work.path().join("cache2"),
        &["lock", "accept", "kernel:nonesuch"],
    );
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no entry `kernel:nonesuch`"),
        "{}",
        text(&unknown)
    );
    assert_eq!(fs::read_to_string(&lock_path).unwrap(), after);
}

#[test]
fn locked_runs_add_no_pin() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let work = tempfile::tempdir().unwrap();
    let deb = kernel_deb(work.path(), "never pinned");
    let (_server, base) = serve(work.path());
    let url = format!("{base}/{}", deb.file_name().unwrap().to_string_lossy());
    add_kernel(&project, "unpinned", &url);
    let lock_path = project.root().join("images/kmatrix.lock");
    let before = fs::read(&lock_path).unwrap();
    let out = work.path().join("run");
    let run = project.kmatrix(&[
        "run",
        "--locked",
        "--kernel",
        "unpinned",
        "--version",
        "v0.8.4",
        "--variant",
        "baseline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let cells = read_cells(&out);
    assert_eq!(cells[0].verdict, Verdict::Unavailable);
    assert!(
        cells[0].signature.contains(
            "kernel:unpinned is not pinned in images/kmatrix.lock, and --locked adds no pin"
        ),
        "{:?}",
        cells[0]
    );
    assert_eq!(
        fs::read(&lock_path).unwrap(),
        before,
        "the lock is untouched"
    );
}

/// Nothing listens, the name does not resolve, the server has no such file:
/// three different sentences, each naming the URL, each within seconds, and
/// the kernel that is reachable is not held up.
#[test]
fn each_fetch_failure_names_its_cause() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let work = tempfile::tempdir().unwrap();
    let (_server, base) = serve(work.path());
    let refused = format!("http://127.0.0.1:{}/k.deb", free_port());
    let dns = "http://no-such-host.invalid/k.deb".to_string();
    let missing = format!("{base}/no-such-file.deb");
    add_kernel(&project, "refused", &refused);
    add_kernel(&project, "dns", &dns);
    add_kernel(&project, "missing", &missing);
    let started = Instant::now();
    let check = project.kmatrix(&[
        "plan",
        "--check",
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "refused",
        "--kernel",
        "dns",
        "--kernel",
        "missing",
        "--kernel",
        "debian-6.1",
    ]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let said = text(&check);
    for line in [
        format!("no network to {refused}: 127.0.0.1:"),
        "refused the connection (nothing listens there)".to_string(),
        format!("no network to {dns}: DNS failure: the name no-such-host.invalid does not resolve"),
        format!("{missing}: HTTP 404 from 127.0.0.1:"),
        "it has no such file".to_string(),
    ] {
        assert!(said.contains(&line), "{line}: {said}");
    }
    assert!(said.contains("cells on debian-6.1"), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
