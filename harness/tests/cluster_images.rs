//! A version's real image on the local cluster (Kubernetes built from its
//! module, `k8s-local`): kmatrix pulls it from a private registry (Debian's
//! docker-registry on 127.0.0.1 behind htpasswd) with the login from the
//! user's auth file, pins its digest in the lock, and loads it into the
//! node's containerd (the node never pulls). The tag then moves to another
//! image: the cluster still runs the pinned one, and the lock is untouched.
//! The login never reaches the results.

mod common;

use common::{read_cells, static_program_from, LocalRegistry, TempProject};
use kmatrix::sources::oci::build::{write_layout, ImageSpec};
use kmatrix_metadata::Verdict;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const USER: &str = "kmx";
const PASSWORD: &str = "s3cret-of-the-test";

/// An image whose program prints `line` and then waits, as a server does.
fn serving_image(dir: &Path, line: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let program = static_program_from(
        dir,
        &format!(
            "#include <stdio.h>\n#include <unistd.h>\nint main(void) {{ puts(\"{line}\"); fflush(stdout); for (;;) pause(); }}\n"
        ),
    );
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::copy(program, root.join("web")).unwrap();
    let layout = dir.join("layout");
    write_layout(
        &root,
        &ImageSpec {
            entrypoint: vec!["/web".into()],
            ..Default::default()
        },
        &layout,
        "v1",
    )
    .unwrap();
    layout
}

/// skopeo copies the layout into the registry, logging in as the user.
fn push(layout: &Path, reference: &str) {
    let output = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("Debian's skopeo (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scenario whose one version is `reference`, deployed as a Deployment.
fn web_scenario(project: &TempProject, reference: &str) {
    let dir = project.root().join("scenarios/web");
    fs::create_dir_all(dir.join("kubernetes")).unwrap();
    fs::write(
        dir.join("scenario.toml"),
        format!(
            r#"[scenario]
id = "web"
component = "web"
title = "a private registry's image on a cluster"
issue = "https://example.invalid/web"
summary = "The version is an image from a registry that wants a login."
kernels = ["k8s-local"]

[[version]]
id = "v1"
image = "{reference}"
built_from = "the test's image, pushed to a registry behind htpasswd"

[[variant]]
id = "baseline"
description = "as shipped"

[[probe]]
id = "version"
run = ["{{artifact}}/web"]
timeout_secs = 10
pass_stdout = "serving"

[kubernetes]
rollout = ["deployment/web"]
timeout_secs = 60
ready_log = "web (one|two) serving"
"#
        ),
    )
    .unwrap();
    fs::write(
        dir.join("kubernetes/web.yaml"),
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {{image}}
          imagePullPolicy: Never
"#,
    )
    .unwrap();
}

/// `kmatrix run --scenario web --kernel k8s-local --out OUT` with `env`.
fn run_web(
    project: &TempProject,
    env: &[(&str, &Path)],
    out: &Path,
) -> (Vec<kmatrix_metadata::CellRecord>, std::process::Output) {
    let output = project.kmatrix_with_env(
        env,
        &[
            "run",
            "--scenario",
            "web",
            "--kernel",
            "k8s-local",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    (read_cells(out), output)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walkdir(dir) {
        if fs::read(&entry)
            .map(|b| String::from_utf8_lossy(&b).contains(needle))
            .unwrap_or(false)
        {
            found.push(entry);
        }
    }
    found
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_private_registry_image_runs_pinned_on_the_local_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 5).unwrap();
    fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
    let registry = LocalRegistry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: kmatrix\n    path: {}\n",
        htpasswd.display()
    ));
    let reference = registry.reference("kmatrix-test/web:v1");
    push(
        &serving_image(&dir.path().join("one"), "web one serving"),
        &reference,
    );

    // Without a login the registry is out of reach, and the run says why.
    let project = TempProject::new();
    web_scenario(&project, &reference);
    let empty_config = dir.path().join("no-login");
    fs::create_dir_all(&empty_config).unwrap();
    let refused = dir.path().join("refused");
    let no_auth_file = empty_config.join("auth.json");
    let (cells, output) = run_web(
        &project,
        &[
            ("DOCKER_CONFIG", &empty_config),
            ("REGISTRY_AUTH_FILE", &no_auth_file),
        ],
        &refused,
    );
    assert_eq!(cells[0].verdict, Verdict::Unavailable, "{output:?}");
    assert!(
        cells[0].signature.contains("wants a login") && cells[0].signature.contains("docker login"),
        "{:?}",
        cells[0].signature
    );

    // With the user's login (as `docker login` saves it), it runs.
    let config = dir.path().join("docker");
    fs::create_dir_all(&config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    fs::write(
        config.join("config.json"),
        format!(
            "{{\"auths\":{{\"127.0.0.1:{}\":{{\"auth\":\"{auth}\"}}}}}}",
            registry.port
        ),
    )
    .unwrap();
    let env = [
        ("DOCKER_CONFIG", config.as_path()),
        ("REGISTRY_AUTH_FILE", no_auth_file.as_path()),
    ];
    let first = dir.path().join("first");
    let (cells, output) = run_web(&project, &env, &first);
    let cell = &cells[0];
    assert_eq!(cell.verdict, Verdict::Pass, "{cell:#?}\n{output:?}");
    assert!(
        cell.probes[0].stdout.contains("web one serving"),
        "{cell:#?}"
    );
    let lock_path = project.root().join("images/kmatrix.lock");
    let lock = fs::read_to_string(&lock_path).unwrap();
    let artifact = cell.facts.get("artifact").cloned().unwrap_or_default();
    let digest = artifact
        .split('(')
        .nth(1)
        .map(|d| d.trim_end_matches(')').to_string())
        .unwrap_or_default();
    assert!(digest.starts_with("sha256:"), "{artifact}");
    assert!(
        lock.contains(&format!("image:{reference}")) && lock.contains(&digest),
        "{lock}"
    );
    for secret in [PASSWORD.to_string(), auth.clone()] {
        assert!(
            files_holding(&first, &secret).is_empty(),
            "the login leaked into the results"
        );
        assert!(!lock.contains(&secret));
    }

    // The tag moves to another image: the cluster still runs the pinned one.
    push(
        &serving_image(&dir.path().join("two"), "web two serving"),
        &reference,
    );
    let second = dir.path().join("second");
    let (cells, _) = run_web(&project, &env, &second);
    let cell = &cells[0];
    assert_eq!(cell.verdict, Verdict::Pass, "{cell:#?}");
    assert!(
        cell.probes[0].stdout.contains("web one serving"),
        "{cell:#?}"
    );
    assert!(!cell.probes[0].stdout.contains("web two"), "{cell:#?}");
    assert_eq!(cell.facts.get("artifact"), Some(&artifact));
    assert_eq!(
        fs::read_to_string(&lock_path).unwrap(),
        lock,
        "the lock is untouched"
    );
}
