//! kind: a Kubernetes cluster in a Docker container, for users who have
//! Docker and a registry to pull `kindest/node` from. Where kind, the
//! engine or the node image cannot be had, `provision::host::kind` says which within
//! seconds and the cells are `unavailable` with that reason.
//!
//! On a machine with them, a run creates one cluster
//! (`kind create cluster --name kmatrix-<pid> --image <node_image>`), loads
//! each workload image with `kind load image-archive`, talks to it with the
//! kubeconfig kind writes, and deletes it at the end; every container kind
//! makes carries kind's cluster label, so `kind delete cluster --name`
//! removes a killed run's cluster too.

use super::Cluster;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct KindCluster {
    kind: PathBuf,
    name: String,
    kubeconfig: PathBuf,
    node_image: String,
    log_dir: PathBuf,
}

impl KindCluster {
    pub fn start(kind: &Path, node_image: &str, log_dir: &Path) -> Result<KindCluster> {
        let name = format!("kmatrix-{}", std::process::id());
        let kubeconfig = log_dir.join("kind-kubeconfig");
        let output = Command::new(kind)
            .args([
                "create", "cluster", "--name", &name, "--image", node_image, "--wait", "240s",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .output()
            .context("cannot run kind")?;
        std::fs::write(
            log_dir.join("kind-create.log"),
            [output.stdout.as_slice(), output.stderr.as_slice()].concat(),
        )?;
        let cluster = KindCluster {
            kind: kind.to_path_buf(),
            name,
            kubeconfig,
            node_image: node_image.to_string(),
            log_dir: log_dir.to_path_buf(),
        };
        if !output.status.success() {
            bail!(
                "kind create cluster: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(cluster)
    }
}

impl Cluster for KindCluster {
    fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    fn kubectl(&self) -> Command {
        // kind's own node image carries a kubectl of its version; the host's
        // (if any) is used through `kubectl` on PATH.
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    fn load_image(&self, archive: &Path) -> Result<()> {
        let output = Command::new(&self.kind)
            .args(["load", "image-archive", "--name", &self.name])
            .arg(archive)
            .output()
            .context("cannot run kind")?;
        if !output.status.success() {
            bail!(
                "kind load image-archive: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn facts(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cluster".to_string(), "kind".to_string()),
            ("kind.node_image".to_string(), self.node_image.clone()),
        ])
    }

    fn keep_logs(&self) {
        let _ = Command::new(&self.kind)
            .args(["export", "logs", "--name", &self.name])
            .arg(self.log_dir.join("kind-logs"))
            .output();
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.kind)
            .args(["delete", "cluster", "--name", &self.name])
            .output();
    }
}
