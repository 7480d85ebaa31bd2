//! `kmatrix kernels list|fetch|build`: the catalog's kernels, whether each is
//! cached, and preparing them ahead of a run.

use crate::events::Events;
use crate::ids::KernelId;
use crate::inputs::KernelEntry;
use crate::provision::{Environment, Provisioner};
use crate::sources::cache::Cache;
use crate::Project;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

pub struct KernelRow {
    pub entry: KernelEntry,
    /// `Some(true)` cached, `Some(false)` not, `None` could not tell.
    pub cached: Option<bool>,
}

pub fn list(project: &Project, cache_root: &Path) -> Result<Vec<KernelRow>> {
    let catalog = project.catalog()?;
    let cache = Cache::open(cache_root)?;
    let provisioner = Provisioner::new(&cache, &catalog, false, Events::none())?;
    let mut rows: Vec<KernelRow> = catalog
        .kernels
        .values()
        .map(|entry| KernelRow {
            cached: provisioner.kernel_is_cached(&entry.id).ok(),
            entry: entry.clone(),
        })
        .collect();
    // Oldest to newest, as report columns run.
    rows.sort_by_cached_key(|row| {
        (
            crate::report::model::kernel_version_key(&row.entry.release_hint()),
            row.entry.id.clone(),
        )
    });
    Ok(rows)
}

/// One kernel (or cluster) made ready, and how long it took (or why it could not be).
pub type Fetched = (KernelId, Result<(Environment, Duration)>);

/// Fetches (or builds) each kernel; one result per id, in order.
pub fn fetch(
    project: &Project,
    cache_root: &Path,
    ids: &[String],
    events: Events,
) -> Result<Vec<Fetched>> {
    let mut catalog = project.catalog()?;
    let ids = catalog.kernel_ids_from(ids)?;
    let cache = Cache::open(cache_root)?.watched_by(events.clone());
    let provisioner = Provisioner::new(&cache, &catalog, false, events.clone())?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let started = std::time::Instant::now();
            let made = events
                .step(&format!("environment {id}"), || {
                    provisioner.environment(&id)
                })
                .map(|kernel| (kernel, started.elapsed()));
            (id, made)
        })
        .collect())
}
