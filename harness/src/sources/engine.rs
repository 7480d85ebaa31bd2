//! The Docker engine the user already has, found where the docker CLI would
//! find it (`DOCKER_HOST`, else the default socket) and spoken to with
//! bollard. bollard is async; kmatrix is threads, so every call goes through
//! [`Engine::block_on`] on a small runtime of its own.
//!
//! Finding no engine is quick and plain: [`Engine::connect`] gives up after
//! a few seconds with words a user can act on, and callers turn them into
//! `unavailable`, never into a component's failure.

use anyhow::{anyhow, Context, Result};
use bollard::Docker;
use kmatrix_metadata::ContainerEngine;
use std::future::Future;
use std::time::Duration;

/// How long finding the engine may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests that wait for a container to end (or a log to close) run as
/// long as the job; kmatrix's own deadlines bound them, not this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A reachable engine and what it says of itself.
pub struct Engine {
    docker: Docker,
    runtime: tokio::runtime::Runtime,
    /// What the engine says of itself, as run.json records it.
    pub facts: ContainerEngine,
}

/// One line for logs and `kmatrix plan --check`: which engine, where, on
/// which host kernel. (The facts themselves are the results contract's
/// [`ContainerEngine`], as run.json records them.)
pub fn describe(facts: &ContainerEngine) -> String {
    format!(
        "{} (API {}) at {}, host kernel {}",
        facts.version, facts.api_version, facts.endpoint, facts.host_kernel
    )
}

/// Where the docker CLI would look for the engine.
pub fn endpoint() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

impl Engine {
    /// Connects, agrees on an API version and asks the engine what it is.
    /// `Err` says why no engine answered, within [`CONNECT_TIMEOUT`].
    pub fn connect() -> Result<Engine> {
        let endpoint = endpoint();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kmatrix-engine")
            .enable_all()
            .build()
            .context("cannot start the engine client's runtime")?;
        let unreachable = |why: String| {
            anyhow!(
                "no Docker engine reachable at {endpoint}: {why} (start dockerd, or point DOCKER_HOST at a running engine)"
            )
        };
        let connected = runtime.block_on(async {
            let docker = Docker::connect_with_defaults()
                .map_err(|e| unreachable(e.to_string()))?
                .with_timeout(REQUEST_TIMEOUT);
            let asked = async {
                let docker = docker.negotiate_version().await?;
                let version = docker.version().await?;
                let info = docker.info().await?;
                Ok::<_, bollard::errors::Error>((docker, version, info))
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, asked).await {
                Err(_) => Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))),
                Ok(Err(e)) => Err(unreachable(e.to_string())),
                Ok(Ok(answer)) => Ok(answer),
            }
        })?;
        let (docker, version, info) = connected;
        let facts = ContainerEngine {
            endpoint,
            version: format!(
                "Docker Engine {}",
                version
                    .version
                    .unwrap_or_else(|| "(unknown version)".into())
            ),
            api_version: version.api_version.unwrap_or_default(),
            host_kernel: info
                .kernel_version
                .or(version.kernel_version)
                .unwrap_or_else(|| "unknown".into()),
            storage_driver: info.driver.unwrap_or_default(),
            cgroup_version: info
                .cgroup_version
                .map(|v| format!("{v:?}").trim_start_matches('_').to_string())
                .unwrap_or_default(),
        };
        Ok(Engine {
            docker,
            runtime,
            facts,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Runs an engine request to its end on this client's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}
