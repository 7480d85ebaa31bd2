//! Finding and reading scenario folders: each loaded on its own, so that a
//! broken one is reported without hiding the others.

use super::{Scenario, ScenarioFile, Validator, SCENARIO_FILE};
use crate::diagnostic::{parse_toml, FileError};
use crate::inputs::Catalog;
use std::fs;
use std::path::{Path, PathBuf};

/// Loads every `*/scenario.toml` under `dir`, sorted by id.
pub fn load_all(dir: &Path, catalog: &Catalog) -> Result<Vec<Scenario>, FileError> {
    load_each(dir, catalog, |_| true)?.into_iter().collect()
}

/// Each scenario folder (named by its id) that `wanted` accepts, loaded on
/// its own: one broken scenario does not hide the others.
pub fn load_each(
    dir: &Path,
    catalog: &Catalog,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Result<Scenario, FileError>>, FileError> {
    Ok(folders(dir)?
        .iter()
        .filter(|f| wanted(&f.file_name().unwrap_or_default().to_string_lossy()))
        .map(|f| load(f, catalog))
        .collect())
}

/// Every folder under `dir` holding a scenario.toml, valid or not, sorted.
pub fn folders(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let entries = fs::read_dir(dir).map_err(|e| {
        FileError::whole_file(
            dir,
            format!("cannot read the scenarios folder: {e}"),
            "run kmatrix from the project root, or pass --scenarios DIR",
        )
    })?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(SCENARIO_FILE).is_file())
        .collect();
    folders.sort();
    Ok(folders)
}

pub fn load(folder: &Path, catalog: &Catalog) -> Result<Scenario, FileError> {
    let path = folder.join(SCENARIO_FILE);
    let source = fs::read_to_string(&path).map_err(|e| {
        FileError::whole_file(
            &path,
            format!("cannot read: {e}"),
            "every scenario folder needs a scenario.toml",
        )
    })?;
    let file: ScenarioFile = parse_toml(
        &path,
        &source,
        "compare with scenarios/kube-ovn-tproxy/scenario.toml; the README lists every field",
    )?;
    Validator {
        path: &path,
        source: &source,
        folder,
        catalog,
    }
    .validate(file)
}
