//! The HTML report: one self-contained page (inline CSS, no script, no CDN)
//! from the handlebars template in `harness/templates/`. Every value goes
//! through handlebars' escaping, so text a guest printed stays text.

use super::ReportModel;
use anyhow::Result;
use handlebars::Handlebars;
use kmatrix_metadata::{Change, ScenarioMatrix, Side, Verdict};
use serde::Serialize;

const TEMPLATE: &str = include_str!("../../templates/report.html.hbs");

#[derive(Serialize)]
struct Page {
    title: String,
    /// One line: when, how many cells, where.
    generated: String,
    /// The rest of the run's facts (accelerator and why, emulator, engine).
    run_details: String,
    counts: Vec<Count>,
    legend: Vec<Legend>,
    baseline: Option<BaselineView>,
    scenarios: Vec<ScenarioView>,
}

/// How many cells got one verdict.
#[derive(Serialize)]
struct Count {
    class: &'static str,
    symbol: &'static str,
    name: &'static str,
    n: usize,
}

#[derive(Serialize)]
struct Legend {
    class: &'static str,
    symbol: &'static str,
    name: &'static str,
}

#[derive(Serialize)]
struct BaselineView {
    /// Which run, and its date.
    name: String,
    summary: String,
    rows: Vec<BaselineRow>,
}

#[derive(Serialize)]
struct BaselineRow {
    change: &'static str,
    cell: String,
    before: String,
    after: String,
}

#[derive(Serialize)]
struct ScenarioView {
    id: String,
    title: String,
    summary: String,
    component: String,
    issue: String,
    /// "12 cells: 9 pass, 3 crash".
    counts: String,
    kernels: Vec<KernelHead>,
    rows: Vec<RowView>,
    workarounds: Vec<String>,
}

#[derive(Serialize)]
struct KernelHead {
    id: String,
    release: Option<String>,
}

#[derive(Serialize)]
struct RowView {
    version: String,
    variant: String,
    fidelity: &'static str,
    fidelity_note: String,
    cells: Vec<CellView>,
}

#[derive(Serialize, Default)]
struct CellView {
    present: bool,
    class: &'static str,
    symbol: &'static str,
    verdict: &'static str,
    signature: String,
    /// The signature's start, shown in the cell without a click (not for a pass).
    brief: String,
    cell_id: String,
    kernel_release: String,
    attempts: u32,
    facts: Vec<Fact>,
    probes: Vec<ProbeView>,
    console: String,
    repro: String,
}

#[derive(Serialize)]
struct Fact {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct ProbeView {
    id: String,
    verdict: &'static str,
    exit: String,
    output: String,
}

pub fn render(model: &ReportModel) -> Result<String> {
    let mut engine = Handlebars::new();
    engine.set_strict_mode(true);
    engine.register_template_string("report", TEMPLATE)?;
    Ok(engine.render("report", &page(model))?)
}

fn page(model: &ReportModel) -> Page {
    let input = model.input;
    let generated = generated_line(input);
    let run_details = run_details(input);
    let scenarios = model
        .matrix
        .scenarios
        .iter()
        .map(|m| scenario_view(model, m))
        .collect();
    Page {
        title: match input.scenarios {
            [one] => one.id.to_string(),
            _ => "compatibility matrix".into(),
        },
        generated,
        run_details,
        counts: Verdict::ALL
            .iter()
            .map(|v| Count {
                class: v.as_str(),
                symbol: v.glyph(),
                name: v.as_str(),
                n: input.records.iter().filter(|r| r.verdict == *v).count(),
            })
            .filter(|c| c.n > 0)
            .collect(),
        legend: Verdict::ALL
            .iter()
            .map(|v| Legend {
                class: v.as_str(),
                symbol: v.glyph(),
                name: v.as_str(),
            })
            .collect(),
        baseline: input.baseline.map(|diff| BaselineView {
            name: input
                .baseline_name
                .clone()
                .unwrap_or_else(|| "the baseline".into()),
            summary: diff.summary(),
            rows: diff
                .changes
                .iter()
                .filter(|c| !matches!(c.change, Change::New | Change::Removed))
                .map(|c| BaselineRow {
                    change: c.change.title(),
                    cell: c.key.label(),
                    before: side(&c.old),
                    after: side(&c.new),
                })
                .collect(),
        }),
        scenarios,
    }
}

/// "509 cells · run started … · kmatrix … · accelerator tcg".
fn generated_line(input: &super::ReportInput) -> String {
    format!(
        "{} cells{}",
        input.records.len(),
        input
            .run
            .map(|run| format!(
                " · run started {} · kmatrix {} · accelerator {}",
                run.started, run.harness_version, run.accel
            ))
            .unwrap_or_default()
    )
}

/// The run's facts a reader opens when they want them.
fn run_details(input: &super::ReportInput) -> String {
    match input.run {
        Some(run) => format!(
            "accelerator {}: {}{}{}",
            run.accel,
            run.accel_reason,
            run.emulator
                .as_ref()
                .map(|e| format!(" · emulator: {e}"))
                .unwrap_or_default(),
            run.container_engine
                .as_ref()
                .map(|e| format!(" · docker: {} on host kernel {}", e.version, e.host_kernel))
                .unwrap_or_default()
        ),
        None => format!("kmatrix {}", env!("CARGO_PKG_VERSION")),
    }
}

/// One scenario's table: its kernels, and a row per version and variant.
fn scenario_view(model: &ReportModel, m: &ScenarioMatrix) -> ScenarioView {
    let input = model.input;
    let checks = &model.workarounds;
    let scenario = model.scenario(&m.scenario);
    ScenarioView {
        id: m.scenario.clone(),
        title: m.title.clone(),
        summary: scenario.map(|s| s.summary.clone()).unwrap_or_default(),
        component: m.component.clone(),
        issue: m.issue.clone(),
        counts: counts_sentence(
            input
                .records
                .iter()
                .filter(|r| r.scenario == m.scenario)
                .map(|r| r.verdict),
        ),
        kernels: m
            .kernels
            .iter()
            .map(|k| KernelHead {
                id: k.id.clone(),
                release: k.release.clone(),
            })
            .collect(),
        rows: m
            .rows
            .iter()
            .map(|row| RowView {
                version: row.version.clone(),
                variant: row.variant.clone(),
                fidelity: super::markdown::fidelity_word(row.fidelity),
                fidelity_note: row
                    .cells
                    .values()
                    .find_map(|c| model.record(&c.cell_id)?.fidelity_note.clone())
                    .unwrap_or_default(),
                cells: m
                    .kernels
                    .iter()
                    .map(|k| {
                        row.cells
                            .get(&k.id)
                            .map(|c| cell_view(model, &c.cell_id))
                            .unwrap_or_default()
                    })
                    .collect(),
            })
            .collect(),
        workarounds: checks
            .iter()
            .filter(|c| c.scenario == m.scenario)
            .map(|c| format!("{} on {}: {}", c.version, c.kernel, c.sentence()))
            .collect(),
    }
}

/// "12 cells: 9 pass, 3 crash" (verdicts in their usual order).
fn counts_sentence(verdicts: impl Iterator<Item = Verdict>) -> String {
    let verdicts: Vec<Verdict> = verdicts.collect();
    let parts: Vec<String> = Verdict::ALL
        .iter()
        .map(|v| (v, verdicts.iter().filter(|x| *x == v).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| format!("{n} {}", v.as_str()))
        .collect();
    format!("{} cells: {}", verdicts.len(), parts.join(", "))
}

/// A signature cut to what a table cell can show (the whole one is a click away).
fn brief(signature: &str) -> String {
    const LIMIT: usize = 90;
    match signature.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("{}…", &signature[..at]),
        None => signature.to_string(),
    }
}

fn side(side: &Option<Side>) -> String {
    side.as_ref().map_or_else(|| "—".into(), Side::text)
}

fn cell_view(model: &ReportModel, cell_id: &str) -> CellView {
    let Some(record) = model.record(cell_id) else {
        return CellView::default();
    };
    let boot = model.boot_of(record);
    let console = boot.map(|b| b.console_tail.clone()).unwrap_or_default();
    let mut repro = format!("kmatrix repro {}", record.cell_id);
    if let Some(command) = boot.and_then(|b| b.qemu_command.as_ref()) {
        repro.push_str(&format!(
            "\n\n# the boot that gave this verdict:\n{command}"
        ));
    }
    CellView {
        present: true,
        class: record.verdict.as_str(),
        symbol: record.verdict.glyph(),
        verdict: record.verdict.as_str(),
        signature: record.signature.clone(),
        brief: match record.verdict {
            Verdict::Pass => String::new(),
            _ => brief(&record.signature),
        },
        cell_id: record.cell_id.clone(),
        kernel_release: record
            .kernel_release
            .clone()
            .unwrap_or_else(|| "never booted".into()),
        attempts: record.attempts,
        facts: record
            .facts
            .iter()
            .map(|(name, value)| Fact {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        probes: record
            .probes
            .iter()
            .map(|p| ProbeView {
                id: p.probe_id.clone(),
                verdict: p.verdict.as_str(),
                exit: p.exit.clone(),
                output: format!("{}{}", p.stdout, p.stderr).trim_end().to_string(),
            })
            .collect(),
        console,
        repro,
    }
}
