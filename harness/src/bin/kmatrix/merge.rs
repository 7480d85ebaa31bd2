//! `kmatrix merge`: shards' runs into one, with conflicts named.

use crate::shared::exit;
use anyhow::Result;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn merge(project: &Project, dirs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let merged = ops::merge::merge(project, dirs, out)?;
    for warning in &merged.warnings {
        eprintln!("{warning}");
    }
    println!(
        "merged {} cells from {} runs into {}",
        merged.cells,
        dirs.len(),
        out.display()
    );
    let Some(file) = &merged.conflicts_file else {
        return exit(ExitStatus::OK);
    };
    eprintln!(
        "error: {} cells ran in more than one input with different verdicts (kept the first; see {}):",
        merged.conflicts.len(),
        file.display()
    );
    for conflict in &merged.conflicts {
        eprintln!(
            "  {}: {} in {} vs {} in {}",
            conflict.cell,
            conflict.first.verdict,
            conflict.first.dir.display(),
            conflict.second.verdict,
            conflict.second.dir.display()
        );
    }
    exit(ExitStatus::FAILED)
}
