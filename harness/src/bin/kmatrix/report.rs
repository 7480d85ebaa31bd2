//! `kmatrix report`: renders a run's reports (all files, or one format).

use crate::args::{ReportArgs, ReportFormat};
use crate::shared::{cells_of, exit};
use anyhow::Result;
use kmatrix::results::read_run_info;
use kmatrix::{diff, report, Project};
use kmatrix_metadata::ExitStatus;
use std::process::ExitCode;

pub fn report(project: &Project, args: ReportArgs) -> Result<ExitCode> {
    let records = cells_of(&args.dir)?;
    let run = read_run_info(&args.dir);
    let (catalog, scenarios) = project.load_selected(&[])?;
    let baseline_records = match &args.baseline {
        Some(path) => Some(cells_of(path)?),
        None => project.baseline_cells(),
    };
    let baseline = baseline_records.map(|old| diff::diff(&old, &records, false));
    let input = report::ReportInput {
        records: &records,
        scenarios: &scenarios,
        catalog: &catalog,
        run: run.as_ref(),
        run_dir: Some(&args.dir),
        baseline: baseline.as_ref(),
        baseline_name: Some(kmatrix::results::run_label(
            &args
                .baseline
                .clone()
                .unwrap_or_else(|| project.baseline_dir()),
            &project.root,
        )),
    };
    let Some(format) = args.format else {
        report::write_all(&args.dir, &input)?;
        println!(
            "wrote {} in {} from {} cells",
            report::FILES.join(", "),
            args.dir.display(),
            records.len()
        );
        return exit(ExitStatus::OK);
    };
    let model = report::ReportModel::build(&input);
    let text = match format {
        ReportFormat::Markdown => report::compat::render(&model),
        ReportFormat::MatrixMarkdown => report::markdown::render(&model),
        ReportFormat::Junit => report::junit::render(&model)?,
        ReportFormat::Html => report::html::render(&model)?,
        ReportFormat::Csv => report::csv::render(&model.matrix)?,
        ReportFormat::Json => serde_json::to_string_pretty(&model.matrix)? + "\n",
    };
    match args.output {
        Some(path) => kmatrix::files::write_atomically(&path, text.as_bytes())?,
        None => print!("{text}"),
    }
    exit(ExitStatus::OK)
}
