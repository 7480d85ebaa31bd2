//! A malformed scenario stops kmatrix before anything is fetched or booted,
//! with one screen naming the file, the line and the fix, and exit status 2.

mod common;

use common::{fixture, text, TempProject};
use std::fs;

fn broken(edit: impl FnOnce(&std::path::Path)) -> (TempProject, std::process::Output) {
    let project = TempProject::new();
    let folder = project.add_scenario(&fixture("faults"));
    edit(&folder);
    let output = project.kmatrix(&["plan"]);
    (project, output)
}

fn assert_diagnostic(output: &std::process::Output, line: usize, needles: &[&str]) {
    let all = text(output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("scenario.toml:{line}:")),
        "expected line {line}: {all}"
    );
    assert!(stderr.contains("fix: "), "{all}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?}: {all}");
    }
    assert!(stderr.lines().count() <= 20, "not one screen: {all}");
}

fn rewrite(folder: &std::path::Path, from: &str, to: &str) {
    let path = folder.join("scenario.toml");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "fixture lacks {from:?}");
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn line_of(folder: &std::path::Path, needle: &str) -> usize {
    fs::read_to_string(folder.join("scenario.toml"))
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

#[test]
fn bad_toml_names_the_line() {
    let mut line = 0;
    let (_p, output) = broken(|folder| {
        rewrite(folder, "timeout_secs = 4", "timeout_secs = = 4");
        line = line_of(folder, "timeout_secs = = 4");
    });
    assert_diagnostic(&output, line, &["scenarios/faults/scenario.toml"]);
}

#[test]
fn unknown_kernel_lists_the_known_ones() {
    let mut line = 0;
    let (_p, output) = broken(|folder| {
        rewrite(
            folder,
            "kernels = [\"debian-6.1\"]",
            "kernels = [\"debian-9\"]",
        );
        line = line_of(folder, "debian-9");
    });
    assert_diagnostic(
        &output,
        line,
        &[
            "unknown kernel id `debian-9`",
            "debian-6.1",
            "images/kernels.toml",
        ],
    );
}

#[test]
fn missing_reproducer_says_where_it_looked() {
    let mut line = 0;
    let (_p, output) = broken(|folder| {
        rewrite(folder, "source = \"reproducer\"", "source = \"nowhere\"");
        line = line_of(folder, "source = \"nowhere\"");
    });
    assert_diagnostic(&output, line, &["nowhere", "no .go file"]);
}

#[test]
fn unknown_field_and_bad_regex_are_caught() {
    let mut line = 0;
    let (_p, output) = broken(|folder| {
        rewrite(
            folder,
            "pass_stdout = \"fault fixture: ok\"",
            "pass_stdout = \"(unclosed\"",
        );
        line = line_of(folder, "(unclosed");
    });
    assert_diagnostic(&output, line, &["invalid regular expression"]);

    let (_p, output) = broken(|folder| {
        rewrite(
            folder,
            "timeout_secs = 4",
            "timeout_secs = 4\ntimeout_sec = 4",
        );
        line = line_of(folder, "timeout_sec = 4");
    });
    assert_diagnostic(&output, line, &["unknown field `timeout_sec`"]);
}

#[test]
fn unknown_kernel_on_the_command_line_is_exit_2() {
    let project = TempProject::new();
    project.add_scenario(&fixture("faults"));
    let output = project.kmatrix(&["plan", "--kernel", "ubuntu-99.04"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown kernel id `ubuntu-99.04`"));
}

#[test]
fn the_repository_scenarios_are_valid() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(common::repo_root())
        .arg("list")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("kube-ovn-tproxy"));
}

/// A scenario's Kubernetes manifests are handlebars templates: one that does
/// not render names its file; one that does is rendered per version and
/// variant into the plan (the variant's env in the container).
#[test]
fn kubernetes_templates_render_per_variant_or_name_the_file() {
    let project = TempProject::new();
    let folder = project.add_scenario(&common::repo_root().join("scenarios/ollama-mptcp"));
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(plan.contains("k8s-local"), "{plan}");

    let template = folder.join("kubernetes/ollama.yaml");
    let text_before = fs::read_to_string(&template).unwrap();
    fs::write(&template, text_before.replace("{{image}}", "{{imag}}")).unwrap();
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("kubernetes/ollama.yaml"), "{all}");
    assert!(all.contains("imag"), "{all}");

    fs::write(&template, text_before.replace("{{image}}", "{{#if}")).unwrap();
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(
        all.contains("ollama.yaml") && all.contains("handlebars"),
        "{all}"
    );
}

/// A variant that sets kube-proxy's mode (ollama-mptcp's `kube-proxy-ipvs`)
/// is planned only on Kubernetes environments; `<kernel>+k8s` ids are
/// derived for bootable kernels, and a wrong one names the fix; a bad mode
/// names its line.
#[test]
fn a_kube_proxy_variant_is_planned_only_on_clusters() {
    let project = TempProject::new();
    let folder = project.add_scenario(&common::repo_root().join("scenarios/ollama-mptcp"));
    let output = project.kmatrix(&[
        "plan",
        "--kernel",
        "debian-6.1",
        "--kernel",
        "k8s-local",
        "--kernel",
        "ubuntu-22.04+k8s",
        "--version",
        "v0.5.13",
    ]);
    let plan = text(&output);
    assert_eq!(output.status.code(), Some(0), "{plan}");
    let ipvs: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("kube-proxy-ipvs"))
        .collect();
    assert_eq!(ipvs.len(), 2, "{plan}");
    assert!(ipvs.iter().all(|l| !l.contains("debian-6.1")), "{plan}");
    // 3 kernels × 2 variants, and the IPVS variant on the 2 clusters.
    assert!(plan.contains("8 cells"), "{plan}");

    let output = project.kmatrix(&["plan", "--kernel", "docker+k8s"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("+k8s"), "{all}");

    let scenario = folder.join("scenario.toml");
    let before = fs::read_to_string(&scenario).unwrap();
    fs::write(
        &scenario,
        before.replace("kube_proxy = \"ipvs\"", "kube_proxy = \"ebpf\""),
    )
    .unwrap();
    let output = project.kmatrix(&["plan"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("ebpf") && all.contains("ipvs"), "{all}");
}

/// Mistakes `plan --check` used to call "runs here" and the run then met
/// as infra-errors: a misspelt placeholder, and `{service}` with no
/// container runtime in the guest. Both are exit 2 at plan time, with the
/// line and the fix.
#[test]
fn a_misspelt_placeholder_or_a_service_without_a_runtime_is_caught_at_plan_time() {
    let mut line = 0;
    let (_p, output) = broken(|folder| {
        rewrite(
            folder,
            "run = [\"{reproducer}\"]",
            "run = [\"{reproducr}\"]",
        );
        line = line_of(folder, "{reproducr}");
    });
    assert_diagnostic(
        &output,
        line,
        &["unknown placeholder `{reproducr}`", "{service}"],
    );

    let project = TempProject::new();
    let folder = project.add_scenario(&fixture("service-hang"));
    rewrite(&folder, "packages = [\"crun\"]", "packages = [\"busybox\"]");
    // The program the fixture runs (its test builds it); any file will do here.
    fs::write(folder.join("hang"), "").unwrap();
    let line = line_of(&folder, "run = [\"{service}\"]");
    let output = project.kmatrix(&["plan", "--check"]);
    assert_diagnostic(
        &output,
        line,
        &["no [guest] brings a container runtime", "crun"],
    );
}

/// A variant with `versions` (kube-vip-cidr's `vip-subnet-*`: a setting
/// only kube-vip's own v0.9+ builds read under that name) is planned only
/// with those versions; a version id the file does not define names the
/// line and the fix.
#[test]
fn a_variant_for_some_versions_is_planned_only_with_them() {
    let project = TempProject::new();
    let folder = project.add_scenario(&common::repo_root().join("scenarios/kube-vip-cidr"));
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    let plan = text(&output);
    assert_eq!(output.status.code(), Some(0), "{plan}");
    let subnet: Vec<&str> = plan.lines().filter(|l| l.contains("vip-subnet-")).collect();
    // kube-vip's own v0.9.1, v0.9.2, v1.0.0 × 2 vip_subnet variants.
    assert_eq!(subnet.len(), 6, "{plan}");
    assert!(
        subnet
            .iter()
            .all(|l| !l.contains("v0.8.") && !l.contains("v0.7.2")),
        "a stand-in version got a vip_subnet variant: {plan}"
    );
    assert!(
        plan.lines()
            .any(|l| l.contains("v0.8.9") && l.contains("baseline")),
        "{plan}"
    );

    rewrite(
        &folder,
        "\"v0.9.2\", \"v1.0.0\"]",
        "\"v0.9.3\", \"v1.0.0\"]",
    );
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    let line = line_of(&folder, "\"v0.9.3\"");
    assert!(all.contains(&format!("scenario.toml:{line}:")), "{all}");
    assert!(all.contains("v0.9.3") && all.contains("fix: "), "{all}");
}

/// `fails_on` names the scenario's `fail` signatures: another id (or a
/// crash signature) is refused naming the line and the ids it may use, and
/// without `ready_log` it is refused (it could never end a wait).
#[test]
fn fails_on_names_fail_signatures_and_needs_ready_log() {
    let project = TempProject::new();
    let folder = project.add_scenario(&common::repo_root().join("scenarios/kube-vip-cidr"));
    let plan = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    rewrite(
        &folder,
        "fails_on = [\"subnet-refused\"]",
        "fails_on = [\"mask-refused\"]",
    );
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    let line = line_of(&folder, "fails_on = [\"mask-refused\"]");
    assert!(all.contains(&format!("scenario.toml:{line}:")), "{all}");
    assert!(
        all.contains("`mask-refused`, which is no `fail` signature")
            && all.contains("here: subnet-refused"),
        "{all}"
    );

    rewrite(
        &folder,
        "fails_on = [\"mask-refused\"]",
        "fails_on = [\"subnet-refused\"]",
    );
    rewrite(&folder, "ready_log = ", "# ready_log = ");
    let output = project.kmatrix(&["plan", "--kernel", "k8s-local"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(
        all.contains("fails_on without ready_log") && all.contains("fix: "),
        "{all}"
    );
}
