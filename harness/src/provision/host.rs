//! What this host has for the environments that are not a kernel of
//! kmatrix's own: probes asked at plan and provision time ("is this
//! environment available here, and why not"), below the backends that
//! later use what they find.

use crate::files;
use crate::inputs::catalog::KindEntry;
use anyhow::Result;
use std::path::PathBuf;
use std::process::Command;

/// Where a node image is pulled from when the engine does not hold it.
const REGISTRY: &str = "https://registry-1.docker.io/v2/";

/// A `kind` binary, a Docker engine, and the node image (held by the engine,
/// or its registry reachable): the kind binary's path, or why not.
pub fn kind(entry: Option<&KindEntry>) -> Result<PathBuf, String> {
    let entry = entry.ok_or("this project has no images/kubernetes.toml [kind]")?;
    // What can least be fixed here is said first: the engine, the image.
    crate::sources::engine::Engine::connect()
        .map_err(|e| format!("kind needs a Docker engine: {e:#}"))?;
    let held = Command::new("docker")
        .args(["image", "inspect", &entry.node_image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !held {
        crate::sources::fetch::reachable(REGISTRY).map_err(|e| {
            format!(
                "kind's node image {} is not in the Docker engine and its registry does not answer ({e:#}); `docker load` it, or run where Docker Hub is reachable",
                entry.node_image
            )
        })?;
    }
    let kind = files::which("kind").ok_or_else(|| {
        format!(
            "no `kind` on PATH (Debian {}'s `{}` package has one: apt-get install -t {} {})",
            entry.suite, entry.package, entry.suite, entry.package
        )
    })?;
    if files::which("kubectl").is_none() {
        return Err("kind cells are driven with `kubectl`, and none is on PATH".into());
    }
    Ok(kind)
}

/// Whether the tools a local cluster needs on the host are there.
pub fn local_cluster_tools() -> Result<()> {
    files::require_tools(
        &["iptables", "iptables-save", "ip", "umount"],
        "a local cluster needs on the host",
    )
}
