//! What a cell's kernel axis names: a kernel kmatrix boots in QEMU, or the
//! host's kernel under a Docker engine (`docker`). Backends are chosen by
//! this, so the rest of the run treats both as one more column.

use super::{KernelArtifact, Provisioner};
use crate::ids::KernelId;
use crate::inputs::catalog::KernelSource;
use crate::sources::engine;
use anyhow::Result;
use kmatrix_metadata::ContainerEngine;

#[derive(Debug, Clone)]
pub enum Environment {
    /// A kernel booted in a guest.
    Kernel(KernelArtifact),
    /// Containers on a Docker engine's host kernel.
    Engine {
        id: KernelId,
        facts: ContainerEngine,
    },
}

impl Environment {
    pub fn id(&self) -> &KernelId {
        match self {
            Environment::Kernel(kernel) => &kernel.id,
            Environment::Engine { id, .. } => id,
        }
    }

    /// The kernel to boot; `None` for a container engine.
    pub fn kernel(&self) -> Option<&KernelArtifact> {
        match self {
            Environment::Kernel(kernel) => Some(kernel),
            Environment::Engine { .. } => None,
        }
    }

    pub fn is_container(&self) -> bool {
        matches!(self, Environment::Engine { .. })
    }

    /// Where it came from, in words.
    pub fn origin(&self) -> String {
        match self {
            Environment::Kernel(kernel) => kernel.origin.clone(),
            Environment::Engine { facts, .. } => engine::describe(facts),
        }
    }
}

impl Provisioner<'_> {
    /// The environment `id`: a kernel fetched or built, or a reachable
    /// container engine (an `Err` naming why none answers, within seconds).
    pub fn environment(&self, id: &KernelId) -> Result<Environment> {
        match &self.catalog.kernel(id).source {
            KernelSource::DockerEngine {} => Ok(Environment::Engine {
                id: id.clone(),
                facts: self
                    .engine()
                    .map_err(|why| anyhow::anyhow!("{why}"))?
                    .facts
                    .clone(),
            }),
            _ => Ok(Environment::Kernel(self.kernel(id)?)),
        }
    }
}
