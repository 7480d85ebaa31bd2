//! `kmatrix merge`: joins the results of several runs (CI shards) into one
//! run directory; a cell present twice with different results is a conflict.

use crate::files::{copy_tree, write_atomically};
use crate::results::{read_run, read_run_info, ResultsStore, RUN_FILE};
use crate::{report, Project};
use anyhow::Result;
use kmatrix_metadata::CellRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A cell two inputs disagree on (the first one is kept).
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub cell_id: String,
    pub cell: String,
    pub first: ConflictSide,
    pub second: ConflictSide,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConflictSide {
    pub dir: PathBuf,
    pub verdict: kmatrix_metadata::Verdict,
    pub signature: String,
}

pub struct Merged {
    pub cells: usize,
    pub conflicts: Vec<Conflict>,
    /// `conflicts.json` in the output, when there are conflicts.
    pub conflicts_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

pub fn merge(project: &Project, dirs: &[PathBuf], out: &Path) -> Result<Merged> {
    let mut merged: BTreeMap<String, (CellRecord, PathBuf)> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut warnings = Vec::new();
    for dir in dirs {
        let cells = read_run(dir)?;
        warnings.extend(cells.warning);
        for record in cells.records {
            match merged.get(&record.cell_id) {
                Some((kept, from))
                    if kept.verdict != record.verdict || kept.signature != record.signature =>
                {
                    conflicts.push(Conflict {
                        cell_id: record.cell_id.clone(),
                        cell: record.label(),
                        first: ConflictSide {
                            dir: from.clone(),
                            verdict: kept.verdict,
                            signature: kept.signature.clone(),
                        },
                        second: ConflictSide {
                            dir: dir.clone(),
                            verdict: record.verdict,
                            signature: record.signature.clone(),
                        },
                    });
                }
                Some(_) => {}
                None => {
                    merged.insert(record.cell_id.clone(), (record, dir.clone()));
                }
            }
        }
        copy_boots(dir, out)?;
    }
    let mut store = ResultsStore::open(out)?;
    for (record, _) in merged.into_values() {
        store.add(record)?;
    }
    if let Some(info) = dirs.iter().find_map(|d| fs::read(d.join(RUN_FILE)).ok()) {
        write_atomically(&out.join(RUN_FILE), &info)?;
    }
    let records: Vec<CellRecord> = store.records().cloned().collect();
    let (catalog, scenarios) = project.load_selected(&[])?;
    let run = read_run_info(out);
    report::write_all(
        out,
        &report::ReportInput {
            records: &records,
            scenarios: &scenarios,
            catalog: &catalog,
            run: run.as_ref(),
            run_dir: Some(out),
            baseline: None,
            baseline_name: None,
        },
    )?;
    let conflicts_file = if conflicts.is_empty() {
        None
    } else {
        let path = out.join("conflicts.json");
        write_atomically(&path, &serde_json::to_vec_pretty(&conflicts)?)?;
        Some(path)
    };
    Ok(Merged {
        cells: records.len(),
        conflicts,
        conflicts_file,
        warnings,
    })
}

/// Copies a run's boot logs (console, QEMU command) so merged reports keep them.
fn copy_boots(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        let is_boots = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("boots"));
        if path.is_dir() && is_boots {
            // The initramfs images are large and can be rebuilt; the logs are kept.
            copy_tree(&path, &to.join(path.file_name().expect("named")), &|p| {
                p.extension().is_none_or(|e| e != "cpio")
            })?;
        }
    }
    Ok(())
}
