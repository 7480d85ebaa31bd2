//! A kmatrix project on disk (`images/`, `scenarios/`, `results/`), and the
//! one sequence every planning command shares: load the catalog and the
//! scenarios, load the lock, check the `--kernel` ids, plan, select.

use crate::diagnostic::FileError;
use crate::ids::KernelId;
use crate::inputs::scenario::{self, Scenario};
use crate::inputs::{catalog, Catalog, Lock};
use crate::plan::{self, Cell, Selection};
use kmatrix_metadata::{CellRecord, RunSelection};
use std::path::{Path, PathBuf};

/// The project folders kmatrix reads: `images/` (catalogs) and `scenarios/`.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub scenarios_dir: PathBuf,
}

/// What a command asks to plan: scenario and kernel ids as the user typed
/// them (empty = all scenarios, each on its own kernels) and the selection.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub scenarios: Vec<String>,
    pub kernels: Vec<String>,
    /// `--add-version` values: versions given for this run only.
    pub added_versions: Vec<String>,
    /// `--kubernetes`: the release the run's clusters are built from.
    pub kubernetes: Option<String>,
    pub selection: Selection,
}

impl Request {
    /// The request as `run.json` keeps it.
    pub fn to_selection(&self, retries: u32) -> RunSelection {
        RunSelection {
            scenarios: self.scenarios.clone(),
            kernels: self.kernels.clone(),
            variants: self.selection.variants.clone(),
            versions: self.selection.versions.clone(),
            cells: self.selection.cells.clone(),
            shard: self.selection.shard.map(|s| s.to_string()),
            retries,
            added_versions: self.added_versions.clone(),
            kubernetes: self.kubernetes.clone(),
        }
    }

    /// A resume's options against the run's own: the clusters' release is
    /// the run's (another one would be another run, `run_json` says which).
    pub fn same_kubernetes_as(&self, run: &Request, run_json: &Path) -> Result<(), FileError> {
        if self.kubernetes.is_none() || self.kubernetes == run.kubernetes {
            return Ok(());
        }
        Err(FileError::whole_file(
            run_json,
            format!(
                "--kubernetes {}: this run was started with {}",
                self.kubernetes.as_deref().unwrap_or_default(),
                run.kubernetes
                    .as_deref()
                    .map_or("the default release".to_string(), |r| format!(
                        "--kubernetes {r}"
                    ))
            ),
            "leave --kubernetes out to resume it as started, or start a new run with --out",
        ))
    }

    /// The request a `run.json` selection stands for.
    pub fn from_selection(selection: &RunSelection, source: &Path) -> Result<Request, FileError> {
        let shard = selection
            .shard
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| {
                FileError::whole_file(
                    source,
                    format!("selection.shard: {e}"),
                    "restore run.json from the run's artifacts, or start a new run",
                )
            })?;
        Ok(Request {
            scenarios: selection.scenarios.clone(),
            kernels: selection.kernels.clone(),
            added_versions: selection.added_versions.clone(),
            kubernetes: selection.kubernetes.clone(),
            selection: Selection {
                variants: selection.variants.clone(),
                versions: selection.versions.clone(),
                cells: selection.cells.clone(),
                shard,
            },
        })
    }
}

/// Loaded inputs and the cells they plan to.
pub struct Planned {
    pub catalog: Catalog,
    pub scenarios: Vec<Scenario>,
    pub lock: Lock,
    /// `--kernel` ids, checked against the catalog.
    pub kernels: Vec<KernelId>,
    pub selection: Selection,
    pub cells: Vec<Cell>,
    /// A resume's own options, which narrow the run's selection.
    pub narrowed: Option<Request>,
}

impl Planned {
    /// Each scenario's failure signatures, for the runner's classifier.
    pub fn signatures(
        &self,
    ) -> std::collections::BTreeMap<crate::ids::ScenarioId, Vec<crate::inputs::scenario::Signature>>
    {
        self.scenarios
            .iter()
            .map(|s| (s.id.clone(), s.signatures.clone()))
            .collect()
    }

    /// The same request planned again under `lock` (provisioning may pin new
    /// checksums, and cell ids hash the pins).
    pub fn replan(&self, lock: &Lock) -> Result<Vec<Cell>, FileError> {
        let cells = self.selection.apply(plan::plan(
            &self.scenarios,
            &self.kernels,
            &self.catalog,
            lock,
        )?);
        Ok(match &self.narrowed {
            Some(narrow) => narrow_cells(cells, narrow),
            None => cells,
        })
    }

    /// Keeps the cells `narrow` selects too (options given with `--resume`).
    /// Each id it names must be part of the plan; otherwise it is bad input
    /// naming `source` (the run's `run.json`) and what the run covers.
    pub fn narrow(&mut self, narrow: &Request, source: &Path) -> Result<(), FileError> {
        let covered = |values: Vec<&str>| {
            let mut values: Vec<&str> = values;
            values.sort_by_key(|v| crate::ids::version_order_key(v));
            values.dedup();
            values.join(", ")
        };
        let checks: [(&str, &Vec<String>, Vec<&str>); 5] = [
            (
                "--scenario",
                &narrow.scenarios,
                self.cells.iter().map(|c| c.scenario.as_str()).collect(),
            ),
            (
                "--kernel",
                &narrow.kernels,
                self.cells.iter().map(|c| c.kernel.as_str()).collect(),
            ),
            (
                "--variant",
                &narrow.selection.variants,
                self.cells.iter().map(|c| c.variant.as_str()).collect(),
            ),
            (
                "--version",
                &narrow.selection.versions,
                self.cells.iter().map(|c| c.version.as_str()).collect(),
            ),
            (
                "--cell",
                &narrow.selection.cells,
                self.cells.iter().map(|c| c.id.as_str()).collect(),
            ),
        ];
        for (option, given, planned) in checks {
            if let Some(outside) = given.iter().find(|g| !planned.contains(&g.as_str())) {
                return Err(FileError::whole_file(
                    source,
                    format!("{option} {outside} is not part of the run being resumed"),
                    format!(
                        "--resume continues the run as it was started; {option} may only narrow it to: {}",
                        covered(planned)
                    ),
                ));
            }
        }
        self.cells = narrow_cells(std::mem::take(&mut self.cells), narrow);
        self.narrowed = Some(narrow.clone());
        Ok(())
    }
}

/// The cells that `narrow`'s scenario, kernel, variant, cell and shard
/// options select as well (an empty option selects all).
fn narrow_cells(cells: Vec<Cell>, narrow: &Request) -> Vec<Cell> {
    let keep = |given: &[String], value: &str| given.is_empty() || given.iter().any(|g| g == value);
    let cells: Vec<Cell> = cells
        .into_iter()
        .filter(|c| keep(&narrow.scenarios, c.scenario.as_str()))
        .filter(|c| keep(&narrow.kernels, c.kernel.as_str()))
        .collect();
    narrow.selection.apply(cells)
}

impl Project {
    pub fn new(root: &Path) -> Project {
        Project {
            root: root.to_path_buf(),
            scenarios_dir: root.join("scenarios"),
        }
    }

    /// The root as an absolute path (as given when it cannot be resolved).
    pub fn canonical_root(&self) -> PathBuf {
        std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone())
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

    pub fn baseline_cells(&self) -> Option<Vec<CellRecord>> {
        crate::results::read_run(&self.baseline_dir())
            .ok()
            .map(|cells| cells.records)
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
        // Only the scenarios asked for are loaded (a folder is named by its
        // id): a broken one elsewhere does not block them.
        let all: Vec<Scenario> = scenario::load_each(&self.scenarios_dir, &catalog, |folder| {
            ids.is_empty() || ids.iter().any(|id| id == folder)
        })?
        .into_iter()
        .collect::<Result<_, _>>()?;
        for id in ids {
            if !all.iter().any(|s| s.id == *id) {
                // Every folder's name (its id), the broken ones' too.
                let known: Vec<String> = scenario::folders(&self.scenarios_dir)?
                    .iter()
                    .filter_map(|f| f.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                return Err(FileError::whole_file(
                    &self.scenarios_dir,
                    format!("no scenario `{id}`"),
                    format!("use one of: {} (`kmatrix list`)", known.join(", ")),
                ));
            }
        }
        let selected = all
            .into_iter()
            .filter(|s| ids.is_empty() || ids.iter().any(|id| s.id == *id))
            .collect();
        Ok((catalog, selected))
    }

    /// Loads everything and plans `request`: the one path from command-line
    /// ids to cells, used by `plan`, `run`, `repro` and `plan --check`.
    pub fn plan(&self, request: &Request) -> Result<Planned, FileError> {
        let (mut catalog, mut scenarios) = self.load_selected(&request.scenarios)?;
        if let Some(release) = &request.kubernetes {
            let file = self.images_dir().join(catalog::KUBERNETES_FILE);
            match catalog.kubernetes.as_mut() {
                Some(kubernetes) => kubernetes.select(release, &file)?,
                None => {
                    return Err(FileError::whole_file(
                        &file,
                        format!("--kubernetes {release}: this project has no Kubernetes catalog"),
                        "add images/kubernetes.toml (see kmatrix's own), or leave --kubernetes out",
                    ))
                }
            }
        }
        crate::inputs::added::add_versions(
            &mut scenarios,
            &request.added_versions,
            &self.scenarios_dir,
        )?;
        let mut selection = request.selection.clone();
        if !selection.versions.is_empty() {
            // A version given for this run is wanted even when --version narrows it.
            for added in &request.added_versions {
                if let Ok(parsed) = crate::inputs::added::AddedVersion::parse(added) {
                    selection.versions.push(parsed.id());
                }
            }
        }
        let request = &Request {
            selection,
            ..request.clone()
        };
        let lock = Lock::load(&self.images_dir())?;
        let kernels = catalog.kernel_ids_from(&request.kernels)?;
        for (option, given, known) in [
            (
                "--variant",
                &request.selection.variants,
                scenarios
                    .iter()
                    .flat_map(|s| s.variants.iter().map(|v| v.id.as_str()))
                    .collect::<Vec<_>>(),
            ),
            (
                "--version",
                &request.selection.versions,
                scenarios
                    .iter()
                    .flat_map(|s| s.versions.iter().map(|v| v.id.as_str()))
                    .collect(),
            ),
        ] {
            if let Some(unknown) = given.iter().find(|g| !known.contains(&g.as_str())) {
                let mut known = known;
                known.sort_by_key(|v| crate::ids::version_order_key(v));
                known.dedup();
                return Err(FileError::whole_file(
                    &self.scenarios_dir,
                    format!("{option} {unknown}: no selected scenario has it"),
                    format!("use one of: {}", known.join(", ")),
                ));
            }
        }
        let cells = request
            .selection
            .apply(plan::plan(&scenarios, &kernels, &catalog, &lock)?);
        Ok(Planned {
            catalog,
            scenarios,
            lock,
            kernels,
            selection: request.selection.clone(),
            cells,
            narrowed: None,
        })
    }
}
