//! `kmatrix plan --check`: per scenario, which cells can run here and which
//! are unavailable here, and why — without fetching or booting anything.

use crate::events::Events;
use crate::ids::KernelId;
use crate::project::{Planned, Request};
use crate::provision::Provisioner;
use crate::sources::cache::Cache;
use crate::Project;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One scenario's answer.
pub struct ScenarioCheck {
    pub scenario: String,
    pub cells: usize,
    pub runnable: usize,
    /// Per kernel: how many cells, and how the kernel can be had (or why not).
    pub kernels: Vec<(KernelId, usize, Result<String, String>)>,
    /// The real component image the versions record, when any.
    pub image: Option<String>,
}

pub fn check(
    project: &Project,
    cache_root: &Path,
    request: &Request,
) -> Result<Vec<ScenarioCheck>> {
    let Planned {
        catalog,
        scenarios,
        cells,
        ..
    } = project.plan(request)?;
    let cache = Cache::open(cache_root)?;
    let provisioner = Provisioner::new(&cache, &catalog, false, Events::none())?;
    let kernels: BTreeSet<&KernelId> = cells.iter().map(|c| &c.kernel).collect();
    let availability: BTreeMap<&KernelId, Result<String, String>> = kernels
        .into_iter()
        .map(|k| (k, provisioner.kernel_availability(k)))
        .collect();
    Ok(scenarios
        .iter()
        .map(|scenario| {
            let mine: Vec<_> = cells.iter().filter(|c| c.scenario == scenario.id).collect();
            ScenarioCheck {
                scenario: scenario.id.to_string(),
                cells: mine.len(),
                runnable: mine
                    .iter()
                    .filter(|c| availability[&c.kernel].is_ok())
                    .count(),
                kernels: availability
                    .iter()
                    .map(|(kernel, state)| {
                        let count = mine.iter().filter(|c| &&c.kernel == kernel).count();
                        ((*kernel).clone(), count, state.clone())
                    })
                    .filter(|(_, count, _)| *count > 0)
                    .collect(),
                image: scenario.versions.iter().find_map(|v| v.image.clone()),
            }
        })
        .collect())
}
