//! The `docker` environment with the real Docker engine (started by the
//! set-up): cells in containers on the host's kernel beside a QEMU guest's,
//! real artifacts there too, `unavailable` when no engine answers, and the
//! engine as an image source for guests — an image it has, and one it
//! pulls with the user's saved login from a registry kmatrix alone cannot
//! read (a real registry server in a container, run with testcontainers).

mod common;

use common::{fact, read_cells, repo_root, static_program, text, TempProject, TPROXY_TWO_BY_TWO};
use kmatrix_metadata::{CellRecord, RunInfo, Verdict};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::GenericImage;

fn run_ok(project: &TempProject, args: &[&str]) -> Output {
    let output = project.kmatrix(args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    output
}

fn run_info(out: &Path) -> RunInfo {
    serde_json::from_slice(&fs::read(out.join("run.json")).unwrap()).unwrap()
}

/// The engine must be there: `scripts/test.sh` starts it.
fn docker(args: &[&str]) -> Output {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI (Debian's docker.io, installed by scripts/setup.sh)");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        text(&output)
    );
    output
}

fn host_release() -> String {
    let output = Command::new("uname").arg("-r").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// What the host kernel's own config says of `CONFIG_<symbol>`.
fn host_config_has(symbol: &str) -> Option<bool> {
    let output = Command::new("sh")
        .args(["-c", "zcat /proc/config.gz"])
        .output()
        .ok()?;
    let config = String::from_utf8_lossy(&output.stdout);
    if config.is_empty() {
        return None;
    }
    Some(
        config
            .lines()
            .any(|l| l == format!("CONFIG_{symbol}=y") || l == format!("CONFIG_{symbol}=m")),
    )
}

fn on<'a>(cells: &'a [CellRecord], kernel: &str) -> Vec<&'a CellRecord> {
    cells.iter().filter(|c| c.kernel == kernel).collect()
}

#[test]
fn docker_is_one_more_column_beside_a_guest() {
    let project = TempProject::new();
    for scenario in ["kube-ovn-tproxy", "ollama-mptcp", "kube-vip-cidr"] {
        project.add_scenario(&repo_root().join("scenarios").join(scenario));
    }
    let out = project.root().join("out");
    run_ok(
        &project,
        &[
            "run",
            "--kernel",
            "docker",
            "--kernel",
            "debian-6.1",
            // Two versions and two variants of each scenario.
            "--version",
            "v1.13.14",
            "--version",
            "v1.14.0",
            "--version",
            "v0.4.7",
            "--version",
            "v0.5.13",
            "--version",
            "v0.8.4",
            "--version",
            "v0.8.5",
            "--version",
            "v0.8.9",
            "--variant",
            "baseline",
            "--variant",
            "godebug-multipathtcp-0",
            "--variant",
            "vip-cidr-32-128",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let cells = read_cells(&out);
    let in_containers = on(&cells, "docker");
    assert_eq!(in_containers.len(), 14, "{cells:#?}");
    let release = host_release();
    for cell in &in_containers {
        assert_ne!(cell.verdict, Verdict::InfraError, "{cell:#?}");
        assert_eq!(cell.backend.as_deref(), Some("docker"), "{cell:#?}");
        assert!(
            cell.emulator
                .as_deref()
                .unwrap_or("")
                .starts_with("Docker Engine"),
            "{cell:#?}"
        );
        if cell.scenario == "kube-vip-cidr" {
            // Its stand-in needs a dummy interface: a module a container
            // cannot load, so the host kernel decides.
            if host_config_has("DUMMY") == Some(false) {
                assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:#?}");
                assert!(cell.signature.contains("dummy"), "{cell:#?}");
            }
            continue;
        }
        assert_eq!(cell.kernel_release.as_deref(), Some(release.as_str()));
        assert_eq!(fact(cell, "environment"), "container on the host's kernel");
        // Both kernels have MPTCP with IP_TRANSPARENT (5.17+): a verdict
        // means the same in a container as in a guest.
        let twin = cells
            .iter()
            .find(|c| {
                c.kernel == "debian-6.1"
                    && c.scenario == cell.scenario
                    && c.version == cell.version
                    && c.variant == cell.variant
            })
            .unwrap();
        assert_eq!(cell.verdict, twin.verdict, "{cell:#?}\n{twin:#?}");
        assert_eq!(cell.verdict, Verdict::Pass, "{cell:#?}");
    }
    let tproxy = in_containers
        .iter()
        .find(|c| {
            c.scenario == "kube-ovn-tproxy" && c.version == "v1.14.0" && c.variant == "baseline"
        })
        .unwrap();
    assert!(
        tproxy.probes[0].stdout.contains("socket protocol mptcp"),
        "Go 1.24's listener really is MPTCP on the host kernel: {tproxy:#?}"
    );
    let run = run_info(&out);
    let engine = run.container_engine.expect("run.json records the engine");
    assert_eq!(engine.host_kernel, release);
    assert!(engine.version.starts_with("Docker Engine"), "{engine:?}");
    let table = fs::read_to_string(out.join("compatibility.md")).unwrap();
    // Its own column, or folded with a guest's when every row reads the
    // same: either way the head names `docker` and the host's release.
    let head = table
        .lines()
        .find(|l| l.starts_with("| kube-ovn-cni version |"))
        .unwrap_or_default();
    assert!(
        head.contains("docker") && head.contains(&format!("`{release}`")),
        "the column is headed with the host's release: {table}"
    );
}

#[test]
fn no_engine_leaves_docker_unavailable_and_the_guests_untouched() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-ovn-tproxy"));
    let out = project.root().join("out");
    let started = std::time::Instant::now();
    let output = project.kmatrix_with_env(
        &[("DOCKER_HOST", Path::new("unix:///nonexistent/docker.sock"))],
        &[
            &["run", "--kernel", "docker", "--kernel", "debian-6.1"][..],
            &TPROXY_TWO_BY_TWO,
            &["--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    eprintln!("run without an engine took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    for cell in on(&cells, "docker") {
        assert_eq!(cell.verdict, Verdict::Unavailable, "{cell:#?}");
        assert!(
            cell.signature
                .contains("no Docker engine reachable at unix:///nonexistent/docker.sock"),
            "{cell:#?}"
        );
    }
    let guests = on(&cells, "debian-6.1");
    assert_eq!(guests.len(), 4);
    assert!(
        guests.iter().all(|c| c.verdict == Verdict::Pass),
        "{guests:#?}"
    );
    assert!(run_info(&out).container_engine.is_none());
}

#[test]
fn debian_caddy_packages_run_in_containers_too() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let out = project.root().join("out");
    run_ok(
        &project,
        &["run", "--kernel", "docker", "--out", out.to_str().unwrap()],
    );
    let cells = read_cells(&out);
    for version in ["v2.6.2", "v2.11.4"] {
        for variant in ["baseline", "godebug-multipathtcp-1"] {
            let cell = cells
                .iter()
                .find(|c| c.version == version && c.variant == variant)
                .unwrap();
            assert_eq!(cell.verdict, Verdict::Pass, "{cell:#?}");
            let served = &cell
                .probes
                .iter()
                .find(|p| p.probe_id == "clusterip-dnat")
                .unwrap()
                .stdout;
            // Only Go >= 1.24 asked for MPTCP makes an MPTCP listener.
            let expected = if version == "v2.11.4" && variant != "baseline" {
                "listener protocol mptcp"
            } else {
                "listener protocol tcp"
            };
            assert!(served.contains(expected), "{cell:#?}");
        }
    }
}

#[test]
fn kill_9_mid_run_then_resume_leaves_no_container_behind() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/caddy-mptcp"));
    let out = project.root().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(project.root())
        .args(["run", "--kernel", "docker", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The two image cells are unavailable at once; wait for a container's.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while read_cells(&out).len() < 3 {
        assert!(std::time::Instant::now() < until, "no cell finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = read_cells(&out).len();
    let label = format!(
        "label=io.kmatrix.run-dir={}",
        out.canonicalize().unwrap().display()
    );
    let left = docker(&["ps", "-aq", "--filter", &label]);
    assert!(
        !String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the killed run's container outlives it"
    );
    run_ok(&project, &["run", "--resume", out.to_str().unwrap()]);
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 6, "{cells:#?}");
    assert!(kept >= 3);
    let left = docker(&["ps", "-aq", "--filter", &label]);
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "the resume removed the stray and its own containers"
    );
}

/// A static program printing `line`, as an image built `FROM scratch` by
/// the engine from local files only, tagged `tag`.
fn image_of_a_static_program(dir: &Path, line: &str, tag: &str) {
    let context = dir.join("context");
    fs::create_dir_all(&context).unwrap();
    static_program(&context, line);
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\n",
    )
    .unwrap();
    docker(&["build", "-q", "-t", tag, context.to_str().unwrap()]);
}

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn an_image_only_the_engine_has_runs_in_a_guest_and_in_a_container() {
    let project = TempProject::new();
    let dir = tempfile::tempdir().unwrap();
    let line = format!("hello from the engine {}", unique());
    // Nothing listens on port 1: only the engine's copy can be had.
    let tag = format!("127.0.0.1:1/kmatrix-test/hello:{}", unique());
    image_of_a_static_program(dir.path(), &line, &tag);
    let out = project.root().join("out");
    run_ok(
        &project,
        &[
            "exec",
            "--kernel",
            "debian-6.1",
            "--kernel",
            "docker",
            "--image",
            &tag,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 2);
    for cell in &cells {
        assert_eq!(cell.verdict, Verdict::Pass, "{cell:#?}");
        assert!(cell.probes[0].stdout.contains(&line), "{cell:#?}");
    }
    let run = run_info(&out);
    assert_eq!(run.cache.from_engine, 1, "{:?}", run.cache);
    docker(&["rmi", &tag]);
}

/// Debian's reference registry as an image built from local files, asking
/// for a login (htpasswd: `user`:`password`).
fn registry_image(dir: &Path, user: &str, password: &str) -> (String, String) {
    let context = dir.join("registry");
    for folder in [
        "usr/bin",
        "lib/x86_64-linux-gnu",
        "lib64",
        "etc/docker/registry",
        "var/lib/registry",
        "tmp",
    ] {
        fs::create_dir_all(context.join(folder)).unwrap();
    }
    for file in [
        "usr/bin/docker-registry",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
    ] {
        fs::copy(Path::new("/").join(file), context.join(file)).unwrap();
    }
    fs::write(
        context.join("etc/docker/registry/config.yml"),
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\nauth:\n  htpasswd:\n    realm: kmatrix\n    path: /etc/docker/registry/htpasswd\n",
    )
    .unwrap();
    let hash = bcrypt::hash(password, 5).unwrap();
    fs::write(
        context.join("etc/docker/registry/htpasswd"),
        format!("{user}:{hash}\n"),
    )
    .unwrap();
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY . /\nENTRYPOINT [\"/usr/bin/docker-registry\", \"serve\", \"/etc/docker/registry/config.yml\"]\n",
    )
    .unwrap();
    let tag = unique();
    docker(&[
        "build",
        "-q",
        "-t",
        &format!("kmatrix-test/registry:{tag}"),
        context.to_str().unwrap(),
    ]);
    ("kmatrix-test/registry".into(), tag)
}

/// A registry behind a login (htpasswd), the login saved as `docker login`
/// saves it: kmatrix's own registry client pulls with it (HTTP basic
/// authentication); the engine's copy is not needed.
#[test]
fn a_private_registry_image_is_pulled_with_the_users_login() {
    let dir = tempfile::tempdir().unwrap();
    let (name, tag) = registry_image(dir.path(), "kmx", "s3cret");
    let registry = GenericImage::new(name.as_str(), tag.as_str())
        .with_exposed_port(5000.tcp())
        .with_wait_for(WaitFor::message_on_stderr("listening on"))
        .start()
        .expect("the registry container starts (testcontainers, real engine)");
    let port = registry.get_host_port_ipv4(5000.tcp()).unwrap();

    // The user's login, as `docker login` saves it without a helper.
    let docker_config = dir.path().join("docker-config");
    fs::create_dir_all(&docker_config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("kmx:s3cret");
    fs::write(
        docker_config.join("config.json"),
        format!("{{\"auths\":{{\"127.0.0.1:{port}\":{{\"auth\":\"{auth}\"}}}}}}"),
    )
    .unwrap();
    let line = format!("hello through a login {}", unique());
    let reference = format!("127.0.0.1:{port}/kmatrix-test/hello:1");
    image_of_a_static_program(dir.path(), &line, &reference);
    let pushed = Command::new("docker")
        .env("DOCKER_CONFIG", &docker_config)
        .args(["push", &reference])
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", text(&pushed));
    // Gone from the engine: kmatrix has to fetch it from the registry, with the login.
    docker(&["rmi", &reference]);

    let project = TempProject::new();
    let out = project.root().join("out");
    let output = project.kmatrix_with_env(
        &[("DOCKER_CONFIG", &docker_config)],
        &[
            "exec",
            "--kernel",
            "debian-6.1",
            "--image",
            &reference,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let cells = read_cells(&out);
    assert_eq!(cells[0].verdict, Verdict::Pass, "{:#?}", cells[0]);
    assert!(cells[0].probes[0].stdout.contains(&line));
    // Pinned by the registry's own manifest digest.
    assert!(
        fact(&cells[0], "artifact").contains(&format!("{reference} (sha256:")),
        "{:#?}",
        cells[0]
    );
    assert_eq!(
        run_info(&out).cache.from_engine,
        0,
        "pulled by kmatrix itself"
    );
    drop(registry);
    docker(&["rmi", &format!("{name}:{tag}")]);
}
