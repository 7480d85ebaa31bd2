//! A scenario's `[kubernetes]`: the workload's manifest templates, what
//! must roll out, and the probes run as pods against it.

use super::{Probe, ProbeSpec, Validator};
use crate::diagnostic::FileError;
use regex::Regex;
use serde::Deserialize;
use std::fs;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KubernetesFileSpec {
    /// The folder of manifest templates (handlebars), relative to the scenario.
    #[serde(default = "default_manifests")]
    manifests: Spanned<String>,
    /// What must become ready (`daemonset/NAME`, `deployment/NAME`).
    rollout: Spanned<Vec<String>>,
    /// The rollout's deadline.
    timeout_secs: u64,
    /// What the workload's log must say once it is up (a regex).
    #[serde(default)]
    ready_log: Option<Spanned<String>>,
    /// Probes run in probe pods after the rollout.
    #[serde(default)]
    probe: Vec<ProbeSpec>,
    /// Whether the workload may also run on the local cluster inside a
    /// kernel's guest (`<kernel>+k8s`): minutes per boot under TCG, so
    /// only where the kernel is the point.
    #[serde(default)]
    guest: bool,
}

fn default_manifests() -> Spanned<String> {
    Spanned::new(0..0, "kubernetes".into())
}

/// A scenario's Kubernetes workload: manifests rendered per version and
/// variant, what must roll out, and the probes run against it.
#[derive(Debug, Clone)]
pub struct KubernetesSpec {
    /// (file name, template text), sorted by name: applied in this order.
    pub templates: Vec<(String, String)>,
    pub rollout: Vec<String>,
    pub timeout_secs: u64,
    pub ready_log: Option<Regex>,
    /// Their `run` may use `{reproducer}` (the program in the workload's
    /// image), `{service:NAME}` (the Service's ClusterIP:port) and
    /// `{endpoint:NAME}` (its first pod IP:port).
    pub probes: Vec<Probe>,
    /// Opted into `<kernel>+k8s` environments (`guest = true`).
    pub guest: bool,
}

impl Validator<'_> {
    pub(super) fn kubernetes(
        &self,
        spec: KubernetesFileSpec,
        has_reproducer: bool,
    ) -> Result<KubernetesSpec, FileError> {
        let folder = self.folder.join(spec.manifests.get_ref());
        let mut templates: Vec<(String, String)> = fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                    .filter_map(|p| {
                        let text = fs::read_to_string(&p).ok()?;
                        Some((p.file_name()?.to_string_lossy().into_owned(), text))
                    })
                    .collect()
            })
            .unwrap_or_default();
        templates.sort();
        if templates.is_empty() {
            return Err(self.error(
                spec.manifests.span(),
                format!("no manifest templates (*.yaml) in {}", folder.display()),
                "put the workload's manifests there (handlebars: {{image}}, {{namespace}}, {{#each env}}); see scenarios/ollama-mptcp/kubernetes".into(),
            ));
        }
        for (name, text) in &templates {
            if let Err(e) = handlebars::Template::compile(text) {
                return Err(FileError::whole_file(
                    &folder.join(name),
                    format!("not a handlebars template: {e}"),
                    "fix the {{...}} expression it names",
                ));
            }
        }
        for target in spec.rollout.get_ref() {
            let kind = target.split_once('/').map(|(k, _)| k);
            if !matches!(kind, Some("daemonset" | "deployment" | "statefulset")) {
                return Err(self.error(
                    spec.rollout.span(),
                    format!("cannot wait for `{target}`"),
                    "name each as daemonset/NAME, deployment/NAME or statefulset/NAME".into(),
                ));
            }
        }
        let ready_log = match &spec.ready_log {
            Some(pattern) => Some(Regex::new(pattern.get_ref()).map_err(|e| {
                self.error(
                    pattern.span(),
                    format!("ready_log is not a regular expression: {e}"),
                    "write a Rust regex".into(),
                )
            })?),
            None => None,
        };
        Ok(KubernetesSpec {
            templates,
            rollout: spec.rollout.into_inner(),
            timeout_secs: spec.timeout_secs,
            guest: spec.guest,
            ready_log,
            probes: self.probes(spec.probe, has_reproducer)?,
        })
    }
}
