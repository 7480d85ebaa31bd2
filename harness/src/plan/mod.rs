//! The plan: every cell (scenario × component version × variant × kernel)
//! with a stable id hashed from every input that can change its result, and
//! the selection of cells a command asks for (variants, ids, a shard).

mod kube;
pub mod shard;

use kube::{kube_probes, kube_work};
pub use kube::{KubeWork, IMAGE_REPRODUCER, ROLLOUT_PROBE};

use crate::diagnostic::FileError;
use crate::hashing::{sha256_bytes, sha256_file, sha256_tree};
use crate::ids::{ArtifactKey, CellId, KernelId, ScenarioId};
use crate::inputs::scenario::{
    Artifact, Scenario, Variant, Version, ARTIFACT_PLACEHOLDER, BPF_OBJECT_PLACEHOLDER,
    REPRODUCER_PLACEHOLDER, SERVICE_PLACEHOLDER,
};
use crate::inputs::{Catalog, Lock};
use crate::verdict::Expectation;
use kmatrix_metadata::Fidelity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Where reproducer binaries live in the guest.
pub const GUEST_BIN_DIR: &str = "/kmatrix/bin";

#[derive(Debug, Clone)]
pub struct Cell {
    pub id: CellId,
    pub scenario: ScenarioId,
    pub component: String,
    pub version: String,
    pub variant: String,
    pub kernel: KernelId,
    /// Guest paths of the version's artifacts this cell needs (the
    /// reproducer binary first, then its BPF object if any).
    pub artifacts: Vec<String>,
    /// Kernel modules to load before the cell runs.
    pub modules: Vec<String>,
    /// Extra kernel command-line words: cells boot together only when equal.
    pub kernel_args: Vec<String>,
    pub probes: Vec<CellProbe>,
    /// The version's real artifact, when it is one.
    pub artifact: Option<CellArtifact>,
    /// On a Kubernetes environment: the workload to deploy. `None` there
    /// when the scenario has no `[kubernetes]` (the cell is unavailable).
    pub kubernetes: Option<KubeWork>,
    /// How real the version is (not an input: it changes no id).
    pub fidelity: Fidelity,
    /// What ran, in words (the artifact, or why a stand-in).
    pub fidelity_note: String,
}

impl Cell {
    /// Whether the cell loads a BPF object of its own into the kernel.
    pub fn loads_bpf(&self) -> bool {
        self.artifacts.iter().any(|a| a.starts_with(GUEST_BPF_DIR))
    }
}

/// A real artifact as one cell runs it: mounted read-only in the guest,
/// `{service}` running it as a container from a bundle of its own.
#[derive(Debug, Clone, Serialize)]
pub struct CellArtifact {
    pub artifact: Artifact,
    /// What the container runs (empty: the image's entrypoint and cmd).
    pub command: Vec<String>,
    /// Where the artifact's file system is mounted in the guest.
    pub mount: String,
    /// The OCI bundle folder (`config.json`) for this cell's container.
    pub bundle: String,
    /// The variant's environment, given to the container too.
    pub env: BTreeMap<String, String>,
}

/// Where the guest keeps container bundles and artifact file systems.
pub const GUEST_BUNDLES_DIR: &str = "/kmatrix/bundles";
pub const GUEST_ARTIFACTS_DIR: &str = "/kmatrix/artifacts";
/// The OCI runtime in the guest (a scenario's `[guest]` packages bring it).
pub const GUEST_RUNTIME: &str = "/usr/bin/crun";

/// The argv that runs a cell's container in the guest. The pid file
/// appears once the runtime has started the container's process: a driver
/// that never sees it knows the runtime failed, not the service.
pub fn service_argv(bundle: &str, container_id: &str) -> Vec<String> {
    let pid_file = format!("/run/{container_id}.pid");
    [
        GUEST_RUNTIME,
        "--cgroup-manager=disabled",
        "run",
        // A session keyring is of no use to a service, and a container
        // engine's seccomp profile refuses to make one (crun in `docker`).
        "--no-new-keyring",
        // The guest's root is an initramfs, where pivot_root cannot work.
        "--no-pivot",
        "--pid-file",
        &pid_file,
        "--bundle",
        bundle,
        container_id,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One probe as a cell runs it: the command with its placeholders filled,
/// the variant's environment, and what counts as passing.
#[derive(Debug, Clone, Serialize)]
pub struct CellProbe {
    pub probe_id: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(flatten)]
    pub expect: Expectation,
}

/// Which planned cells a command is asked for. Variants and cell ids are
/// taken first and the shard last, so `plan --shard` and `run --shard` with
/// the same filters always agree on the split.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these variants; empty means all.
    pub variants: Vec<String>,
    /// Only these component versions; empty means all.
    pub versions: Vec<String>,
    /// Only these cell ids; empty means all.
    pub cells: Vec<String>,
    /// Only this shard of what the filters leave.
    pub shard: Option<shard::Shard>,
}

impl Selection {
    pub fn apply(&self, cells: Vec<Cell>) -> Vec<Cell> {
        let chosen: Vec<Cell> = cells
            .into_iter()
            .filter(|c| self.variants.is_empty() || self.variants.contains(&c.variant))
            .filter(|c| self.versions.is_empty() || self.versions.contains(&c.version))
            .filter(|c| self.cells.is_empty() || self.cells.iter().any(|id| c.id == *id))
            .collect();
        match self.shard {
            Some(shard) => shard::select(chosen, shard),
            None => chosen,
        }
    }
}

/// The guest path of a version's reproducer binary.
pub fn reproducer_guest_path(scenario: &str, version: &str) -> String {
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    format!("{GUEST_BIN_DIR}/{}--{}", safe(scenario), safe(version))
}

/// The guest mount point of a version's artifact.
pub fn artifact_mount(scenario: &str, version: &str) -> String {
    reproducer_guest_path(scenario, version).replace(GUEST_BIN_DIR, GUEST_ARTIFACTS_DIR)
}

/// The guest path of a version's BPF object.
pub fn bpf_object_guest_path(scenario: &str, version: &str) -> String {
    reproducer_guest_path(scenario, version).replace("/kmatrix/bin/", GUEST_BPF_DIR) + ".o"
}

/// Where BPF objects live in the guest.
const GUEST_BPF_DIR: &str = "/kmatrix/bpf/";

/// Plans the cells of `scenarios` on `kernels` (or each scenario's own list
/// when `kernels` is empty).
pub fn plan(
    scenarios: &[Scenario],
    kernels: &[KernelId],
    catalog: &Catalog,
    lock: &Lock,
) -> Result<Vec<Cell>, FileError> {
    let mut cells = Vec::new();
    for scenario in scenarios {
        let (scenario_hash, source_hash) = scenario_hashes(scenario)?;
        let wanted = if kernels.is_empty() {
            &scenario.kernels
        } else {
            kernels
        };
        for version in &scenario.versions {
            let files = version_files(scenario, version)?;
            let mount = artifact_mount(&scenario.id, &version.id);
            for variant in scenario.variants_with(&version.id) {
                let bundle = bundle_dir(scenario, version, variant);
                let probes = cell_probes(
                    scenario,
                    version,
                    variant,
                    &GuestPaths {
                        bundle: &bundle,
                        binary: &files.binary,
                        bpf_object: &files.bpf_object,
                        mount: &mount,
                    },
                );
                let artifact = version.artifact.as_ref().map(|artifact| CellArtifact {
                    artifact: artifact.clone(),
                    command: version.command.clone(),
                    mount: mount.clone(),
                    bundle: bundle.clone(),
                    env: variant.env.clone(),
                });
                // The workload and its probes, the same on every cluster.
                let kube = scenario
                    .kubernetes
                    .as_ref()
                    .map(|spec| -> Result<_, FileError> {
                        let work = kube_work(scenario, spec, version, variant)?;
                        Ok((kube_probes(spec, &work), work))
                    })
                    .transpose()?;
                let planned = VariantPlan {
                    scenario,
                    version,
                    variant,
                    scenario_hash: &scenario_hash,
                    source_hash: &source_hash,
                    files: &files,
                    probes,
                    artifact,
                    kube,
                };
                planned.cells_on(wanted, catalog, lock, &mut cells)?;
            }
        }
    }
    Ok(cells)
}

/// One version and variant of a scenario, ready to be planned on kernels.
struct VariantPlan<'a> {
    scenario: &'a Scenario,
    version: &'a Version,
    variant: &'a Variant,
    scenario_hash: &'a str,
    source_hash: &'a str,
    files: &'a VersionFiles,
    probes: Vec<CellProbe>,
    artifact: Option<CellArtifact>,
    /// The workload and its probes, the same on every cluster.
    kube: Option<(Vec<CellProbe>, KubeWork)>,
}

impl VariantPlan<'_> {
    /// Its cells on `wanted`, each id a hash of every input.
    fn cells_on(
        &self,
        wanted: &[KernelId],
        catalog: &Catalog,
        lock: &Lock,
        cells: &mut Vec<Cell>,
    ) -> Result<(), FileError> {
        let VariantPlan {
            scenario,
            version,
            variant,
            probes,
            artifact,
            kube,
            ..
        } = self;
        for kernel in wanted {
            let on_cluster = catalog.kernel(kernel).source.is_kubernetes();
            if (variant.kube_proxy.is_some() || version.only_on_clusters) && !on_cluster {
                // A cluster's setting (or a version kept for the
                // clusters only): nothing to run off a cluster.
                continue;
            }
            let (probes, kubernetes) = match (&kube, on_cluster) {
                (Some((probes, kube)), true) => (probes.clone(), Some(kube.clone())),
                (None, true) => (Vec::new(), None),
                (_, false) => (probes.clone(), None),
            };
            let mut inputs = serde_json::json!({
                "scenario": scenario.id,
                "scenario_file": self.scenario_hash,
                "reproducer_source": self.source_hash,
                "version": version.id,
                "toolchain": catalog.toolchains.get(&version.toolchain),
                "toolchain_lock": lock.get(&ArtifactKey::Toolchain(version.toolchain.clone())),
                "go_directive": version.go_directive,
                "build_tags": version.build_tags,
                "bpf_sources": self.files.bpf_hash,
                "go_packages": scenario.go_packages.as_ref().map(|g| (&g.suite, &g.packages)),
                "variant": variant.id,
                "probes": probes,
                "modules": scenario.modules,
                "kernel_args": variant.kernel_args,
                "guest": scenario.guest,
                "kernel": catalog.kernel(kernel),
                "kernel_lock": lock.get(&ArtifactKey::Kernel(kernel.clone())),
                "agent_protocol": env!("CARGO_PKG_VERSION"),
            });
            if on_cluster {
                inputs["kubernetes"] = serde_json::json!(kubernetes);
                // Which Kubernetes (release, etcd, node parts, kind's image):
                // a cell on another cluster is another cell.
                inputs["cluster"] = serde_json::json!(catalog.kubernetes);
            }
            add_version_inputs(&mut inputs, version, artifact.as_ref(), lock)?;
            let id = CellId::new(&sha256_bytes(inputs.to_string().as_bytes())[..16]);
            cells.push(Cell {
                id,
                scenario: scenario.id.clone(),
                component: scenario.component.clone(),
                version: version.id.clone(),
                variant: variant.id.clone(),
                kernel: kernel.clone(),
                artifacts: self.files.artifacts.clone(),
                modules: scenario.modules.clone(),
                kernel_args: variant.kernel_args.clone(),
                probes,
                artifact: artifact.clone(),
                kubernetes,
                fidelity: version.fidelity,
                fidelity_note: version.fidelity_note.clone(),
            });
        }
        Ok(())
    }
}

/// The hashes of a scenario's file and of its reproducer's sources.
fn scenario_hashes(scenario: &Scenario) -> Result<(String, String), FileError> {
    let file = hash_or_error(
        &scenario.dir.join(crate::inputs::scenario::SCENARIO_FILE),
        sha256_file,
    )?;
    let source = match &scenario.reproducer_dir {
        Some(dir) => hash_or_error(dir, sha256_tree)?,
        None => "none".to_string(),
    };
    Ok((file, source))
}

/// What a version puts into the guest besides its artifact: its
/// reproducer and BPF object (their guest paths) and the hash of the BPF
/// sources.
struct VersionFiles {
    binary: String,
    bpf_object: String,
    artifacts: Vec<String>,
    bpf_hash: Option<String>,
}

fn version_files(scenario: &Scenario, version: &Version) -> Result<VersionFiles, FileError> {
    let binary = reproducer_guest_path(&scenario.id, &version.id);
    let bpf_object = bpf_object_guest_path(&scenario.id, &version.id);
    let mut artifacts = Vec::new();
    if scenario.reproducer_dir.is_some() || version.harness.is_some() {
        artifacts.push(binary.clone());
    }
    let bpf_hash = match &version.bpf_object {
        Some(source) => {
            artifacts.push(bpf_object.clone());
            Some(hash_or_error(
                source.parent().unwrap_or(Path::new(".")),
                sha256_tree,
            )?)
        }
        None => None,
    };
    Ok(VersionFiles {
        binary,
        bpf_object,
        artifacts,
        bpf_hash,
    })
}

/// The container bundle's folder of a version and variant in the guest.
fn bundle_dir(scenario: &Scenario, version: &Version, variant: &Variant) -> String {
    format!(
        "{GUEST_BUNDLES_DIR}/{}",
        &sha256_bytes(format!("{}\0{}\0{}", scenario.id, version.id, variant.id).as_bytes())[..12]
    )
}

/// Where a version's things are inside the guest.
struct GuestPaths<'a> {
    bundle: &'a str,
    binary: &'a str,
    bpf_object: &'a str,
    mount: &'a str,
}

/// The scenario's probes for one version and variant: placeholders filled
/// in (`{service}` becomes the container runtime's command line for a
/// version with an artifact), the variant's environment under the probe's.
fn cell_probes(
    scenario: &Scenario,
    version: &Version,
    variant: &Variant,
    paths: &GuestPaths,
) -> Vec<CellProbe> {
    scenario
        .probes
        .iter()
        .map(|probe| CellProbe {
            probe_id: probe.id.clone(),
            argv: probe
                .run
                .iter()
                .flat_map(|arg| {
                    if arg == SERVICE_PLACEHOLDER && version.artifact.is_some() {
                        return service_argv(paths.bundle, &format!("kmx-{}", probe.id));
                    }
                    vec![arg
                        .replace(REPRODUCER_PLACEHOLDER, paths.binary)
                        .replace(BPF_OBJECT_PLACEHOLDER, paths.bpf_object)
                        .replace(ARTIFACT_PLACEHOLDER, paths.mount)]
                })
                .collect(),
            env: variant
                .env
                .iter()
                .chain(&probe.env)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            expect: Expectation::of(probe),
        })
        .collect()
}

/// The keys only some versions add to a cell's id inputs: a harness
/// version's module and sources, an artifact version's artifact and pin.
/// Adding a key to every cell's inputs would change every cell id.
fn add_version_inputs(
    inputs: &mut serde_json::Value,
    version: &Version,
    artifact: Option<&CellArtifact>,
    lock: &Lock,
) -> Result<(), FileError> {
    if let Some((module, harness)) = &version.harness {
        inputs["harness_module"] = serde_json::json!(module);
        inputs["harness_source"] = serde_json::json!(hash_or_error(harness, sha256_tree)?);
        inputs["harness_lock"] =
            serde_json::json!(lock.get(&ArtifactKey::GoModule(module.reference())));
    }
    if let Some(artifact) = artifact {
        inputs["artifact"] = serde_json::json!(artifact);
        inputs["artifact_lock"] = match &artifact.artifact {
            Artifact::Image(reference) => {
                serde_json::json!(lock.get(&ArtifactKey::Image(reference.clone())))
            }
            Artifact::Binary(path) => serde_json::json!(hash_or_error(path, sha256_file)?),
            Artifact::DebianPackage(_) => serde_json::Value::Null,
            Artifact::GoModule(module) => {
                serde_json::json!(lock.get(&ArtifactKey::GoModule(module.reference())))
            }
        };
    }
    Ok(())
}

fn hash_or_error(
    path: &Path,
    hash: impl Fn(&Path) -> anyhow::Result<String>,
) -> Result<String, FileError> {
    hash(path).map_err(|e| {
        FileError::whole_file(
            path,
            format!("cannot hash: {e:#}"),
            "check the file is readable",
        )
    })
}
