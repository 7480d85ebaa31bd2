//! A scenario's versions: what each one runs (a stand-in built from the
//! reproducer, or a real artifact: an image, a Debian package, a binary, a
//! Go module built at its tag) and how real that is.

use super::{ReproducerSpec, Validator};
use crate::diagnostic::FileError;
use kmatrix_metadata::Fidelity;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionSpec {
    id: Spanned<String>,
    #[serde(default)]
    toolchain: Option<Spanned<String>>,
    #[serde(default)]
    go_directive: Option<Spanned<String>>,
    #[serde(default)]
    built_from: String,
    /// The real artifact this version is: an image to pull.
    #[serde(default)]
    image: Option<Spanned<String>>,
    /// ... or a Debian package's files.
    #[serde(default)]
    debian_package: Option<DebianPackageSpec>,
    /// ... or a local binary (relative to the scenario folder).
    #[serde(default)]
    binary: Option<Spanned<String>>,
    /// What the artifact runs as a service (`{service}`); an image's own
    /// entrypoint and cmd when not given.
    #[serde(default)]
    command: Vec<String>,
    /// The real component image and command, recorded for the environments
    /// that can run it (`kmatrix plan --check` says whether this one can).
    #[serde(default)]
    real: Option<RealArtifact>,
    /// Go build tags selecting this release's code path in the reproducer.
    #[serde(default)]
    build_tags: Vec<String>,
    /// A BPF C source (relative to the scenario folder) built with clang
    /// `-target bpf` into the object this release ships.
    #[serde(default)]
    bpf_object: Option<Spanned<String>>,
    /// ... or the component's Go module, built here at the tag.
    #[serde(default)]
    module: Option<Spanned<GoModuleSpec>>,
    /// How real this version is, when its artifact does not say it:
    /// `upstream-code` for the component's own package driven by a
    /// harness (the reproducer imports it at the tag).
    #[serde(default)]
    fidelity: Option<Spanned<String>>,
    /// Why a stand-in runs where nothing more real can (overrides
    /// `[reproducer] stand_in`).
    #[serde(default)]
    stand_in: Option<String>,
    /// Planned only on Kubernetes environments (a stand-in kept for the
    /// clusters while the real version runs in guests).
    #[serde(default)]
    only_on_clusters: bool,
}

/// One Debian package version, whose files are the artifact.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebianPackageSpec {
    pub suite: String,
    pub package: String,
    pub version: String,
}

/// A seed case's real component, recorded: what it would take to run it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealArtifact {
    pub image: String,
    /// The command its container runs.
    pub command: Vec<String>,
    /// What it needs besides the image.
    pub needs: RealNeeds,
}

/// What a recorded real component needs besides its image (spelled as in
/// scenario.toml, and so in the plan's hash input).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RealNeeds {
    /// Pull it, run it.
    Registry,
    /// It talks to a Kubernetes API server.
    Kubernetes,
}

/// What a version runs besides the scenario's reproducer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Artifact {
    Image(String),
    DebianPackage(DebianPackageSpec),
    Binary(PathBuf),
    GoModule(Box<GoModuleSpec>),
}

/// A component's Go module at a tag (or a pseudo-version: a commit), built
/// here as upstream's release build does: the module downloaded through the
/// go command and built inside it as its own main module (its `replace`
/// directives and go.sum apply), with a Debian toolchain, `GOTOOLCHAIN=local`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoModuleSpec {
    /// The module path, e.g. `github.com/ollama/ollama`.
    pub path: String,
    /// A tag (`v0.5.13`) or a pseudo-version.
    pub version: String,
    /// The main package inside the module (`.` or `./cmd/NAME`).
    #[serde(default = "default_package")]
    pub package: String,
    /// The catalog toolchain matching the Go minor upstream built the
    /// release with.
    pub toolchain: String,
    /// cgo on (a dynamically linked program: the image gets `base`).
    #[serde(default)]
    pub cgo: bool,
    /// `go build` flags as upstream's release build sets them.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Where the binary sits in the image (default `/usr/local/bin/NAME`).
    #[serde(default)]
    pub install: Option<String>,
    /// The image's environment (`KEY=VALUE`), as upstream's image sets it.
    #[serde(default)]
    pub env: Vec<String>,
    /// A harness program (a folder of the scenario) that imports the
    /// component's own package: built inside the module at the tag, static,
    /// it is the version's reproducer (fidelity `upstream-code`), not an image.
    #[serde(default)]
    pub harness: Option<String>,
    /// Debian packages under the binary, where upstream's image has a
    /// distribution base (a cgo program needs its libc); none: FROM scratch.
    #[serde(default)]
    pub base: Option<super::GuestSpec>,
    /// More programs of the same module the release ships beside the main
    /// one (e.g. ollama's runners before v0.5.2), built the same way.
    #[serde(default)]
    pub also: Vec<ModuleProgram>,
}

/// One more package of a module, built into the image at `install`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleProgram {
    pub package: String,
    pub install: String,
    /// Its `go build` flags (upstream's make rule for it).
    #[serde(default)]
    pub flags: Vec<String>,
}

fn default_package() -> String {
    ".".into()
}

impl GoModuleSpec {
    /// `path@version`, as the go command spells it.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.path, self.version)
    }

    /// Where the binary lands in the image.
    pub fn install_path(&self) -> String {
        if let Some(path) = &self.install {
            return path.clone();
        }
        let last = if self.package == "." {
            self.path.rsplit('/').next()
        } else {
            self.package.rsplit('/').next()
        };
        format!("/usr/local/bin/{}", last.unwrap_or("program"))
    }
}

#[derive(Debug, Clone)]
pub struct Version {
    pub id: String,
    pub toolchain: String,
    pub go_directive: String,
    pub built_from: String,
    /// The real artifact this version is, if it is one.
    pub artifact: Option<Artifact>,
    /// What `{service}` runs (empty: an image's entrypoint and cmd).
    pub command: Vec<String>,
    /// A seed case's real component, recorded.
    pub real: Option<RealArtifact>,
    pub build_tags: Vec<String>,
    pub bpf_object: Option<PathBuf>,
    /// How real it is: a release artifact, the upstream package driven by
    /// a harness, or a stand-in.
    pub fidelity: Fidelity,
    /// What ran, in words: the artifact, or why a stand-in.
    pub fidelity_note: String,
    /// Planned only on Kubernetes environments.
    pub only_on_clusters: bool,
    /// The component's module whose own package the version's reproducer
    /// (a harness) imports, and the harness folder: built inside the module.
    pub harness: Option<(GoModuleSpec, PathBuf)>,
}

impl Validator<'_> {
    pub(super) fn versions(
        &self,
        specs: Vec<VersionSpec>,
        reproducer: Option<&ReproducerSpec>,
    ) -> Result<Vec<Version>, FileError> {
        let mut seen = BTreeSet::new();
        let mut versions = Vec::new();
        for spec in specs {
            self.unique(&mut seen, &spec.id)?;
            if let Some(version) = self.harness_version(&spec)? {
                versions.push(version);
                continue;
            }
            let Some(reproducer) = reproducer else {
                // No reproducer to build: the version must be a real artifact.
                versions.push(self.artifact_version(spec)?);
                continue;
            };
            let (toolchain, go_directive) = self.toolchain_of(&spec, reproducer)?;
            let artifact = self.artifact(&spec)?;
            let bpf_object = match &spec.bpf_object {
                None => None,
                Some(source) => {
                    let path = self.folder.join(source.get_ref());
                    if !path.is_file() {
                        return Err(self.error(
                            source.span(),
                            format!("BPF source {} does not exist", path.display()),
                            "give a .c file relative to the scenario folder".into(),
                        ));
                    }
                    Some(path)
                }
            };
            let (fidelity, fidelity_note) =
                self.fidelity(&spec, artifact.as_ref(), Some(reproducer))?;
            versions.push(Version {
                id: spec.id.into_inner(),
                toolchain: toolchain.into_inner(),
                go_directive: go_directive.into_inner(),
                built_from: spec.built_from,
                artifact,
                command: spec.command,
                real: spec.real,
                build_tags: spec.build_tags,
                bpf_object,
                fidelity,
                fidelity_note,
                only_on_clusters: spec.only_on_clusters,
                harness: None,
            });
        }
        Ok(versions)
    }

    /// A version that is only a real artifact (the scenario builds no reproducer).
    fn artifact_version(&self, spec: VersionSpec) -> Result<Version, FileError> {
        let artifact = self.artifact(&spec)?;
        if artifact.is_none() {
            return Err(self.error(
                spec.id.span(),
                format!(
                    "version `{}` is no real artifact, and the scenario has no [reproducer]",
                    spec.id.get_ref()
                ),
                "give it image, debian_package or binary, or add a [reproducer]".into(),
            ));
        }
        let (fidelity, fidelity_note) = self.fidelity(&spec, artifact.as_ref(), None)?;
        Ok(Version {
            id: spec.id.into_inner(),
            toolchain: String::new(),
            go_directive: String::new(),
            built_from: spec.built_from,
            artifact,
            command: spec.command,
            real: spec.real,
            build_tags: spec.build_tags,
            bpf_object: None,
            fidelity,
            fidelity_note,
            only_on_clusters: spec.only_on_clusters,
            harness: None,
        })
    }

    /// The Go toolchain and go.mod `go` line a version's reproducer is
    /// built with: its own, else the [reproducer]'s; both checked.
    fn toolchain_of(
        &self,
        spec: &VersionSpec,
        reproducer: &ReproducerSpec,
    ) -> Result<(Spanned<String>, Spanned<String>), FileError> {
        let toolchain = spec
        .toolchain
        .clone()
        .or_else(|| reproducer.toolchain.clone())
        .ok_or_else(|| {
            self.error(
                spec.id.span(),
                format!("version `{}` names no toolchain", spec.id.get_ref()),
                "give it toolchain = \"go-1.24\" (the Go its release was built with), or give [reproducer] a toolchain for versions that are real artifacts".into(),
            )
        })?;
        let go_directive = spec
        .go_directive
        .clone()
        .or_else(|| reproducer.go_directive.clone())
        .ok_or_else(|| {
            self.error(
                spec.id.span(),
                format!("version `{}` names no go_directive", spec.id.get_ref()),
                "give it go_directive = \"1.24\" (the release's go.mod go line), or give [reproducer] one".into(),
            )
        })?;
        if !self.catalog.toolchains.contains_key(toolchain.get_ref()) {
            let known: Vec<&String> = self.catalog.toolchains.keys().collect();
            return Err(self.error(
                toolchain.span(),
                format!("unknown toolchain `{}`", toolchain.get_ref()),
                format!("use one of {known:?} (see images/toolchains.toml)"),
            ));
        }
        let directive = go_directive.get_ref();
        let well_formed = directive.split('.').count() >= 2
            && directive.split('.').all(|p| p.parse::<u32>().is_ok());
        if !well_formed {
            return Err(self.error(
                go_directive.span(),
                format!("go_directive `{directive}` is not a Go version"),
                "write the `go` line of the release's go.mod, e.g. \"1.24\"".into(),
            ));
        }
        Ok((toolchain, go_directive))
    }

    /// The version's real artifact: at most one of image, debian_package, binary.
    fn artifact(&self, spec: &VersionSpec) -> Result<Option<Artifact>, FileError> {
        let given = [
            spec.image.is_some(),
            spec.debian_package.is_some(),
            spec.binary.is_some(),
            spec.module.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(self.error(
                spec.id.span(),
                format!(
                    "version `{}` names more than one artifact",
                    spec.id.get_ref()
                ),
                "give one of image, debian_package, binary or module".into(),
            ));
        }
        if let Some(image) = &spec.image {
            crate::sources::oci::reference::parse(image.get_ref()).map_err(|why| {
                self.error(
                    image.span(),
                    why,
                    "e.g. image = \"docker.io/library/caddy:2.11.4\"".into(),
                )
            })?;
            return Ok(Some(Artifact::Image(image.get_ref().clone())));
        }
        let needs_command = |what: &str| -> Result<(), FileError> {
            if spec.command.is_empty() {
                return Err(self.error(
                    spec.id.span(),
                    format!(
                        "version `{}` is a {what} but gives no command",
                        spec.id.get_ref()
                    ),
                    "add command = [\"/usr/bin/PROGRAM\", ARGS...]: what {service} runs".into(),
                ));
            }
            Ok(())
        };
        if let Some(package) = &spec.debian_package {
            needs_command("Debian package")?;
            return Ok(Some(Artifact::DebianPackage(package.clone())));
        }
        if let Some(binary) = &spec.binary {
            needs_command("binary")?;
            let path = self.folder.join(binary.get_ref());
            if !path.is_file() {
                return Err(self.error(
                    binary.span(),
                    format!("binary {} does not exist", path.display()),
                    "give a file relative to the scenario folder (or an absolute path)".into(),
                ));
            }
            return Ok(Some(Artifact::Binary(path)));
        }
        if let Some(module) = &spec.module {
            return self.go_module(module).map(Some);
        }
        Ok(None)
    }

    /// A version whose reproducer is a harness built inside the
    /// component's module (`module = { …, harness = "DIR" }`).
    fn harness_version(&self, spec: &VersionSpec) -> Result<Option<Version>, FileError> {
        let Some(module) = &spec.module else {
            return Ok(None);
        };
        let Some(harness) = &module.get_ref().harness else {
            return Ok(None);
        };
        let Artifact::GoModule(checked) = self.go_module(module)? else {
            unreachable!("go_module returns a module");
        };
        let dir = self.folder.join(harness);
        let has_go = super::validate::holds_go_files(&dir);
        if !has_go {
            return Err(self.error(
                module.span(),
                format!("harness folder {} has no Go files", dir.display()),
                "put the harness's main package there: a program importing the component's package"
                    .into(),
            ));
        }
        let note = format!(
            "{}'s own package at the tag, driven by the scenario's {harness}/ program built inside the module with {}",
            checked.reference(),
            checked.toolchain
        );
        Ok(Some(Version {
            id: spec.id.get_ref().clone(),
            toolchain: checked.toolchain.clone(),
            go_directive: String::new(),
            built_from: spec.built_from.clone(),
            artifact: None,
            command: Vec::new(),
            real: spec.real.clone(),
            build_tags: spec.build_tags.clone(),
            bpf_object: None,
            fidelity: Fidelity::UpstreamCode,
            fidelity_note: note,
            only_on_clusters: spec.only_on_clusters,
            harness: Some((*checked, dir)),
        }))
    }

    /// A Go module version, checked: a known toolchain, a module path and
    /// a version the go command can name.
    fn go_module(&self, module: &Spanned<GoModuleSpec>) -> Result<Artifact, FileError> {
        let spec = module.get_ref();
        if !self.catalog.toolchains.contains_key(&spec.toolchain) {
            let known: Vec<&String> = self.catalog.toolchains.keys().collect();
            return Err(self.error(
                module.span(),
                format!("unknown toolchain `{}`", spec.toolchain),
                format!("use one of {known:?} (see images/toolchains.toml): the Go minor upstream built this release with"),
            ));
        }
        let path_ok = spec.path.contains('/') && !spec.path.contains(char::is_whitespace);
        if !path_ok || !spec.version.starts_with('v') || spec.version.contains('@') {
            return Err(self.error(
                module.span(),
                format!("`{}` is not a Go module path and version", spec.reference()),
                "write module = { path = \"github.com/ORG/REPO\", version = \"vX.Y.Z\" (a tag or a pseudo-version), toolchain = \"go-1.24\" }".into(),
            ));
        }
        if !(spec.package == "." || spec.package.starts_with("./")) {
            return Err(self.error(
                module.span(),
                format!("package `{}` is not a path inside the module", spec.package),
                "write package = \".\" or \"./cmd/NAME\"".into(),
            ));
        }
        if spec.cgo && spec.base.is_none() {
            return Err(self.error(
                module.span(),
                "a cgo build is dynamically linked, and the module names no base to run it on".into(),
                "add base = { suite = \"bookworm\", packages = [\"libc6\", ...] } (upstream's image base, as Debian packages), or cgo = false".into(),
            ));
        }
        Ok(Artifact::GoModule(Box::new(spec.clone())))
    }

    /// How real a version is, and what it is in words: a real artifact is
    /// the release; a version built from the reproducer is a stand-in
    /// unless it says it drives the upstream package (`upstream-code`).
    fn fidelity(
        &self,
        spec: &VersionSpec,
        artifact: Option<&Artifact>,
        reproducer: Option<&ReproducerSpec>,
    ) -> Result<(Fidelity, String), FileError> {
        let declared = match &spec.fidelity {
            None => None,
            Some(name) => Some(Fidelity::from_name(name.get_ref()).ok_or_else(|| {
                self.error(
                    name.span(),
                    format!("unknown fidelity `{}`", name.get_ref()),
                    "use \"release\", \"upstream-code\" or \"stand-in\"".into(),
                )
            })?),
        };
        if let Some(artifact) = artifact {
            let note = match artifact {
                Artifact::Image(reference) => format!("the image {reference}"),
                Artifact::DebianPackage(p) => {
                    format!("Debian {}'s {} {}", p.suite, p.package, p.version)
                }
                Artifact::Binary(path) => format!("the binary {}", path.display()),
                Artifact::GoModule(m) => format!(
                    "{} built here from its module with {}",
                    m.reference(),
                    m.toolchain
                ),
            };
            return Ok((declared.unwrap_or(Fidelity::Release), note));
        }
        let fidelity = declared.unwrap_or(Fidelity::StandIn);
        let note = match fidelity {
            Fidelity::StandIn => spec
                .stand_in
                .clone()
                .or_else(|| reproducer.and_then(|r| r.stand_in.clone()))
                .unwrap_or_else(|| {
                    "a program written for this scenario; the scenario does not say why the component's own code does not run (add stand_in = \"why\")".into()
                }),
            _ => spec.built_from.clone(),
        };
        Ok((fidelity, note))
    }
}
