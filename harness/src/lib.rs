//! kmatrix: reproducible kernel × component test matrices.
//!
//! Data flows one way: scenario + catalogs → [`plan`] → [`provision`] →
//! [`backend`] → [`results`] → [`report`]. [`runner`] drives the flow.

pub mod accel;
pub mod apt;
pub mod archive;
pub mod backend;
pub mod cache;
pub mod catalog;
pub mod diagnostic;
pub mod diff;
pub mod fetch;
pub mod files;
pub mod govendor;
pub mod initramfs;
pub mod kbuild;
pub mod lock;
pub mod modules;
pub mod plan;
pub mod progress;
pub mod provision;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod shard;
pub mod verdict;

use catalog::Catalog;
use diagnostic::FileError;
use scenario::Scenario;
use std::path::{Path, PathBuf};

/// The project folders kmatrix reads: `images/` (catalogs) and `scenarios/`.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub scenarios_dir: PathBuf,
}

impl Project {
    pub fn new(root: &Path) -> Project {
        Project {
            root: root.to_path_buf(),
            scenarios_dir: root.join("scenarios"),
        }
    }

    /// The nearest folder at or above `start` that holds `images/kernels.toml`.
    pub fn discover(start: &Path) -> Option<Project> {
        start
            .ancestors()
            .find(|dir| dir.join("images").join(catalog::KERNELS_FILE).is_file())
            .map(Project::new)
    }

    /// The committed baseline run (`results/baseline`), if the project has one.
    pub fn baseline_dir(&self) -> PathBuf {
        self.root.join("results").join("baseline")
    }

    pub fn baseline_cells(&self) -> Option<Vec<results::CellRecord>> {
        results::read_run(&self.baseline_dir()).ok()
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn catalog(&self) -> Result<Catalog, FileError> {
        Catalog::load(&self.images_dir())
    }

    /// Loads the catalog and the scenarios named in `ids` (all when empty).
    pub fn load_selected(&self, ids: &[String]) -> Result<(Catalog, Vec<Scenario>), FileError> {
        let catalog = self.catalog()?;
        let all = scenario::load_all(&self.scenarios_dir, &catalog)?;
        for id in ids {
            if !all.iter().any(|s| &s.id == id) {
                let known: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
                return Err(FileError::whole_file(
                    &self.scenarios_dir,
                    format!("no scenario `{id}`"),
                    format!("use one of: {} (`kmatrix list`)", known.join(", ")),
                ));
            }
        }
        let selected = all
            .into_iter()
            .filter(|s| ids.is_empty() || ids.contains(&s.id))
            .collect();
        Ok((catalog, selected))
    }
}
