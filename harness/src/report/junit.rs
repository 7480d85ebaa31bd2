//! JUnit XML for CI dashboards (written by `quick-junit`, as nextest does):
//! one testsuite per scenario, one testcase per cell, with `kernel`,
//! `kernel_release`, `version`, `variant`, `cell_id` and `verdict` as
//! properties. fail/crash/timeout are failures, infra-error an error,
//! unavailable skipped, and a flaky cell a pass carrying `flakyFailure`
//! (Surefire's rerun format), so dashboards show it without turning red.

use super::ReportModel;
use anyhow::Result;
use kmatrix_metadata::{CellRecord, Verdict};
use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};
use std::collections::BTreeMap;
use std::time::Duration;

pub fn render(model: &ReportModel) -> Result<String> {
    let mut suites: BTreeMap<&str, Vec<&CellRecord>> = BTreeMap::new();
    for record in model.input.records {
        suites.entry(&record.scenario).or_default().push(record);
    }
    let mut report = Report::new("kmatrix");
    for (scenario, mut cells) in suites {
        // Kernels oldest to newest within each version and variant.
        cells.sort_by_cached_key(|c| {
            (
                c.version.clone(),
                c.variant.clone(),
                super::model::kernel_version_key(c.kernel_release.as_deref().unwrap_or("")),
                c.kernel.clone(),
            )
        });
        let mut suite = TestSuite::new(scenario);
        suite.set_time(Duration::from_millis(
            cells.iter().map(|c| c.duration_ms).sum(),
        ));
        suite.add_test_cases(cells.into_iter().map(testcase));
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

fn testcase(cell: &CellRecord) -> TestCase {
    let output: String = cell
        .probes
        .iter()
        .map(|p| format!("[{}] {}\n{}{}", p.probe_id, p.exit, p.stdout, p.stderr))
        .collect();
    let status = match cell.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail | Verdict::Crash | Verdict::Timeout => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_type(cell.verdict.as_str())
                .set_message(cell.signature.as_str())
                .set_description(output);
            status
        }
        Verdict::InfraError => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_type("infra-error")
                .set_message(cell.signature.as_str());
            status
        }
        Verdict::Unavailable => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(format!("unavailable: {}", cell.signature));
            status
        }
        Verdict::Flaky => {
            let runs = cell
                .runs
                .map(|r| format!(" (passed {}, failed {})", r.passed, r.failed))
                .unwrap_or_default();
            let mut rerun = TestRerun::new(NonSuccessKind::Failure);
            rerun
                .set_type("flaky")
                .set_message(format!("{}{runs}", cell.signature))
                .set_description(output);
            let mut status = TestCaseStatus::success();
            status.add_rerun(rerun);
            status
        }
    };
    let mut case = TestCase::new(format!("{} on {}", cell.variant, cell.kernel), status);
    case.set_classname(format!("{}.{}", cell.scenario, cell.version))
        .set_time(Duration::from_millis(cell.duration_ms));
    let release = cell.kernel_release.clone().unwrap_or_default();
    let fidelity = cell.fidelity.map(|f| f.name()).unwrap_or("unknown");
    for (name, value) in [
        ("fidelity", fidelity),
        ("kernel", cell.kernel.as_str()),
        ("kernel_release", release.as_str()),
        ("version", cell.version.as_str()),
        ("variant", cell.variant.as_str()),
        ("cell_id", cell.cell_id.as_str()),
        ("verdict", cell.verdict.as_str()),
    ] {
        case.add_property(Property::new(name, value));
    }
    if let Some(note) = &cell.fidelity_note {
        case.add_property(Property::new("fidelity_note", note.as_str()));
    }
    // What the guest and the artifact said of themselves, for dashboards.
    for (name, value) in &cell.facts {
        case.add_property(Property::new(format!("fact.{name}"), value.as_str()));
    }
    case
}
