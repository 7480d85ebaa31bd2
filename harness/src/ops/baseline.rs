//! `kmatrix baseline accept RUN`: a finished run becomes the project's
//! baseline (`results/baseline`): its cells and run.json are copied in, its
//! reports rewritten there, and `results/COMPATIBILITY.md` regenerated, so
//! the docs table and what CI compares with never disagree. Returns the
//! diff against the baseline it replaces, for the caller to show.

use crate::diagnostic::FileError;
use crate::files::write_atomically;
use crate::results::read_run;
use crate::{diff, report, Project};
use anyhow::{Context, Result};
use kmatrix_metadata::{Diff, CELLS_FILE, RUN_FILE};
use std::fs;
use std::path::{Path, PathBuf};

/// The docs table, regenerated from the baseline.
pub const COMPATIBILITY_FILE: &str = "results/COMPATIBILITY.md";

pub struct Accepted {
    pub baseline: PathBuf,
    pub compatibility: PathBuf,
    pub cells: usize,
    /// Against the baseline replaced (`None` when there was none).
    pub against_old: Option<Diff>,
}

pub fn accept(project: &Project, run: &Path) -> Result<Accepted> {
    let cells = read_run(run)?;
    if let Some(torn) = &cells.warning {
        return Err(FileError::whole_file(
            run,
            format!("the run is not whole: {torn}"),
            format!("finish it first: `kmatrix run --resume {}`", run.display()),
        )
        .into());
    }
    let info = crate::results::read_run_info(run);
    if info.as_ref().is_some_and(|i| i.finished.is_none()) {
        return Err(FileError::whole_file(
            &run.join(RUN_FILE),
            "the run never finished (interrupted, or still running)",
            format!("finish it first: `kmatrix run --resume {}`", run.display()),
        )
        .into());
    }
    let (catalog, scenarios) = project.load_selected(&[])?;
    let against_old = project
        .baseline_cells()
        .map(|old| diff::diff(&old, &cells.records, false));
    let baseline = project.baseline_dir();
    fs::create_dir_all(&baseline)
        .with_context(|| format!("cannot create {}", baseline.display()))?;
    let source = if run.is_dir() {
        run.join(CELLS_FILE)
    } else {
        run.to_path_buf()
    };
    write_atomically(&baseline.join(CELLS_FILE), &fs::read(&source)?)?;
    if run.is_dir() && run.join(RUN_FILE).is_file() {
        write_atomically(&baseline.join(RUN_FILE), &fs::read(run.join(RUN_FILE))?)?;
    }
    // Rendered exactly as `kmatrix report results/baseline` renders it (the
    // baseline compared with itself), which CI checks the docs table against.
    let itself = diff::diff(&cells.records, &cells.records, false);
    let input = report::ReportInput {
        records: &cells.records,
        scenarios: &scenarios,
        catalog: &catalog,
        run: info.as_ref(),
        run_dir: Some(&baseline),
        baseline: Some(&itself),
        baseline_name: Some(crate::results::run_label(&baseline, &project.root)),
    };
    report::write_all(&baseline, &input)?;
    // write_all made the docs table too (compatibility.md, from the same model).
    let compatibility = project.root.join(COMPATIBILITY_FILE);
    write_atomically(
        &compatibility,
        &fs::read(baseline.join(report::COMPATIBILITY_FILE))?,
    )?;
    Ok(Accepted {
        baseline,
        compatibility,
        cells: cells.records.len(),
        against_old,
    })
}
