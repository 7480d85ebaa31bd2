//! Reports from a handmade run (every verdict kind, a guest that printed
//! `<script>`): snapshots of the Markdown and JUnit outputs, HTML
//! escaping checked in a real headless Chromium, and diff exit statuses.

mod common;

use common::{copy_tree, repo_root, text, TempProject};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kmatrix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(repo_root())
        .args(args)
        .output()
        .expect("kmatrix runs")
}

fn sample_run() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/sample"),
        &run,
    );
    (dir, run)
}

fn report(run: &Path, format: &str) -> String {
    let output = kmatrix(&["report", run.to_str().unwrap(), "--format", format]);
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The reports of the sample run, as insta snapshots (`tests/snapshots/`).
/// A change on purpose: `INSTA_UPDATE=always cargo nextest run -E 'test(snapshot)'`
/// (or `cargo insta review`), then read the diff before committing it.
#[test]
fn markdown_and_junit_match_their_snapshots() {
    let (_dir, run) = sample_run();
    insta::assert_snapshot!("compatibility.md", report(&run, "markdown"));
    insta::assert_snapshot!("matrix.md", report(&run, "matrix-markdown"));
    insta::assert_snapshot!("junit.xml", report(&run, "junit"));
}

#[test]
fn junit_marks_each_verdict_kind() {
    let (_dir, run) = sample_run();
    let xml = report(&run, "junit");
    let element = |name: &str, kind: &str| {
        xml.lines().any(|line| {
            line.trim_start().starts_with(&format!("<{name} "))
                && line.contains(&format!("type=\"{kind}\""))
        })
    };
    assert!(element("failure", "fail"), "{xml}");
    assert!(element("failure", "crash"), "{xml}");
    assert!(element("flakyFailure", "flaky"), "{xml}");
    assert!(element("error", "infra-error"), "{xml}");
    assert!(xml.contains("(passed 2, failed 1)"));
    assert!(xml.contains("<skipped message=\"unavailable: no network to"));
    assert!(xml.contains("<property name=\"kernel\" value=\"debian-6.1\"/>"));
    assert!(xml.contains("&lt;script&gt;alert(&apos;guest&apos;)&lt;/script&gt;"));
    assert!(!xml.contains("<script>"));
}

#[test]
fn html_escapes_what_guests_printed_and_renders_in_chromium() {
    let (dir, run) = sample_run();
    let html = report(&run, "html");
    assert!(
        html.contains("&lt;script&gt;"),
        "the signature is shown, escaped"
    );
    assert!(
        !html.contains("<script"),
        "no script element at all: the page has none of its own"
    );
    assert!(!html.contains("<img src=x"));
    assert!(
        html.contains(r#"<th class="fidelity stand-in" title="a program written here; kube-ovn-cni needs a Kubernetes API server">stand-in</th>"#),
        "every row says what ran, and why a stand-in: {html}"
    );
    let page = dir.path().join("report.html");
    fs::write(&page, &html).unwrap();

    let chromium = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("Debian's chromium must be installed (scripts/setup.sh installs it)")
    };
    let dom = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("kube-ovn-tproxy"),
        "the page rendered: {dom:.300}"
    );
    assert!(
        !dom.contains("<script") && !dom.contains("<img"),
        "guest text became markup"
    );
    let shot = dir.path().join("report.png");
    let output = chromium(&[
        "--window-size=1400,900",
        &format!("--screenshot={}", shot.display()),
    ]);
    let png = fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", text(&output)));
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 10_000, "a blank page would be tiny");
}

#[test]
fn diff_exit_statuses_gate_ci() {
    let (dir, run) = sample_run();
    let same = kmatrix(&["diff", run.to_str().unwrap(), run.to_str().unwrap()]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));

    // Make v1.13.14 baseline on debian-6.1 fail in a copy: one regression.
    let worse = dir.path().join("worse");
    copy_tree(&run, &worse);
    let cells = fs::read_to_string(worse.join("cells.jsonl")).unwrap();
    let changed: Vec<String> = cells
        .lines()
        .map(|l| {
            if l.contains("\"0000000000000005\"") {
                l.replace("\"verdict\": \"pass\"", "\"verdict\": \"fail\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    fs::write(worse.join("cells.jsonl"), changed.join("\n") + "\n").unwrap();
    let regressed = kmatrix(&["diff", run.to_str().unwrap(), worse.to_str().unwrap()]);
    assert_eq!(regressed.status.code(), Some(1), "{}", text(&regressed));
    assert!(String::from_utf8_lossy(&regressed.stdout).contains("Regressions (1)"));
    let md = kmatrix(&[
        "diff",
        "--format",
        "markdown",
        run.to_str().unwrap(),
        worse.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&md.stdout).contains("### Regressions"));

    let missing = kmatrix(&["diff", run.to_str().unwrap(), "/nonexistent/run"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    let usage = kmatrix(&["diff", run.to_str().unwrap()]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));

    let versions = kmatrix(&[
        "diff",
        "--versions",
        "v1.13.14",
        "v1.14.0",
        run.to_str().unwrap(),
    ]);
    assert_eq!(versions.status.code(), Some(1));
    let said = String::from_utf8_lossy(&versions.stdout);
    assert!(
        said.contains("v1.14.0 regresses on debian-5.10-mptcp")
            && said.contains("fixed by godebug-multipathtcp-0"),
        "{said}"
    );
}

/// `results/COMPATIBILITY.md` is generated from the committed baseline; a
/// stale copy fails CI. Regenerate with `just docs`.
#[test]
fn committed_compatibility_table_is_fresh() {
    let baseline = repo_root().join("results/baseline");
    let fresh = report(&baseline, "markdown");
    let committed = fs::read_to_string(repo_root().join("results/COMPATIBILITY.md"))
        .expect("results/COMPATIBILITY.md is committed");
    assert!(
        committed == fresh,
        "results/COMPATIBILITY.md is stale: run `just docs` (kmatrix report results/baseline --format markdown -o results/COMPATIBILITY.md)"
    );
}

/// `kmatrix baseline accept RUN`: the run becomes results/baseline, the
/// docs table is exactly what `report --format markdown` makes of it (what
/// CI checks), the diff against the old baseline is printed, and an
/// unfinished run is refused.
#[test]
fn baseline_accept_makes_the_baseline_and_the_docs_table_agree() {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-ovn-tproxy"));
    let sample = repo_root().join("harness/tests/fixtures/runs/sample");
    let first = project.kmatrix(&["baseline", "accept", sample.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let baseline = project.root().join("results/baseline");
    assert_eq!(
        fs::read(baseline.join("cells.jsonl")).unwrap(),
        fs::read(sample.join("cells.jsonl")).unwrap()
    );
    assert!(baseline.join("report.html").is_file());
    let docs = fs::read_to_string(project.root().join("results/COMPATIBILITY.md")).unwrap();
    // As CI renders it: from the project's root.
    let rendered = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .current_dir(project.root())
        .args(["report", "results/baseline", "--format", "markdown"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rendered.stdout), docs);

    // Accepting again prints the diff against the baseline it replaces.
    let again = project.kmatrix(&["baseline", "accept", sample.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("unchanged"), "{}", text(&again));

    // An unfinished run is refused, and the baseline stays.
    let unfinished = project.root().join("unfinished");
    fs::create_dir_all(&unfinished).unwrap();
    fs::copy(sample.join("cells.jsonl"), unfinished.join("cells.jsonl")).unwrap();
    let info = fs::read_to_string(sample.join("run.json")).unwrap();
    let mut info: serde_json::Value = serde_json::from_str(&info).unwrap();
    info["finished"] = serde_json::Value::Null;
    fs::write(unfinished.join("run.json"), info.to_string()).unwrap();
    let refused = project.kmatrix(&["baseline", "accept", unfinished.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("--resume"), "{}", text(&refused));
}

/// What a reader of a wide report needs without hunting: counts at the
/// top, a contents list, the header row and version column kept in view
/// (sticky, checked in the page Chromium rendered), a failure's text in its
/// cell, a link per cell, and which baseline it is compared with and when.
#[test]
fn the_html_report_keeps_its_bearings() {
    let (dir, run) = sample_run();
    let baseline = dir.path().join("baseline");
    copy_tree(&run, &baseline);
    let html = {
        let output = kmatrix(&[
            "report",
            run.to_str().unwrap(),
            "--format",
            "html",
            "--baseline",
            baseline.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let started = fs::read_to_string(run.join("run.json")).unwrap();
    let started: serde_json::Value = serde_json::from_str(&started).unwrap();
    let started = started["started"].as_str().unwrap();
    assert!(
        html.contains(&format!(
            "Against {} (run started {started})",
            baseline.display()
        )),
        "the baseline is named with its date"
    );
    assert!(
        html.contains(r#"<p class="counts">"#) && html.contains("1 crash"),
        "counts"
    );
    assert!(html.contains("<nav><strong>Scenarios</strong>"), "contents");
    assert!(html.contains(r##"<a href="#kube-ovn-tproxy">kube-ovn-tproxy</a>"##));
    assert!(
        html.contains(r#"id="cell-0000000000000005""#),
        "per-cell anchors"
    );
    assert!(html.contains(r##"href="#cell-0000000000000005""##));
    assert!(
        html.contains(r#"<p class="brief""#),
        "failure text without a click"
    );
    assert!(html.contains("thead th { position: sticky; top: 0;"));
    assert!(
        html.contains("tbody th:first-child, thead th:first-child { position: sticky; left: 0;")
    );

    // Rendered: the header cell is sticky in the page Chromium computed.
    let page = dir.path().join("report.html");
    fs::write(&page, &html).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.html");
    fs::write(
        &probe,
        html.replace(
            "</body>",
            "<script>document.body.setAttribute('data-sticky', getComputedStyle(document.querySelector('thead th')).position + '/' + getComputedStyle(document.querySelector('tbody th')).position);</script></body>",
        ),
    )
    .unwrap();
    let dom = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", probe.display()))
        .output()
        .expect("Debian's chromium (scripts/setup.sh installs it)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains(r#"data-sticky="sticky/sticky""#), "{dom:.400}");
}
