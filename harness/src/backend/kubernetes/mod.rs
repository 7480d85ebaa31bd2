//! The Kubernetes backend: one cluster per environment per run (a "boot"),
//! every cell a workload in a namespace of its own, applied and watched with
//! the cluster's own kubectl. It reports what it saw as the same events a
//! guest's agent sends, so verdicts are made as for any other cell.
//!
//! `node.rs` says what a single-node cluster is (its files and command
//! lines); `local.rs` assembles it on this host and tears it down (and
//! sweeps what a killed run left); `guest.rs` runs it inside a QEMU guest
//! of the kernel under test; `kind.rs` is the kind path; `workload.rs`
//! deploys one cell and probes it.

mod api;
pub mod guest;
pub mod images;
mod iptables;
pub mod kind;
pub mod local;
pub mod node;
pub mod workload;

use super::{Backend, BootEnd, BootOutcome, BootRequest};
use crate::backend::Workload;
use crate::cancel::Cancel;
use crate::inputs::scenario::KubeProxyMode;
use crate::provision::{ClusterKind, Environment};
use kmatrix_agent::GuestEvent;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A running cluster, as the workloads need it.
pub trait Cluster {
    /// `kubectl` with this cluster's kubeconfig.
    fn kubectl(&self) -> std::process::Command;
    /// The kubeconfig the host reaches the API server with (kubectl and
    /// [`api::KubeApi`]).
    fn kubeconfig(&self) -> PathBuf;
    /// Makes `archive` (an OCI image archive) runnable on the node without a pull.
    fn load_image(&self, archive: &Path) -> anyhow::Result<()>;
    /// Whether the workloads' images were loaded when the cluster started
    /// (a guest's node gets them at boot), so none is loaded per cell.
    fn images_preloaded(&self) -> bool {
        false
    }
    /// What the cells record about it.
    fn facts(&self) -> BTreeMap<String, String>;
    /// The kernel release the pods run on.
    fn kernel_release(&self) -> String {
        host_release()
    }
    /// How many times longer than on the host pods take to start (an
    /// emulated guest): the workloads' deadlines are stretched by it.
    fn slowdown(&self) -> u32 {
        1
    }
    /// Why the cluster is gone (its guest stopped), if it is.
    fn died(&self) -> Option<String> {
        None
    }
    /// Copies or writes what the cluster logged so far into the run's log folder.
    fn keep_logs(&self) {}
}

/// One API request's bound on the host (stretched by [`Cluster::slowdown`]).
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct KubernetesBackend {
    pub interrupted: Cancel,
    /// Where image archives are written before they are loaded.
    pub scratch: PathBuf,
    /// The emulator for clusters inside a guest (`<kernel>+k8s`).
    pub vm: Option<guest::GuestVm>,
    /// Held while a guest cluster runs: one at a time. Two such guests
    /// (2 vCPUs each, busy control planes) on a 2-core host took minutes
    /// longer each than one after the other.
    guest_slot: std::sync::Mutex<()>,
}

impl KubernetesBackend {
    pub fn new(interrupted: Cancel, scratch: &Path) -> Self {
        KubernetesBackend {
            interrupted,
            scratch: scratch.to_path_buf(),
            vm: None,
            guest_slot: std::sync::Mutex::new(()),
        }
    }
}

impl Backend for KubernetesBackend {
    fn name(&self) -> String {
        "kubernetes".into()
    }

    fn boot(&self, request: &BootRequest, on_event: &mut dyn FnMut(&GuestEvent)) -> BootOutcome {
        let mut outcome = BootOutcome::starting(request, self.name());
        let _ = std::fs::create_dir_all(&request.log_dir);
        let mut record = |event: GuestEvent, outcome: &mut BootOutcome| {
            on_event(&event);
            outcome.events.push(event);
        };
        let Environment::Cluster { cluster, .. } = &request.environment else {
            outcome.end = BootEnd::BackendFailed {
                detail: "the Kubernetes backend was given no cluster".into(),
            };
            return outcome;
        };
        let boot_name = request.log_dir.file_name().unwrap_or_default();
        let scratch = (self.scratch).join(format!("kubernetes-{}", boot_name.to_string_lossy()));
        let kube_proxy = request.kube_proxy.unwrap_or(KubeProxyMode::Iptables);
        let _slot = matches!(cluster, ClusterKind::Guest(_))
            .then(|| self.guest_slot.lock().unwrap_or_else(|e| e.into_inner()));
        if self.interrupted.is_cancelled() {
            // Ctrl-C while this boot waited for the slot: start nothing.
            outcome.end = BootEnd::Interrupted;
            return outcome;
        }
        let started = self
            .start_cluster(cluster, request, kube_proxy, &scratch)
            .and_then(|cluster| Ok((served_facts(cluster.as_ref())?, cluster)));
        let (facts, cluster) = match started {
            Ok(started) => started,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                self.not_up(&mut outcome, &e);
                return outcome;
            }
        };
        record(
            GuestEvent::Hello {
                kernel_release: cluster.kernel_release(),
                facts,
            },
            &mut outcome,
        );
        let mut died = None;
        // Variants of a version share its image: the node imports it once.
        let loaded = std::cell::RefCell::new(std::collections::BTreeSet::new());
        for work in &request.workloads {
            if self.interrupted.is_cancelled() {
                break;
            }
            if let Some(why) = cluster.died() {
                died = Some(why);
                break;
            }
            record(
                GuestEvent::CellStart {
                    cell_id: work.cell_id.clone(),
                },
                &mut outcome,
            );
            let events = self.deploy(cluster.as_ref(), work, &scratch, &request.log_dir, &loaded);
            if let Some(why) = cluster.died() {
                // The guest went down during the cell: its events say
                // nothing of the workload. The runner judges the death.
                died = Some(why);
                break;
            }
            for event in events {
                record(event, &mut outcome);
            }
            if self.interrupted.is_cancelled() {
                break;
            }
            record(
                GuestEvent::CellDone {
                    cell_id: work.cell_id.clone(),
                },
                &mut outcome,
            );
        }
        cluster.keep_logs();
        drop(cluster); // tears it down
        let _ = std::fs::remove_dir_all(&scratch);
        if let Some(why) = died {
            outcome.console = std::fs::read_to_string(&outcome.console_path)
                .map(|s| s.replace('\r', ""))
                .unwrap_or_default();
            outcome.end = BootEnd::GuestDied { detail: why };
        } else if self.interrupted.is_cancelled() {
            outcome.end = BootEnd::Interrupted;
        } else {
            record(GuestEvent::Done, &mut outcome);
        }
        outcome
    }
}

impl KubernetesBackend {
    /// One cell on the cluster: its events.
    fn deploy(
        &self,
        cluster: &dyn Cluster,
        work: &Workload,
        scratch: &Path,
        log_dir: &Path,
        loaded: &std::cell::RefCell<std::collections::BTreeSet<String>>,
    ) -> Vec<GuestEvent> {
        workload::Deployment {
            api: api::KubeApi::connect(
                &cluster.kubeconfig(),
                &work.kube.namespace,
                API_TIMEOUT * cluster.slowdown(),
            ),
            cluster,
            work,
            scratch,
            interrupted: &self.interrupted,
            log_dir,
            loaded,
        }
        .run()
    }

    /// Boots a guest of the cluster's kernel with the node.
    fn start_guest(
        &self,
        request: &BootRequest,
        parts: &crate::provision::GuestCluster,
        kube_proxy: KubeProxyMode,
        scratch: &Path,
    ) -> anyhow::Result<guest::GuestNode> {
        use anyhow::Context;
        let vm = self
            .vm
            .as_ref()
            .context("this run has no emulator for a cluster inside a guest")?;
        guest::GuestNode::start(request, parts, kube_proxy, vm, scratch, &self.interrupted)
    }
}

/// Runs `command` (`kubectl` from [`Cluster::kubectl`], `ip`, …) with
/// `args`: its stdout, or an error naming the program and the arguments,
/// with its stderr.
pub fn command_output(mut command: std::process::Command, args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let program = std::path::Path::new(command.get_program())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let output = command
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The cluster's facts, `kubernetes` being the release its API server
/// reports (`/version`): a cluster assembled from another release than the
/// run asked for (a build that is not what its cache key says) did not come
/// up as asked.
fn served_facts(cluster: &dyn Cluster) -> anyhow::Result<BTreeMap<String, String>> {
    let mut facts = cluster.facts();
    let served = api::KubeApi::connect(
        &cluster.kubeconfig(),
        "default",
        API_TIMEOUT * cluster.slowdown(),
    )?
    .server_version()?;
    if let Some(asked) = facts.get("kubernetes").filter(|asked| **asked != served) {
        anyhow::bail!(
            "the API server is {served}, the run asked for {asked}: remove the cached build (the cache's kubernetes-built folder) and run again"
        );
    }
    facts.insert("kubernetes".into(), served);
    Ok(facts)
}

/// The host kernel's release: what the cluster's pods run on.
pub fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl KubernetesBackend {
    /// The request's cluster, up: a guest's (one at a time), the host's,
    /// or kind's.
    fn start_cluster(
        &self,
        cluster: &ClusterKind,
        request: &BootRequest,
        kube_proxy: KubeProxyMode,
        scratch: &Path,
    ) -> anyhow::Result<Box<dyn Cluster>> {
        match cluster {
            ClusterKind::Guest(parts) => self
                .start_guest(request, parts, kube_proxy, scratch)
                .map(|c| Box::new(c) as Box<dyn Cluster>),
            ClusterKind::Local(parts) => {
                local::LocalCluster::start(parts, kube_proxy, &request.log_dir, &self.interrupted)
                    .map(|c| Box::new(c) as Box<dyn Cluster>)
            }
            ClusterKind::Kind { node_image, kind } => {
                kind::KindCluster::start(kind, node_image, &request.log_dir)
                    .map(|c| Box::new(c) as Box<dyn Cluster>)
            }
        }
    }

    /// A cluster that did not come up: why, after the guest's console
    /// (its kernel's), and how the boot ended.
    fn not_up(&self, outcome: &mut BootOutcome, e: &anyhow::Error) {
        // A guest's console is its kernel's: keep it, and say why after.
        let console = std::fs::read_to_string(&outcome.console_path).unwrap_or_default();
        outcome.console = format!("{console}{e:#}\n");
        let _ = std::fs::write(&outcome.console_path, &outcome.console);
        outcome.end = if self.interrupted.is_cancelled() {
            BootEnd::Interrupted
        } else {
            BootEnd::BackendFailed {
                detail: format!("the cluster did not come up: {e:#}"),
            }
        };
    }
}
