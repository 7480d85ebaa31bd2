//! `kmatrix diff`: compares two runs, or two versions inside one run.

use crate::args::{DiffArgs, DiffFormat};
use crate::shared::{cells_of, exit};
use anyhow::Result;
use kmatrix::diff;
use kmatrix_metadata::{Change, ExitStatus};
use std::process::ExitCode;

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    let usage = |message: &str| -> Result<ExitCode> {
        eprintln!("error: {message}\n  see `kmatrix diff --help`");
        exit(ExitStatus::BAD_INPUT)
    };
    if let Some(versions) = &args.versions {
        let [run] = args.runs.as_slice() else {
            return usage("--versions compares inside one run: give exactly one RUN");
        };
        let records = cells_of(run)?;
        // A version the run does not hold is a mistake, not "no difference".
        let mut held: Vec<&str> = records.iter().map(|r| r.version.as_str()).collect();
        held.sort_by_key(|v| kmatrix::ids::version_order_key(v));
        held.dedup();
        if let Some(missing) = versions.iter().find(|v| !held.contains(&v.as_str())) {
            return usage(&format!(
                "{} holds no cells of version `{missing}`; its versions: {}",
                run.display(),
                held.join(", ")
            ));
        }
        let changes = diff::diff_versions(&records, &versions[0], &versions[1]);
        match args.format {
            DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
            _ => print!(
                "{}",
                diff::versions_to_text(&versions[0], &versions[1], &changes)
            ),
        }
        let regressed = changes.iter().any(|c| c.change == Change::Regression);
        return exit(if regressed {
            ExitStatus::FAILED
        } else {
            ExitStatus::OK
        });
    }
    let [old, new] = args.runs.as_slice() else {
        return usage("give OLD and NEW (or one RUN with --versions)");
    };
    let mut result = diff::diff(&cells_of(old)?, &cells_of(new)?, args.ignore_variant);
    if args.common {
        result
            .changes
            .retain(|c| !matches!(c.change, Change::New | Change::Removed));
    }
    match args.format {
        DiffFormat::Console => print!("{}", diff::to_console(&result)),
        DiffFormat::Markdown => print!("{}", diff::to_markdown(&result)),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    exit(if result.regressions() > 0 {
        ExitStatus::FAILED
    } else {
        ExitStatus::OK
    })
}
