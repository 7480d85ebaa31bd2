//! A scenario's `[kubernetes]`: the workload's manifest templates, what
//! must roll out, and the probes run as pods against it.

use super::{Probe, ProbeSpec, Signature, SignatureVerdict, Validator};
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
    /// Ids of `fail` signatures that, once a running workload logs them,
    /// settle the rollout: the component refused and will not recover.
    #[serde(default)]
    fails_on: Option<Spanned<Vec<String>>>,
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
    /// The `fails_on` signatures' patterns as one: seen in a running
    /// workload's log, the wait ends (instead of at the deadline) and the
    /// cell is classified from the logs as it would be then.
    pub fails_on: Option<Regex>,
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
        signatures: &[Signature],
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
        let fails_on = match &spec.fails_on {
            Some(ids) if ready_log.is_none() => {
                return Err(self.error(
                    ids.span(),
                    "fails_on without ready_log: the rollout already ends when its pods run".into(),
                    "add ready_log = \"...\" (the line the workload logs once it is up), or drop fails_on".into(),
                ))
            }
            Some(ids) => Some(self.fails_on(ids, signatures)?),
            None => None,
        };
        Ok(KubernetesSpec {
            templates,
            fails_on,
            rollout: spec.rollout.into_inner(),
            timeout_secs: spec.timeout_secs,
            guest: spec.guest,
            ready_log,
            probes: self.probes(spec.probe, has_reproducer)?,
        })
    }

    /// `fails_on`'s ids, each a `fail` signature of the scenario, as one
    /// pattern.
    fn fails_on(
        &self,
        ids: &Spanned<Vec<String>>,
        signatures: &[Signature],
    ) -> Result<Regex, FileError> {
        let failing: Vec<&Signature> = signatures
            .iter()
            .filter(|s| s.verdict == SignatureVerdict::Fail)
            .collect();
        let mut patterns = Vec::new();
        for id in ids.get_ref() {
            let Some(signature) = failing.iter().find(|s| &s.id == id) else {
                let known: Vec<&str> = failing.iter().map(|s| s.id.as_str()).collect();
                return Err(self.error(
                    ids.span(),
                    format!("fails_on names `{id}`, which is no `fail` signature of this scenario"),
                    format!(
                        "name [[signature]] ids whose verdict is \"fail\" (here: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            patterns.push(format!("(?:{})", signature.pattern.as_str()));
        }
        Regex::new(&patterns.join("|")).map_err(|e| {
            self.error(
                ids.span(),
                format!("cannot join the patterns: {e}"),
                "check the signatures' patterns".into(),
            )
        })
    }
}
