//! The results store: a run directory's `cells.jsonl` (the contract other
//! tools read, through `kmatrix-metadata`) and `run.json`. `cells.jsonl` is
//! rewritten atomically after every finished cell, so a kill at any moment
//! leaves a whole file and every finished cell on disk.

use crate::diagnostic::FileError;
use crate::files::write_atomically;
use anyhow::{Context, Result};
use kmatrix_metadata::{parse_cells, render_cells, CellRecord, RunInfo, TornLine, Verdict};
pub use kmatrix_metadata::{CELLS_FILE, RUN_FILE};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ResultsStore {
    dir: PathBuf,
    records: BTreeMap<String, CellRecord>,
    torn: Option<TornLine>,
}

impl ResultsStore {
    /// Opens `dir`, reading whatever cells a previous run finished there. A
    /// torn last line (a kill mid-write on another filesystem, a truncated
    /// artifact) is dropped: its cell runs again. Any other damage is bad
    /// input naming the line.
    pub fn open(dir: &Path) -> Result<ResultsStore> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the results folder {}", dir.display()))?;
        let path = dir.join(CELLS_FILE);
        let (records, torn) = match fs::read_to_string(&path) {
            Ok(text) => {
                let file = parse_cells(&text).map_err(|bad| bad_line(&path, bad))?;
                (file.records, file.torn)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(ResultsStore {
            dir: dir.to_path_buf(),
            records: records
                .into_iter()
                .map(|r| (r.cell_id.clone(), r))
                .collect(),
            torn,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What was dropped when the store was opened, in words.
    pub fn torn_warning(&self) -> Option<String> {
        self.torn
            .as_ref()
            .map(|torn| torn_warning(&self.dir.join(CELLS_FILE), torn))
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
        write_atomically(
            &self.dir.join(CELLS_FILE),
            render_cells(self.records.values()).as_bytes(),
        )
    }

    pub fn write_run_info(&self, info: &RunInfo) -> Result<()> {
        write_atomically(&self.dir.join(RUN_FILE), &serde_json::to_vec_pretty(info)?)
    }
}

/// The `run.json` of a run directory, if it has a readable one.
pub fn read_run_info(dir: &Path) -> Option<RunInfo> {
    serde_json::from_slice(&fs::read(dir.join(RUN_FILE)).ok()?).ok()
}

/// A run named for a reader: its folder (relative to `base` where it lies
/// under it) and the day it started, e.g. "results/baseline (run started
/// 2026-12-06T01:07:44Z)".
pub fn run_label(dir: &Path, base: &Path) -> String {
    let shown = dir.strip_prefix(base).unwrap_or(dir).display().to_string();
    match read_run_info(dir) {
        Some(info) => format!("{shown} (run started {})", info.started),
        None => shown,
    }
}

/// The cells of a finished (or interrupted) run, for reports and diffs.
#[derive(Debug)]
pub struct RunCells {
    pub records: Vec<CellRecord>,
    /// Set when a torn last line was dropped: say it to the user.
    pub warning: Option<String>,
}

/// Reads the cells of a run directory or of a `cells.jsonl` file given
/// directly; a run that has none is a clear error, not an empty run.
pub fn read_run(path: &Path) -> Result<RunCells, FileError> {
    let file = if path.is_dir() {
        path.join(CELLS_FILE)
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(FileError::whole_file(
            &file,
            "no such results file",
            "give a run directory (holding cells.jsonl) or a cells.jsonl file",
        ));
    }
    let text = fs::read_to_string(&file)
        .map_err(|e| FileError::whole_file(&file, format!("cannot read: {e}"), "check the path"))?;
    let parsed = parse_cells(&text).map_err(|bad| bad_line(&file, bad))?;
    Ok(RunCells {
        warning: parsed.torn.as_ref().map(|torn| torn_warning(&file, torn)),
        records: parsed.records,
    })
}

fn bad_line(file: &Path, bad: kmatrix_metadata::BadLine) -> FileError {
    let dir = file.parent().unwrap_or(Path::new("."));
    FileError {
        path: file.to_path_buf(),
        line: bad.line,
        column: bad.column,
        message: format!("not a cell record: {}", bad.message),
        fix: format!(
            "regenerate it with kmatrix, or remove line {} from {} (its cell then runs again on --resume)",
            bad.line,
            dir.display()
        ),
        excerpt: Some(bad.text),
    }
}

fn torn_warning(file: &Path, torn: &TornLine) -> String {
    format!(
        "warning: {}:{}: the last line is cut short (a killed writer or a truncated copy); dropped it, so that cell counts as not run",
        file.display(),
        torn.line
    )
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! Hand-made records for the tests of the modules that read results.
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
            emulator: None,
            fidelity: None,
            fidelity_note: None,
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
        assert!(!reopened.holds_result("c"));
        let text = fs::read_to_string(dir.path().join(CELLS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CELLS_FILE), "{\"cell_id\":1}\n").unwrap();
        let error = format!("{:#}", ResultsStore::open(dir.path()).unwrap_err());
        assert!(error.contains("cells.jsonl:1"), "{error}");
        let error = read_run(dir.path()).unwrap_err();
        assert_eq!(error.line, 1);
    }

    #[test]
    fn a_torn_last_line_is_dropped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultsStore::open(dir.path()).unwrap();
        store.add(record("a", Verdict::Pass)).unwrap();
        store.add(record("b", Verdict::Pass)).unwrap();
        let path = dir.path().join(CELLS_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() - 30]).unwrap();
        let reopened = ResultsStore::open(dir.path()).unwrap();
        assert!(reopened.contains("a") && !reopened.contains("b"));
        let warning = reopened.torn_warning().unwrap();
        assert!(warning.contains("cells.jsonl:2"), "{warning}");
        let cells = read_run(dir.path()).unwrap();
        assert_eq!(cells.records.len(), 1);
        assert!(cells.warning.is_some());
    }
}
