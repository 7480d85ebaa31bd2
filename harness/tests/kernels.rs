//! Kernels as an axis: the catalog listing, a kernel out of reach, a
//! corrupted cache entry, and the source-built MPTCP stand-in booted for real.

mod common;

use common::{fact, fixture, read_cells, repo_root, text, TempProject, TPROXY_TWO_BY_TWO};
use std::fs;

#[test]
fn list_shows_origins_and_stand_ins() {
    let project = TempProject::new();
    let output = project.kmatrix(&["kernels", "list"]);
    assert!(output.status.success(), "{}", text(&output));
    let listing = String::from_utf8_lossy(&output.stdout);
    for id in [
        "debian-5.10",
        "debian-5.10-mptcp",
        "debian-6.1",
        "debian-6.12",
        "debian-sid",
        "ubuntu-20.04",
        "ubuntu-22.04",
        "ubuntu-24.04",
        "centos-7",
    ] {
        assert!(
            listing.lines().any(|l| l.starts_with(&format!("  {id} "))),
            "{id} missing:\n{listing}"
        );
    }
    // The clusters inside each kernel's guest are one line, not one each.
    assert!(!listing.contains("ubuntu-22.04+k8s"), "{listing}");
    assert!(listing.contains("<kernel>+k8s"), "{listing}");
    // Each row's origin starts in the same column.
    let origin_columns: std::collections::BTreeSet<usize> = listing
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains("packages by URL"))
        .map(|l| l.find("packages by URL").unwrap())
        .collect();
    assert_eq!(origin_columns.len(), 1, "{listing}");
    assert!(listing.contains("stands in for Ubuntu 22.04"), "{listing}");
    assert!(
        listing.contains("built from Debian bullseye linux-source-5.10"),
        "{listing}"
    );
}

#[test]
fn a_kernel_out_of_reach_gives_unavailable_cells_and_exit_0() {
    let project = TempProject::new();
    project.add_scenario(&fixture("faults"));
    let kernels = project.root().join("images/kernels.toml");
    let mut catalog = fs::read_to_string(&kernels).unwrap();
    catalog.push_str(
        "\n[[kernel]]\nid = \"nowhere\"\nversion = \"0.0\"\ndescription = \"a kernel on a host that does not exist\"\n\
         source = { kind = \"package-urls\", urls = [\"http://kernel-archive.invalid/linux-image-0.0.deb\"] }\n",
    );
    fs::write(&kernels, catalog).unwrap();
    let out = project.root().join("out");
    let output = project.kmatrix(&["run", "--kernel", "nowhere", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 6);
    for cell in cells {
        assert_eq!(cell.verdict.as_str(), "unavailable", "{cell:?}");
        assert!(cell.kernel_release.is_none());
        let signature = cell.signature.as_str();
        assert!(
            signature.contains("no network to http://kernel-archive.invalid/linux-image-0.0.deb"),
            "{signature}"
        );
    }
}

#[test]
fn a_corrupted_cached_kernel_is_fetched_again_never_booted() {
    let project = TempProject::new();
    // debian-5.10: no other test boots it, so corrupting it races with nothing.
    let fetch = || project.kmatrix(&["kernels", "fetch", "debian-5.10"]);
    let first = fetch();
    assert!(first.status.success(), "{}", text(&first));
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let image = stdout
        .split_whitespace()
        .find(|w| w.contains("/boot/vmlinuz-"))
        .expect("the fetch names the image")
        .to_string();
    let good = fs::read(&image).unwrap();
    fs::write(&image, b"corrupted").unwrap();

    let second = fetch();
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("corrupted; making it again"),
        "{}",
        text(&second)
    );
    assert_eq!(
        fs::read(&image).unwrap(),
        good,
        "the image was fetched again and checked"
    );
}

/// Builds debian-5.10-mptcp from Debian's linux-source-5.10 the first time
/// (about 6 minutes on 2 cores), then boots it. What is asserted is what the
/// guest reported, compared with the guest's own facts.
#[test]
fn the_source_built_mptcp_stand_in_boots_and_reproduces() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-ovn-tproxy"));
    let out = project.root().join("out");
    let output = project.kmatrix(
        &[
            &[
                "run",
                "--scenario",
                "kube-ovn-tproxy",
                "--kernel",
                "debian-5.10-mptcp",
            ][..],
            &TPROXY_TWO_BY_TWO,
            &["--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 4);
    for cell in &cells {
        assert!(
            cell.kernel_release.as_deref().unwrap().starts_with("5.10."),
            "{cell:?}"
        );
        assert_eq!(
            fact(cell, "mptcp.enabled"),
            "1",
            "the stand-in has MPTCP on: {cell:?}"
        );
        let probe = &cell.probes[0];
        let asks_mptcp = cell.version == "v1.14.0" && cell.variant == "baseline";
        if asks_mptcp {
            // A Go 1.24 listener is MPTCP here, and 5.10's MPTCP refuses IP_TRANSPARENT.
            assert_eq!(cell.verdict.as_str(), "fail", "{cell:?}");
            assert!(
                probe
                    .stderr
                    .contains("IP_TRANSPARENT: operation not supported"),
                "{cell:?}"
            );
        } else {
            assert_eq!(cell.verdict.as_str(), "pass", "{cell:?}");
            assert!(probe.stdout.contains("socket protocol tcp"), "{cell:?}");
        }
    }
}

/// `kernels discover` reads the archives' own indexes; `--write` in a copy
/// of the project adds the newest Ubuntu builds with their sha256 pinned
/// from the index, and the catalog still loads.
#[test]
fn discover_lists_the_newest_builds_and_write_pins_them() {
    let project = TempProject::new();
    // The copy forgets what an earlier `--write` added to the catalog.
    let path = project.root().join("images/kernels.toml");
    let catalog = fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = catalog
        .split("\n[[kernel]]")
        .filter(|block| !block.contains("added by kmatrix kernels discover"))
        .collect();
    fs::write(&path, kept.join("\n[[kernel]]")).unwrap();
    let output = project.kmatrix(&["kernels", "discover", "--write"]);
    let said = text(&output);
    if output.status.code() == Some(1) && said.contains("no network to") {
        // Where Ubuntu's archive does not answer, the command says so.
        return;
    }
    assert_eq!(output.status.code(), Some(0), "{said}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for series in ["ubuntu-16.04-ga", "ubuntu-22.04-hwe", "debian-bookworm"] {
        assert!(stdout.contains(series), "{series}: {said}");
    }
    assert!(stdout.contains("added ubuntu-22.04-hwe"), "{said}");
    let catalog = fs::read_to_string(project.root().join("images/kernels.toml")).unwrap();
    assert!(catalog.contains("id = \"ubuntu-22.04-hwe\""), "{catalog}");
    let lock = fs::read_to_string(project.root().join("images/kmatrix.lock")).unwrap();
    let pinned = lock
        .split("[artifact.\"kernel:ubuntu-22.04-hwe\"]")
        .nth(1)
        .expect("the new kernel is pinned");
    assert!(
        pinned.contains("sha256 from Ubuntu's Packages index"),
        "{pinned}"
    );
    // A second discover finds the catalog has it now, and the lines the
    // metapackages no longer track (jammy's HWE 6.5 among them).
    let again = project.kmatrix(&["kernels", "discover"]);
    let listed = String::from_utf8_lossy(&again.stdout);
    assert!(
        listed.contains("has it: ubuntu-22.04-hwe"),
        "{}",
        text(&again)
    );
    assert!(listed.contains("ubuntu-22.04-hwe-6.5"), "{}", text(&again));

    // `latest:` bumps an entry that lags behind the archive, then selects it.
    let catalog = fs::read_to_string(&path).unwrap();
    let block = catalog
        .split("\n[[kernel]]")
        .find(|b| b.contains("id = \"ubuntu-22.04-hwe\""))
        .unwrap()
        .to_string();
    let newest_url = block
        .lines()
        .find(|l| l.contains("linux-image-unsigned-"))
        .unwrap()
        .trim()
        .trim_matches(|c| c == '"' || c == ',')
        .to_string();
    let lagging = block.replace(&newest_url, "http://archive.ubuntu.com/ubuntu/pool/main/l/linux-hwe-6.8/linux-image-unsigned-6.8.0-40-generic_6.8.0-40.40~22.04.3_amd64.deb");
    fs::write(&path, catalog.replace(&block, &lagging)).unwrap();
    project.add_scenario(&repo_root().join("scenarios/kube-vip-cidr"));
    let plan = project.kmatrix(&[
        "plan",
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "latest:ubuntu-jammy-hwe",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stderr)
            .contains("latest:ubuntu-jammy-hwe = ubuntu-22.04-hwe"),
        "{}",
        text(&plan)
    );
    assert!(
        fs::read_to_string(&path).unwrap().contains(&newest_url),
        "the entry was bumped back to the newest build"
    );
}
