//! A cell on a cluster: the scenario's manifest templates rendered for one
//! version and variant, and the rollout that is its first probe.

use super::CellProbe;
use crate::diagnostic::FileError;
use crate::hashing::sha256_bytes;
use crate::inputs::scenario::{
    KubeProxyMode, KubernetesSpec, Scenario, Variant, Version, REPRODUCER_PLACEHOLDER,
};
use crate::verdict::Expectation;
use serde::Serialize;
use std::collections::BTreeMap;

/// A cell as a Kubernetes workload: its manifests rendered for the
/// version and variant, applied in a namespace of its own.
#[derive(Debug, Clone, Serialize)]
pub struct KubeWork {
    pub namespace: String,
    /// The scenario's templates rendered, as one multi-document YAML.
    pub manifests: String,
    /// The image the manifests run: the version's reproducer, loaded into
    /// the node from kmatrix's cache (never pulled).
    pub image: String,
    /// What must become ready, e.g. `daemonset/kube-ovn-cni`.
    pub rollout: Vec<String>,
    /// Run in probe pods after the rollout (the cell's probes after `rollout`).
    pub probes: Vec<CellProbe>,
    /// kube-proxy's mode the variant asks for (`None`: iptables, the
    /// default). Cells differing in it never share a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kube_proxy: Option<KubeProxyMode>,
    /// The scenario lets it run on a cluster inside a guest (`<kernel>+k8s`).
    /// A permission, not an input: it changes no cell's id.
    #[serde(skip)]
    pub guest: bool,
}

/// The first probe of every Kubernetes cell: apply, then wait for the rollout.
pub const ROLLOUT_PROBE: &str = "rollout";
/// Where the reproducer sits in a workload image.
pub const IMAGE_REPRODUCER: &str = "/usr/local/bin/reproducer";

/// Renders the scenario's manifest templates for one version and variant.
pub(super) fn kube_work(
    scenario: &Scenario,
    spec: &KubernetesSpec,
    version: &Version,
    variant: &Variant,
) -> Result<KubeWork, FileError> {
    let real = version.artifact.is_some();
    let command = serde_json::to_string(&version.command).expect("strings serialize");
    let version = version.id.as_str();
    let namespace = format!(
        "km-{}",
        &sha256_bytes(format!("{}\0{version}\0{}", scenario.id, variant.id).as_bytes())[..12]
    );
    let image = format!("kmatrix.local/{}:{version}", scenario.id);
    let mut renderer = handlebars::Handlebars::new();
    renderer.set_strict_mode(true);
    renderer.register_escape_fn(handlebars::no_escape);
    let context = serde_json::json!({
        "scenario": scenario.id,
        "component": scenario.component,
        "version": version,
        "variant": variant.id,
        "namespace": namespace,
        "image": image,
        "reproducer": IMAGE_REPRODUCER,
        "env": variant.env,
        // A real version's image is the release's; `command` is the
        // version's command (JSON), empty for the image's own entrypoint.
        "real": real,
        "command": command,
    });
    let mut manifests = String::new();
    for (name, template) in &spec.templates {
        let rendered = renderer.render_template(template, &context).map_err(|e| {
            FileError::whole_file(
                &scenario.dir.join("kubernetes").join(name),
                format!("cannot render for {version} × {}: {e}", variant.id),
                "use only image, namespace, reproducer, scenario, component, version, variant, env (a map), real (true for a release's image) and command (its command, JSON)",
            )
        })?;
        manifests.push_str("---\n");
        manifests.push_str(&rendered);
        if !rendered.ends_with('\n') {
            manifests.push('\n');
        }
    }
    let probes = spec
        .probes
        .iter()
        .map(|probe| CellProbe {
            probe_id: probe.id.clone(),
            argv: probe
                .run
                .iter()
                .map(|a| a.replace(REPRODUCER_PLACEHOLDER, IMAGE_REPRODUCER))
                .collect(),
            env: probe.env.clone(),
            expect: Expectation::of(probe),
        })
        .collect();
    Ok(KubeWork {
        namespace,
        manifests,
        image,
        rollout: spec.rollout.clone(),
        probes,
        kube_proxy: variant.kube_proxy,
        guest: spec.guest,
    })
}

/// A Kubernetes cell's probes: the rollout (a container that keeps
/// restarting there is a crash), then the probe pods.
pub(super) fn kube_probes(spec: &KubernetesSpec, kube: &KubeWork) -> Vec<CellProbe> {
    let rollout = CellProbe {
        probe_id: ROLLOUT_PROBE.into(),
        argv: kube.rollout.clone(),
        env: BTreeMap::new(),
        expect: Expectation {
            timeout_ms: spec.timeout_secs * 1000,
            pass_exit_code: 0,
            pass_stdout: spec.ready_log.clone(),
            unavailable_exit_code: None,
            restart_is_crash: true,
            needed: false,
            fails_on: spec.fails_on.clone(),
        },
    };
    std::iter::once(rollout)
        .chain(kube.probes.iter().cloned())
        .collect()
}
