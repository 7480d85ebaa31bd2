//! The lock holds: a pin that no longer matches the bytes (a lock edited by
//! mistake, a tampered cache or mirror) is refused with the lock key, both
//! digests and the fix; nothing boots on those bytes, the other kernels'
//! cells run, and the lock file is byte-identical afterwards. (Go modules'
//! h1: pins: tests/modules.rs.)

mod common;

use common::{read_cells, repo_root, text, TempProject};
use kmatrix_metadata::Verdict;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let output = project.run_one_kube_vip_cell(&["debian-6.1", "debian-6.12"], &out);
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

/// Every cache entry (its payload file, against the sha256 the cache
/// recorded) a real cell uses: kernel, PVH image, emulator, toolchain, guest
/// root, agent, reproducer, the version's Debian package and its disk.
/// Each is corrupted in a private copy of the cache (hard links, the
/// corrupted file replaced by rename so the shared cache is untouched), and
/// the next run notices each one, makes it again from its pinned source
/// (checked against the pin as a first fetch is), and gives the same
/// verdict; the lock is byte-identical.
#[test]
fn every_corrupted_cache_entry_a_cell_uses_is_made_again_and_checked() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let lock_path = project.root().join("images/kmatrix.lock");
    let run = |cache: &Path, out: &Path| {
        project.kmatrix_with_env(
            &[("KMATRIX_CACHE", cache)],
            &[
                "run",
                "--kernel",
                "debian-6.1",
                "--version",
                "v2.6.2",
                "--variant",
                "baseline",
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    // The shared cache, hard-linked: what is already made is reused (some
    // keys name the cache's own path, so those entries are made anew in the
    // copy by the first run). Entries other tests are making may vanish
    // mid-copy: not an error.
    let shared = kmatrix::sources::cache::Cache::default_root();
    let private = project.root().join("cache");
    if shared.exists() {
        let _ = Command::new("cp")
            .arg("-al")
            .arg(&shared)
            .arg(&private)
            .status();
    }
    let first = run(&private, &project.root().join("first"));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let first_cells = read_cells(&project.root().join("first"));
    assert_eq!(first_cells.len(), 1, "{first_cells:#?}");
    let lock_before = fs::read(&lock_path).unwrap();

    let corrupted = corrupt_every_payload(&private);
    assert!(corrupted.len() >= 8, "{corrupted:?}");

    let second = run(&private, &project.root().join("second"));
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let remade: BTreeSet<&str> = corrupted
        .iter()
        .filter(|(_, dir)| stderr.contains(&format!("cache entry {} is", dir.display())))
        .map(|(kind, _)| kind.as_str())
        .collect();
    for kind in [
        "kernels",
        "emulators",
        "toolchains",
        "rootfs",
        "agent",
        "reproducers",
        "artifact-build-info",
        "artifact-images",
    ] {
        assert!(
            remade.contains(kind),
            "{kind} not remade: {remade:?}\n{}",
            text(&second)
        );
    }
    eprintln!("made again after corruption: {remade:?}");
    for (kind, dir) in corrupted
        .iter()
        .filter(|(k, _)| remade.contains(k.as_str()))
    {
        if stderr.contains(&format!("cache entry {} is", dir.display())) {
            assert!(
                payload_matches_manifest(dir),
                "{kind}: {} not checked",
                dir.display()
            );
        }
    }
    let second_cells = read_cells(&project.root().join("second"));
    assert_eq!(second_cells.len(), 1);
    assert_eq!(
        second_cells[0].verdict, first_cells[0].verdict,
        "{second_cells:#?}"
    );
    assert_eq!(second_cells[0].verdict, Verdict::Pass, "{second_cells:#?}");
    assert_eq!(
        fs::read(&lock_path).unwrap(),
        lock_before,
        "the lock is untouched"
    );
}

/// Replaces each complete entry's payload with other bytes (a new file
/// renamed over it, so a hard-linked original keeps its bytes); returns the
/// (kind, entry folder) pairs.
fn corrupt_every_payload(cache: &Path) -> Vec<(String, PathBuf)> {
    let mut corrupted = Vec::new();
    for kind in fs::read_dir(cache).unwrap().flatten() {
        let Ok(entries) = fs::read_dir(kind.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(payload) = manifest_payload(&entry.path()) else {
                continue;
            };
            let spare = entry.path().join(".kmatrix-test-corrupt");
            fs::write(&spare, b"corrupted by the test").unwrap();
            fs::rename(&spare, &payload).unwrap();
            corrupted.push((
                kind.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    corrupted
}

fn manifest_payload(entry: &Path) -> Option<PathBuf> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(entry.join("kmatrix-artifact.json")).ok()?).ok()?;
    let payload = entry.join(manifest["payload"].as_str()?);
    payload.is_file().then_some(payload)
}

fn payload_matches_manifest(entry: &Path) -> bool {
    let Ok(bytes) = fs::read(entry.join("kmatrix-artifact.json")) else {
        return false;
    };
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let payload = entry.join(manifest["payload"].as_str().unwrap());
    let found = Sha256::digest(fs::read(payload).unwrap());
    manifest["sha256"].as_str() == Some(&format!("{found:x}"))
}
