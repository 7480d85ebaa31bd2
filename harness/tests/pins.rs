//! The lock holds: a pin that no longer matches the bytes (a lock edited by
//! mistake, a tampered cache or mirror) is refused with the lock key, both
//! digests and the fix; nothing boots on those bytes, the other kernels'
//! cells run, and the lock file is byte-identical afterwards. (Go modules'
//! h1: pins: tests/modules.rs.)

mod common;

use common::{read_cells, repo_root, text, TempProject};
use kmatrix_metadata::Verdict;
use std::fs;

#[test]
fn an_altered_kernel_pin_is_refused_and_the_lock_is_untouched() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let lock_path = project.root().join("images/kmatrix.lock");
    let lock = fs::read_to_string(&lock_path).unwrap();
    let pinned = "efe19f605b6f54a8352e68d85a629abb2d30b72a085faef603a9152590baa791";
    let altered = "0000000000000000352e68d85a629abb2d30b72a085faef603a9152590baa791";
    assert!(
        lock.contains(pinned),
        "the committed lock pins debian-6.1's image"
    );
    fs::write(&lock_path, lock.replace(pinned, altered)).unwrap();
    let before = fs::read(&lock_path).unwrap();
    let out = project.root().join("out");
    let output = project.kmatrix(&[
        "run",
        "--kernel",
        "debian-6.1",
        "--kernel",
        "debian-6.12",
        "--version",
        "v0.8.4",
        "--variant",
        "baseline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    let refused = cells.iter().find(|c| c.kernel == "debian-6.1").unwrap();
    assert_eq!(refused.verdict, Verdict::Unavailable, "{refused:#?}");
    for said in [
        "kernel:debian-6.1",
        "checksum mismatch",
        pinned,
        altered,
        "images/kmatrix.lock",
    ] {
        assert!(refused.signature.contains(said), "{said}: {refused:#?}");
    }
    assert!(refused.kernel_release.is_none(), "no guest of it booted");
    let other = cells.iter().find(|c| c.kernel == "debian-6.12").unwrap();
    assert_eq!(other.verdict, Verdict::Pass, "{other:#?}");
    assert_eq!(
        fs::read(&lock_path).unwrap(),
        before,
        "the lock is untouched"
    );
    assert!(
        !out.join("boots").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("debian-6.1+")),
        "no boot folder of debian-6.1"
    );
}
