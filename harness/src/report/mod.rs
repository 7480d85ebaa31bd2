//! Reports made from a run's records: the matrix (CSV, JSON, Markdown), the
//! docs compatibility table, JUnit XML and a self-contained HTML page.
//! Rows are component version × variant, columns are kernels. Every writer
//! renders the one [`model::ReportModel`], built once.

pub mod bench;
pub mod compat;
pub mod csv;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod model;

pub use model::{ReportInput, ReportModel, WorkaroundCheck};

use crate::files::write_atomically;
use anyhow::Result;
use std::path::Path;

/// The docs table a run directory holds.
pub const COMPATIBILITY_FILE: &str = "compatibility.md";

/// Every report a run directory holds, by file name.
pub const FILES: [&str; 6] = [
    "matrix.json",
    "matrix.csv",
    "matrix.md",
    COMPATIBILITY_FILE,
    "junit.xml",
    "report.html",
];

/// Writes every report into the run directory.
pub fn write_all(dir: &Path, input: &ReportInput) -> Result<()> {
    let model = ReportModel::build(input);
    write_atomically(
        &dir.join("matrix.json"),
        &serde_json::to_vec_pretty(&model.matrix)?,
    )?;
    write_atomically(
        &dir.join("matrix.csv"),
        csv::render(&model.matrix)?.as_bytes(),
    )?;
    write_atomically(&dir.join("matrix.md"), markdown::render(&model).as_bytes())?;
    write_atomically(
        &dir.join(COMPATIBILITY_FILE),
        compat::render(&model).as_bytes(),
    )?;
    write_atomically(&dir.join("junit.xml"), junit::render(&model)?.as_bytes())?;
    write_atomically(&dir.join("report.html"), html::render(&model)?.as_bytes())?;
    Ok(())
}
