//! `kmatrix baseline accept RUN`: prints where the new baseline went and
//! how it differs from the one it replaced.

use crate::shared::exit;
use anyhow::Result;
use kmatrix::{diff, ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn accept(project: &Project, run: &Path) -> Result<ExitCode> {
    let accepted = ops::baseline::accept(project, run)?;
    match &accepted.against_old {
        Some(changes) => print!("{}", diff::to_console(changes)),
        None => println!("(no baseline before this one)"),
    }
    println!(
        "baseline: {} cells in {}; docs table: {}\nreview with `git diff results/`, then commit",
        accepted.cells,
        accepted.baseline.display(),
        accepted.compatibility.display()
    );
    exit(ExitStatus::OK)
}
