//! JUnit XML for CI dashboards: one testsuite per scenario, one testcase per
//! cell, with `kernel`, `version`, `variant` and `cell_id` as properties.
//! fail/crash/timeout are failures, infra-error an error, unavailable
//! skipped, and a flaky cell a pass carrying `flakyFailure` (Surefire's rerun
//! format), so dashboards show it without turning red.

use crate::results::CellRecord;
use crate::verdict::Verdict;
use std::collections::BTreeMap;

pub fn render(records: &[CellRecord]) -> String {
    let mut suites: BTreeMap<&str, Vec<&CellRecord>> = BTreeMap::new();
    for record in records {
        suites.entry(&record.scenario).or_default().push(record);
    }
    let count = |cells: &[&CellRecord], wanted: &[Verdict]| {
        cells.iter().filter(|c| wanted.contains(&c.verdict)).count()
    };
    let failures = [Verdict::Fail, Verdict::Crash, Verdict::Timeout];
    let all: Vec<&CellRecord> = records.iter().collect();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"kmatrix\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">\n",
        all.len(),
        count(&all, &failures),
        count(&all, &[Verdict::InfraError]),
        count(&all, &[Verdict::Unavailable])
    ));
    for (scenario, mut cells) in suites {
        cells.sort_by(|a, b| {
            (&a.version, &a.variant, &a.kernel).cmp(&(&b.version, &b.variant, &b.kernel))
        });
        let seconds: f64 = cells.iter().map(|c| c.duration_ms as f64 / 1000.0).sum();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">\n",
            escape(scenario),
            cells.len(),
            count(&cells, &failures),
            count(&cells, &[Verdict::InfraError]),
            count(&cells, &[Verdict::Unavailable])
        ));
        for cell in cells {
            testcase(&mut xml, cell);
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn testcase(xml: &mut String, cell: &CellRecord) {
    xml.push_str(&format!(
        "    <testcase classname=\"{}.{}\" name=\"{} on {}\" time=\"{:.3}\">\n",
        escape(&cell.scenario),
        escape(&cell.version),
        escape(&cell.variant),
        escape(&cell.kernel),
        cell.duration_ms as f64 / 1000.0
    ));
    xml.push_str("      <properties>\n");
    let release = cell.kernel_release.clone().unwrap_or_default();
    for (name, value) in [
        ("kernel", cell.kernel.as_str()),
        ("kernel_release", release.as_str()),
        ("version", cell.version.as_str()),
        ("variant", cell.variant.as_str()),
        ("cell_id", cell.cell_id.as_str()),
        ("verdict", cell.verdict.as_str()),
    ] {
        xml.push_str(&format!(
            "        <property name=\"{name}\" value=\"{}\"/>\n",
            escape(value)
        ));
    }
    xml.push_str("      </properties>\n");
    let output: String = cell
        .probes
        .iter()
        .map(|p| format!("[{}] {}\n{}{}", p.probe_id, p.exit, p.stdout, p.stderr))
        .collect();
    let message = escape(&cell.signature);
    match cell.verdict {
        Verdict::Pass => {}
        Verdict::Fail | Verdict::Crash | Verdict::Timeout => xml.push_str(&format!(
            "      <failure type=\"{}\" message=\"{message}\">{}</failure>\n",
            cell.verdict,
            escape(&output)
        )),
        Verdict::InfraError => xml.push_str(&format!(
            "      <error type=\"infra-error\" message=\"{message}\"/>\n"
        )),
        Verdict::Unavailable => xml.push_str(&format!(
            "      <skipped message=\"unavailable: {message}\"/>\n"
        )),
        Verdict::Flaky => {
            let runs = cell
                .runs
                .map(|r| format!(" (passed {}, failed {})", r.passed, r.failed))
                .unwrap_or_default();
            xml.push_str(&format!(
                "      <flakyFailure type=\"flaky\" message=\"{message}{}\">{}</flakyFailure>\n",
                escape(&runs),
                escape(&output)
            ));
        }
    }
    xml.push_str("    </testcase>\n");
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 forbids.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}
