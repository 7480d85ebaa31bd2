//! Kubernetes environments with a real cluster: `k8s-local` is a
//! single-node Kubernetes (the release images/kubernetes.toml names, 1.34)
//! kmatrix assembles on this host from the binaries it built from the
//! k8s.io/kubernetes module and etcd's (scripts/test.sh builds them before
//! the tests; a test run reuses them) and Debian's containerd, runc and CNI
//! plugins. Workloads are the scenarios'
//! manifests; verdicts come from the rollout (ready, or a container that
//! keeps restarting) and from probe pods reaching a Service's ClusterIP
//! through kube-proxy's rules. `kind` cannot run here (no node image, no
//! registry) and must say so within seconds.

mod common;

use common::{read_cells, repo_root, text, TempProject};
use kmatrix_metadata::{CellRecord, Fidelity, RunInfo, Verdict};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const CLUSTER_DIR: &str = "/var/lib/kmatrix/k8s-local";

/// The release images/kubernetes.toml builds (`[local] version`).
fn kubernetes_release() -> String {
    let text = fs::read_to_string(repo_root().join("images/kubernetes.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let version = table["local"]["version"].as_str().unwrap().to_string();
    assert!(
        version.starts_with("v1.3"),
        "a current Kubernetes: {version}"
    );
    version
}

fn project_with(scenarios: &[&str]) -> TempProject {
    let project = TempProject::new();
    for scenario in scenarios {
        project.add_scenario(&repo_root().join("scenarios").join(scenario));
    }
    project
}

fn cell<'a>(
    cells: &'a [CellRecord],
    scenario: &str,
    version: &str,
    variant: &str,
) -> &'a CellRecord {
    cells
        .iter()
        .find(|c| c.scenario == scenario && c.version == version && c.variant == variant)
        .unwrap_or_else(|| panic!("no cell {scenario} {version} {variant} in {cells:#?}"))
}

fn probe<'a>(cell: &'a CellRecord, id: &str) -> &'a kmatrix_metadata::ProbeRecord {
    cell.probes
        .iter()
        .find(|p| p.probe_id == id)
        .unwrap_or_else(|| panic!("no probe {id} in {cell:#?}"))
}

/// The processes of a cluster of ours (marked in their environment or
/// command line): pid and command line.
fn cluster_processes() -> Vec<(u32, String)> {
    let marked = |bytes: &[u8]| {
        bytes
            .windows(CLUSTER_DIR.len())
            .any(|w| w == CLUSTER_DIR.as_bytes())
    };
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
            (marked(&cmdline) || marked(&environ))
                .then(|| (pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// What a cluster of ours left: its processes, its bridge, its folder.
fn cluster_leftovers() -> Vec<String> {
    let mut found: Vec<String> = cluster_processes().into_iter().map(|(_, c)| c).collect();
    let bridge = Command::new("ip")
        .args(["link", "show", "kmatrix0"])
        .output()
        .unwrap();
    if bridge.status.success() {
        found.push("the kmatrix0 bridge".into());
    }
    if Path::new(CLUSTER_DIR).exists() {
        found.push(CLUSTER_DIR.into());
    }
    found
}

/// The CNI network namespaces bind-mounted in the host's /run/netns.
fn pod_network_namespaces() -> std::collections::BTreeSet<String> {
    fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("cni-"))
                .collect()
        })
        .unwrap_or_default()
}

/// (process, local address) of every TCP listener the cluster's processes hold.
fn listeners_of_the_cluster() -> Vec<(String, String)> {
    let ours: std::collections::BTreeSet<u32> = cluster_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    let ss = Command::new("ss").args(["-ltnpH"]).output().unwrap();
    String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let users = words.last()?;
            let pid: u32 = users
                .split("pid=")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            let address = words.get(3)?.to_string();
            ours.contains(&pid).then(|| (users.to_string(), address))
        })
        .collect()
}

fn kube_chains() -> usize {
    let saved = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&saved.stdout)
        .lines()
        .filter(|l| l.starts_with(":KUBE-"))
        .count()
}

/// kube-vip's own v1.0.0 manager, built from its module: with its service
/// account it reaches the API server (pods do, through the `kubernetes`
/// Service) and takes the LoadBalancer Service; vip_cidr is no longer read
/// (v0.9.0 renamed it), so the reported manifest runs; the same mask as
/// vip_subnet is refused without a panic, the Service left without a VIP.
fn assert_real_kube_vip(cells: &[CellRecord]) {
    let taken = cell(cells, "kube-vip-cidr", "v1.0.0", "baseline");
    assert_eq!(taken.verdict, Verdict::Pass, "{taken:#?}");
    assert_eq!(taken.fidelity, Some(Fidelity::Release), "{taken:#?}");
    assert!(
        taken.facts["artifact"].starts_with("module:github.com/kube-vip/kube-vip@v1.0.0 (h1:"),
        "{taken:#?}"
    );
    let log = &probe(taken, "rollout").stdout;
    assert!(log.contains("successfully acquired lease"), "{log}");
    assert!(log.contains("synchronised in"), "{log}");
    let refused = cell(cells, "kube-vip-cidr", "v1.0.0", "vip-subnet-128");
    assert_eq!(refused.verdict, Verdict::Fail, "{refused:#?}");
    assert!(
        refused
            .signature
            .contains("could not format address '<ip>' with subnetMask '128'"),
        "{refused:#?}"
    );
    // The refusal is a `fails_on` line: the wait ended on it, not at the
    // rollout's 90 s deadline (which path ended it, not how fast).
    let waited = probe(refused, "rollout").duration_ms;
    assert!(waited < 90_000, "the wait ran to the deadline: {waited} ms");
    let both = cell(cells, "kube-vip-cidr", "v1.0.0", "vip-subnet-32-128");
    assert_eq!(both.verdict, Verdict::Pass, "{both:#?}");
}

/// One cluster for three scenarios' workloads: ollama reached by pod IP and
/// through its Service's ClusterIP, kube-vip v0.8.5 crash-looping on the
/// half-given vip_cidr (and running with the workaround), kube-vip's own
/// v1.0.0 manager (built from its module) taking the reporter's Service
/// through the API server or refusing the half-given vip_subnet,
/// kube-ovn-cni's DaemonSet on this host's kernel. Then the cluster is
/// gone, and a second run reuses the built binaries.
#[test]
fn local_cluster_deploys_probes_and_classifies_crash_loops() {
    let netns_before = pod_network_namespaces();
    let project = project_with(&["ollama-mptcp", "kube-vip-cidr", "kube-ovn-tproxy"]);
    let out = project.root().join("out");
    let output = project.kmatrix(&[
        "run",
        "--scenario",
        "ollama-mptcp",
        "--scenario",
        "kube-vip-cidr",
        "--scenario",
        "kube-ovn-tproxy",
        "--kernel",
        "k8s-local",
        "--version",
        "v0.5.13",
        "--version",
        "v0.8.5",
        "--version",
        "v1.0.0",
        "--version",
        "v1.14.0",
        "--variant",
        "baseline",
        "--variant",
        "vip-cidr-32-128",
        "--variant",
        "vip-subnet-128",
        "--variant",
        "vip-subnet-32-128",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    // ollama 1, kube-vip v0.8.5 × 2 (the vip_subnet variants are only for
    // kube-vip's own v0.9+ builds), v1.0.0 × 4, kube-ovn 1.
    assert_eq!(cells.len(), 8, "{cells:#?}");

    // ollama v0.5.13 (go 1.24: an MPTCP listener), its own server built
    // from its module at the tag, on this host's kernel: the Deployment
    // rolls out and a probe pod reaches it both ways.
    let ollama = cell(&cells, "ollama-mptcp", "v0.5.13", "baseline");
    assert_eq!(ollama.verdict, Verdict::Pass, "{ollama:#?}");
    assert!(
        probe(ollama, "rollout")
            .stdout
            .contains("Listening on [::]:11434 (version 0.5.13)"),
        "{ollama:#?}"
    );
    assert!(
        ollama.facts["artifact"].starts_with("module:github.com/ollama/ollama@v0.5.13 (h1:"),
        "{ollama:#?}"
    );
    let service = probe(ollama, "service-clusterip");
    assert!(
        service.stdout.contains("ollama reachable at 10.97."),
        "{service:#?}"
    );
    let pod_ip = probe(ollama, "pod-ip");
    assert!(
        pod_ip.stdout.contains("ollama reachable at 10.244.0."),
        "{pod_ip:#?}"
    );
    assert_eq!(
        ollama.facts.get("kubernetes").map(String::as_str),
        Some(kubernetes_release().as_str())
    );
    assert_eq!(ollama.backend.as_deref(), Some("kubernetes"));
    let info: RunInfo = serde_json::from_slice(&fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        info.kubernetes,
        Some(kubernetes_release()),
        "run.json names the release"
    );

    // kube-vip v0.8.5 with vip_cidr "128": the DaemonSet's container panics
    // and restarts: a crash, with its log and restart count.
    let vip = cell(&cells, "kube-vip-cidr", "v0.8.5", "baseline");
    assert_eq!(vip.verdict, Verdict::Crash, "{vip:#?}");
    let rollout = probe(vip, "rollout");
    assert!(rollout.stderr.contains("panic"), "{rollout:#?}");
    assert!(rollout.stderr.contains("restarted"), "{rollout:#?}");
    let fixed = cell(&cells, "kube-vip-cidr", "v0.8.5", "vip-cidr-32-128");
    assert_eq!(fixed.verdict, Verdict::Pass, "{fixed:#?}");
    assert_real_kube_vip(&cells);

    // kube-ovn-cni v1.14.0 with TPROXY on this host's kernel (6.x accepts
    // IP_TRANSPARENT on MPTCP): the DaemonSet runs.
    let tproxy = cell(&cells, "kube-ovn-tproxy", "v1.14.0", "baseline");
    assert_eq!(tproxy.verdict, Verdict::Pass, "{tproxy:#?}");

    // The cluster's logs are kept with the run; the cluster itself is gone.
    let boots = out.join("boots");
    let boot = fs::read_dir(&boots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for log in [
        "kube-apiserver.log",
        "kubelet.log",
        "containerd.log",
        "kube-proxy.log",
        "ready.txt",
    ] {
        assert!(
            boot.join("cluster").join(log).is_file(),
            "no {log} in {}",
            boot.display()
        );
    }
    assert_eq!(cluster_leftovers(), Vec::<String>::new());
    assert_eq!(kube_chains(), 0, "kube-proxy's chains were left behind");
    // The pods' network namespaces (and so their veths) went with it.
    let left: Vec<String> = pod_network_namespaces()
        .difference(&netns_before)
        .cloned()
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "pod network namespaces left in /run/netns"
    );

    // A second run: the binaries come from the cache (nothing built).
    let again = project.root().join("again");
    let output = project.kmatrix(&[
        "run",
        "--scenario",
        "kube-vip-cidr",
        "--kernel",
        "k8s-local",
        "--version",
        "v0.8.4",
        "--variant",
        "baseline",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let info: RunInfo = serde_json::from_slice(&fs::read(again.join("run.json")).unwrap()).unwrap();
    assert_eq!(info.cache.made, 0, "{:#?}", info.cache);
    let cells = read_cells(&again);
    assert_eq!(cells[0].verdict, Verdict::Pass, "{cells:#?}");
}

/// kill -9 while the cluster runs: the next run sweeps what was left
/// (processes, containers, rules, the bridge) and resume finishes the run.
#[test]
fn a_killed_runs_cluster_is_swept_and_the_run_resumes() {
    let project = project_with(&["kube-vip-cidr"]);
    let out = project.root().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(project.root())
        .args([
            "run",
            "--scenario",
            "kube-vip-cidr",
            "--kernel",
            "k8s-local",
            "--version",
            "v0.8.4",
            "--version",
            "v0.8.5",
            "--variant",
            "baseline",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the node runs (the kubelet is up), then kill.
    let started = Instant::now();
    loop {
        let up = fs::read_dir(out.join("boots"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .is_some_and(|e| e.path().join("cluster/kube-proxy.log").exists());
        if up {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 600,
            "the cluster never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "kmatrix ended before its cluster ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Once the node is Ready, every port the cluster listens on is on
    // 127.0.0.1, but the API server's: the pod bridge's own address (the
    // `kubernetes` Service's endpoint), which no other network reaches.
    let ready = out.join("boots/k8s-local-1/cluster/ready.txt");
    while !ready.exists() {
        assert!(
            started.elapsed().as_secs() < 600,
            "the node never became Ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let listening = listeners_of_the_cluster();
    assert!(
        listening.iter().any(|(_, a)| a == "10.244.0.1:16443"),
        "{listening:?}"
    );
    for (process, address) in &listening {
        assert!(
            address.starts_with("127.0.0.1:") || address == "10.244.0.1:16443",
            "{process} listens on {address}"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !cluster_leftovers().is_empty(),
        "a killed run leaves its cluster running"
    );

    let output = project.kmatrix(&["run", "--resume", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    let verdicts: Vec<(&str, Verdict)> = cells
        .iter()
        .map(|c| (c.version.as_str(), c.verdict))
        .collect();
    assert!(
        verdicts.contains(&("v0.8.4", Verdict::Pass)),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("v0.8.5", Verdict::Crash)),
        "{verdicts:?}"
    );
    assert_eq!(cluster_leftovers(), Vec::<String>::new());
    assert_eq!(kube_chains(), 0);
}

/// kind needs a Docker engine, a `kind` binary and its node image from a
/// registry: none of that can be had here, and the cells say which.
#[test]
fn kind_cells_are_unavailable_with_the_reason() {
    let project = project_with(&["ollama-mptcp"]);
    let out = project.root().join("out");
    let started = Instant::now();
    let output = project.kmatrix(&[
        "run",
        "--scenario",
        "ollama-mptcp",
        "--kernel",
        "kind",
        "--version",
        "v0.5.13",
        "--out",
        out.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    // baseline, godebug-multipathtcp-0 and the Kubernetes-only kube-proxy-ipvs.
    assert_eq!(cells.len(), 3, "{cells:#?}");
    for cell in &cells {
        assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:#?}");
        assert!(
            cell.signature.contains("Docker engine")
                || cell.signature.contains("node image kindest/node"),
            "{}",
            cell.signature
        );
    }
    eprintln!(
        "kind cells unavailable after {:.1} s: {}",
        took.as_secs_f64(),
        cells[0].signature
    );
}

/// The seed's situation exactly: kube-ovn-cni's DaemonSet on Ubuntu
/// 22.04's kernel (5.15.0-25), on the local cluster kmatrix starts inside
/// that kernel's QEMU guest (`ubuntu-22.04+k8s`). v1.14.0 (Go 1.24: its
/// TPROXY listener is MPTCP) crash-loops on the `IP_TRANSPARENT` line; the
/// `GODEBUG=multipathtcp=0` workaround and v1.13.14 (Go 1.23) run.
/// kube-vip v0.8.5's DaemonSet panics there as on the host.
/// A second cluster of the same kernel runs kube-proxy in IPVS mode (which
/// this host's kernel lacks) for ollama's `kube-proxy-ipvs` variant: its
/// Service is reached through IPVS.
#[test]
fn a_cluster_inside_ubuntu_22_04s_guest_reproduces_the_crash_loop() {
    let project = project_with(&["kube-ovn-tproxy", "kube-vip-cidr", "ollama-mptcp"]);
    let out = project.root().join("out");
    let output = project.kmatrix(&[
        "run",
        "--scenario",
        "kube-ovn-tproxy",
        "--scenario",
        "kube-vip-cidr",
        "--scenario",
        "ollama-mptcp",
        "--kernel",
        "ubuntu-22.04+k8s",
        "--version",
        "v1.14.0",
        "--version",
        "v1.13.14",
        "--version",
        "v0.8.5",
        "--version",
        "v0.5.13",
        "--variant",
        "baseline",
        "--variant",
        "godebug-multipathtcp-0",
        "--variant",
        "kube-proxy-ipvs",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    // kube-ovn-tproxy 2 × 2, kube-vip-cidr 1, ollama 3.
    assert_eq!(cells.len(), 8, "{cells:#?}");

    let crashed = cell(&cells, "kube-ovn-tproxy", "v1.14.0", "baseline");
    assert_eq!(crashed.verdict, Verdict::Crash, "{crashed:#?}");
    assert!(
        crashed
            .kernel_release
            .as_deref()
            .is_some_and(|r| r.starts_with("5.15.0-25")),
        "the pods ran on {:?}",
        crashed.kernel_release
    );
    // 5.15 has every cgroup v1 controller: the node mounts v1, as the host.
    assert_eq!(
        crashed.facts.get("cluster.cgroup").map(String::as_str),
        Some("v1"),
        "{:#?}",
        crashed.facts
    );
    let rollout = probe(crashed, "rollout");
    assert!(
        rollout
            .stderr
            .contains("set socket option: IP_TRANSPARENT: operation not supported"),
        "{rollout:#?}"
    );
    assert!(rollout.stderr.contains("restarted"), "{rollout:#?}");
    assert!(
        crashed
            .facts
            .get("cluster")
            .is_some_and(|c| c.contains("guest")),
        "{:#?}",
        crashed.facts
    );
    for (version, variant) in [
        ("v1.14.0", "godebug-multipathtcp-0"),
        ("v1.13.14", "baseline"),
        ("v1.13.14", "godebug-multipathtcp-0"),
    ] {
        let ran = cell(&cells, "kube-ovn-tproxy", version, variant);
        assert_eq!(ran.verdict, Verdict::Pass, "{ran:#?}");
        assert!(
            probe(ran, "rollout")
                .stdout
                .contains("tproxy listener ready"),
            "{ran:#?}"
        );
    }
    // kube-vip v0.8.5's DaemonSet on the guest's kernel: the same panic.
    let vip = cell(&cells, "kube-vip-cidr", "v0.8.5", "baseline");
    assert_eq!(vip.verdict, Verdict::Crash, "{vip:#?}");
    assert!(vip.signature.contains("index out of range"), "{vip:#?}");
    assert_eq!(
        vip.kernel_release
            .as_deref()
            .map(|r| r.starts_with("5.15.")),
        Some(true)
    );

    // ollama v0.5.13 (an MPTCP listener) through its Service, with
    // kube-proxy's iptables rules and, on a cluster of its own, IPVS.
    for (variant, proxier) in [("baseline", "iptables"), ("kube-proxy-ipvs", "ipvs")] {
        let ollama = cell(&cells, "ollama-mptcp", "v0.5.13", variant);
        assert_eq!(
            ollama.facts.get("kube-proxy").map(String::as_str),
            Some(proxier),
            "{ollama:#?}"
        );
        let service = probe(ollama, "service-clusterip");
        assert!(
            service.stdout.contains("ollama reachable at 10.97."),
            "{service:#?}"
        );
    }

    // One boot per kube-proxy mode; their logs kept; no guest left running.
    let boot = out.join("boots").join("ubuntu-22.04+k8s-1");
    for log in ["console.log", "cluster/node.log", "cluster/ready.txt"] {
        assert!(boot.join(log).is_file(), "no {log} in {}", boot.display());
    }
    assert!(!out.join("boots").join("ubuntu-22.04+k8s-2").exists());
    assert!(out
        .join("boots")
        .join("ubuntu-22.04+k8s+kube-proxy-ipvs-1")
        .join("cluster/ready.txt")
        .is_file());
    let node_log = fs::read_to_string(boot.join("cluster/node.log")).unwrap();
    assert!(node_log.contains("[kubelet]"), "{node_log}");
    assert!(!boot.join("qemu.pid").exists());
    eprintln!(
        "{}",
        fs::read_to_string(boot.join("cluster/ready.txt")).unwrap()
    );
}

/// Debian trixie's 6.12 has no cgroup v1 `memory` or `cpuset` (its
/// CONFIG_MEMCG_V1 and CONFIG_CPUSETS_V1 are off): the kubelet stopped on
/// "Following Cgroup subsystem not mounted: [cpuset memory]" when the
/// guest node mounted v1 only. The node now probes v1 and mounts cgroup v2
/// with its controllers delegated; kube-ovn v1.14.0's TPROXY listener runs
/// there (6.12 has MPTCP's IP_TRANSPARENT).
#[test]
fn a_cluster_inside_a_kernel_without_cgroup_v1_memory_runs_on_cgroup_v2() {
    let project = project_with(&["kube-ovn-tproxy"]);
    let out = project.root().join("out");
    let output = project.kmatrix(&[
        "run",
        "--scenario",
        "kube-ovn-tproxy",
        "--kernel",
        "debian-6.12+k8s",
        "--version",
        "v1.14.0",
        "--variant",
        "baseline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1, "{cells:#?}");
    let ran = cell(&cells, "kube-ovn-tproxy", "v1.14.0", "baseline");
    assert_eq!(ran.verdict, Verdict::Pass, "{ran:#?}");
    assert!(
        ran.kernel_release
            .as_deref()
            .is_some_and(|r| r.starts_with("6.12.")),
        "{ran:#?}"
    );
    assert_eq!(
        ran.facts.get("cluster.cgroup").map(String::as_str),
        Some("v2"),
        "{:#?}",
        ran.facts
    );
    assert_eq!(
        ran.facts.get("kubernetes"),
        Some(&kubernetes_release()),
        "{:#?}",
        ran.facts
    );
    assert!(
        probe(ran, "rollout")
            .stdout
            .contains("tproxy listener ready"),
        "{ran:#?}"
    );
    let node_log = fs::read_to_string(
        out.join("boots")
            .join("debian-6.12+k8s-1")
            .join("cluster/node.log"),
    )
    .unwrap();
    assert!(
        node_log.contains("kmatrix-node: cgroup v2 (this kernel has no v1 memory or cpuset)"),
        "{node_log}"
    );
}

/// The second release of images/kubernetes.toml (`[[release]]`).
fn second_release() -> String {
    let text = fs::read_to_string(repo_root().join("images/kubernetes.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["release"].as_array().unwrap()[0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `--kubernetes` builds the run's clusters from another release: the API
/// server itself says which (the cell's `kubernetes` fact is its
/// `/version`), run.json keeps the choice, the cells have ids of their own,
/// and a resume keeps the release the run started with.
#[test]
fn a_second_release_is_chosen_with_kubernetes_and_kept_by_resume() {
    let release = second_release();
    assert_ne!(release, kubernetes_release());
    let project = project_with(&["kube-ovn-tproxy"]);
    let out = project.root().join("out");
    let select = [
        "--scenario",
        "kube-ovn-tproxy",
        "--kernel",
        "k8s-local",
        "--version",
        "v1.14.0",
        "--variant",
        "baseline",
    ];
    let mut args = vec![
        "run",
        "--kubernetes",
        &release,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(select);
    let output = project.kmatrix(&args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 1, "{cells:#?}");
    let ran = cell(&cells, "kube-ovn-tproxy", "v1.14.0", "baseline");
    assert_eq!(ran.verdict, Verdict::Pass, "{ran:#?}");
    assert_eq!(ran.facts.get("kubernetes"), Some(&release), "{ran:#?}");
    let info: RunInfo = serde_json::from_slice(&fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(info.kubernetes.as_ref(), Some(&release));
    assert_eq!(
        info.selection.as_ref().and_then(|s| s.kubernetes.as_ref()),
        Some(&release)
    );

    // The default release plans the same cell under another id.
    let mut plan = vec!["plan"];
    plan.extend(select);
    let planned = text(&project.kmatrix(&plan));
    assert!(!planned.contains(ran.cell_id.as_str()), "{planned}");

    // A resume is the run as started: another release is refused, naming
    // the run's; without --kubernetes it finishes (nothing left to run).
    let other = kubernetes_release();
    let refused = project.kmatrix(&[
        "run",
        "--resume",
        out.to_str().unwrap(),
        "--kubernetes",
        &other,
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("this run was started with --kubernetes {release}")),
        "{}",
        text(&refused)
    );
    let resumed = project.kmatrix(&["run", "--resume", out.to_str().unwrap()]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("1 already in"),
        "{}",
        text(&resumed)
    );
    assert_eq!(read_cells(&out).len(), 1);
}
