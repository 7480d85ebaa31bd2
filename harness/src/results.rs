//! The results store: `cells.jsonl` (the data contract other tools read) in
//! a run directory, rewritten atomically after every finished cell so a kill
//! at any moment leaves a whole file and every finished cell on disk.

use crate::plan::Cell;
use crate::verdict::{Classified, Verdict};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CELLS_FILE: &str = "cells.jsonl";
pub const RUN_FILE: &str = "run.json";

/// One line of `cells.jsonl`. Fields are only ever added, never renamed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellRecord {
    pub cell_id: String,
    pub scenario: String,
    pub component: String,
    pub version: String,
    pub variant: String,
    /// Catalog id of the kernel.
    pub kernel: String,
    /// What `uname -r` said in the guest; null if it never booted.
    pub kernel_release: Option<String>,
    pub verdict: Verdict,
    pub signature: String,
    pub duration_ms: u64,
    /// What the guest saw of its kernel (MPTCP, IPv6, modules...).
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub probes: Vec<ProbeRecord>,
    /// How many boots it took (retries after infrastructure faults count).
    #[serde(default)]
    pub attempts: u32,
    /// "qemu-tcg", "qemu-kvm", or null when nothing ran.
    #[serde(default)]
    pub backend: Option<String>,
    /// Console log of the boot that produced the verdict, relative to the run dir.
    #[serde(default)]
    pub console_log: Option<String>,
    /// With `--retries`: how often the cell passed and failed in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<RunCounts>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunCounts {
    pub passed: u32,
    pub failed: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeRecord {
    pub probe_id: String,
    pub verdict: Verdict,
    pub signature: String,
    pub exit: String,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

impl CellRecord {
    /// A record for a cell that never ran in a guest.
    pub fn without_guest(cell: &Cell, outcome: Classified) -> CellRecord {
        CellRecord {
            cell_id: cell.id.clone(),
            scenario: cell.scenario.clone(),
            component: cell.component.clone(),
            version: cell.version.clone(),
            variant: cell.variant.clone(),
            kernel: cell.kernel.clone(),
            kernel_release: None,
            verdict: outcome.verdict,
            signature: outcome.signature,
            duration_ms: 0,
            facts: BTreeMap::new(),
            probes: Vec::new(),
            attempts: 0,
            backend: None,
            console_log: None,
            runs: None,
        }
    }
}

/// Facts about the run as a whole.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub harness_version: String,
    pub started: String,
    pub finished: Option<String>,
    pub accel: String,
    pub accel_reason: String,
    pub cache: crate::cache::CacheStats,
    pub command: Vec<String>,
}

#[derive(Debug)]
pub struct ResultsStore {
    dir: PathBuf,
    records: BTreeMap<String, CellRecord>,
}

impl ResultsStore {
    /// Opens `dir`, reading whatever cells a previous run finished there.
    pub fn open(dir: &Path) -> Result<ResultsStore> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the results folder {}", dir.display()))?;
        let records = read_cells(dir)?
            .into_iter()
            .map(|r| (r.cell_id.clone(), r))
            .collect();
        Ok(ResultsStore {
            dir: dir.to_path_buf(),
            records,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, cell_id: &str) -> bool {
        self.records.contains_key(cell_id)
    }

    /// Whether a resumed run can skip the cell: an infrastructure error is
    /// no result, so it is run again.
    pub fn holds_result(&self, cell_id: &str) -> bool {
        self.records
            .get(cell_id)
            .is_some_and(|r| r.verdict != Verdict::InfraError)
    }

    pub fn records(&self) -> impl Iterator<Item = &CellRecord> {
        self.records.values()
    }

    /// Adds (or replaces) a cell and rewrites `cells.jsonl` at once.
    pub fn add(&mut self, record: CellRecord) -> Result<()> {
        self.records.insert(record.cell_id.clone(), record);
        let mut text = String::new();
        for record in self.records.values() {
            text.push_str(&serde_json::to_string(record)?);
            text.push('\n');
        }
        write_atomically(&self.dir.join(CELLS_FILE), text.as_bytes())
    }

    pub fn write_run_info(&self, info: &RunInfo) -> Result<()> {
        write_atomically(&self.dir.join(RUN_FILE), &serde_json::to_vec_pretty(info)?)
    }
}

/// The `run.json` of a run directory, if it has a readable one.
pub fn read_run_info(dir: &Path) -> Option<RunInfo> {
    serde_json::from_slice(&fs::read(dir.join(RUN_FILE)).ok()?).ok()
}

/// Reads the cells of a run directory or of a `cells.jsonl` file given
/// directly; a run that has none is a clear error, not an empty run.
pub fn read_run(path: &Path) -> Result<Vec<CellRecord>, crate::diagnostic::FileError> {
    let file = if path.is_dir() {
        path.join(CELLS_FILE)
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(crate::diagnostic::FileError::whole_file(
            &file,
            "no such results file",
            "give a run directory (holding cells.jsonl) or a cells.jsonl file",
        ));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let text = fs::read_to_string(&file).map_err(|e| {
        crate::diagnostic::FileError::whole_file(
            &file,
            format!("cannot read: {e}"),
            "check the path",
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| crate::diagnostic::FileError {
                path: file.clone(),
                line: n + 1,
                column: e.column(),
                message: format!("not a cell record: {e}"),
                fix: format!(
                    "regenerate it with kmatrix, or remove line {} from {}",
                    n + 1,
                    dir.display()
                ),
                excerpt: Some(line.chars().take(120).collect()),
            })
        })
        .collect()
}

/// Reads `cells.jsonl` from a run directory; a missing file is an empty run.
pub fn read_cells(dir: &Path) -> Result<Vec<CellRecord>> {
    let path = dir.join(CELLS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a cell record", path.display(), n + 1))
        })
        .collect()
}

/// Writes a file so that readers see the old or the new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Hand-made records for the tests of the modules that read results.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn record(
        id: &str,
        version: &str,
        variant: &str,
        kernel: &str,
        verdict: Verdict,
        signature: &str,
    ) -> CellRecord {
        CellRecord {
            cell_id: id.into(),
            scenario: "s".into(),
            component: "c".into(),
            version: version.into(),
            variant: variant.into(),
            kernel: kernel.into(),
            kernel_release: Some(format!("{kernel}-release")),
            verdict,
            signature: signature.into(),
            duration_ms: 5,
            facts: BTreeMap::new(),
            probes: Vec::new(),
            attempts: 1,
            backend: Some("qemu-tcg".into()),
            console_log: None,
            runs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, verdict: Verdict) -> CellRecord {
        tests_support::record(id, "v1", "baseline", "debian-6.1", verdict, "")
    }

    #[test]
    fn store_survives_reopen_and_keeps_every_cell() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultsStore::open(dir.path()).unwrap();
        store.add(record("a", Verdict::Pass)).unwrap();
        store.add(record("b", Verdict::Fail)).unwrap();
        let reopened = ResultsStore::open(dir.path()).unwrap();
        assert!(reopened.contains("a") && reopened.contains("b"));
        let text = fs::read_to_string(dir.path().join(CELLS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
        // The contract's field names, as documented in the README.
        let value: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "cell_id",
            "scenario",
            "component",
            "version",
            "variant",
            "kernel",
            "kernel_release",
            "verdict",
            "signature",
            "duration_ms",
        ] {
            assert!(value.get(key).is_some(), "{key} missing");
        }
        assert_eq!(value["verdict"], "pass");
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CELLS_FILE), "{\"cell_id\":1}\n").unwrap();
        let error = format!("{:#}", read_cells(dir.path()).unwrap_err());
        assert!(error.contains("cells.jsonl:1"), "{error}");
    }
}
