//! `kmatrix plan --check`: per scenario, which cells can run here and which
//! are unavailable here, and why — without fetching or booting anything.

use crate::events::Events;
use crate::ids::KernelId;
use crate::inputs::scenario::RealNeeds;
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
    /// Per version with a real artifact (run here or only recorded):
    /// what it is, and whether it can run here (or why not).
    pub real: Vec<(String, String, Result<String, String>)>,
}

/// Whether a version's real artifact can run here, without fetching it.
fn real_artifact_here(
    version: &crate::inputs::scenario::Version,
) -> Option<(String, Result<String, String>)> {
    use crate::inputs::scenario::Artifact;
    use crate::sources::oci::{reference, source};
    let pullable = |image: &str| -> Result<String, String> {
        let parsed = reference::parse(image)?;
        source::open(&parsed)
            .resolve()
            .map(|resolved| format!("can be pulled here ({})", resolved.digest))
            .map_err(|e| e.to_string())
    };
    if let Some(artifact) = &version.artifact {
        return Some(match artifact {
            Artifact::Image(image) => (image.clone(), pullable(image)),
            Artifact::DebianPackage(p) => (
                format!("Debian {} {}={}", p.suite, p.package, p.version),
                Ok("runs here (Debian's archive is reachable)".into()),
            ),
            Artifact::Binary(path) => (path.display().to_string(), Ok("runs here".into())),
            Artifact::GoModule(m) => (
                format!("module {}", m.reference()),
                Ok(format!(
                    "built here from its module with {} (fetched through the Go module proxy on first use; pinned by its h1: hash)",
                    m.toolchain
                )),
            ),
        });
    }
    let real = version.real.as_ref()?;
    let state = match real.needs {
        RealNeeds::Kubernetes => pullable(&real.image).and_then(|how| {
            Err(format!(
                "{how}, but `{}` needs a Kubernetes API server: the scenario records it without running it (a version with this image and a manifest of its own would run it on k8s-local, <kernel>+k8s or kind)",
                real.command.join(" ")
            ))
        }),
        RealNeeds::Registry => pullable(&real.image).map(|how| format!("{how}; runs `{}`", real.command.join(" "))),
    };
    Some((real.image.clone(), state))
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
                real: scenario
                    .versions
                    .iter()
                    .filter_map(|v| {
                        real_artifact_here(v).map(|(what, state)| (v.id.clone(), what, state))
                    })
                    .collect(),
            }
        })
        .collect())
}
