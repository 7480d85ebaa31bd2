//! Versions given on the command line for one run (`--add-version`): a
//! maintainer validates a release candidate, a commit or a local build
//! beside a scenario's own versions without editing it. Each becomes one
//! more version of the selected scenarios it fits, and the cells record
//! exactly what ran (the module version and its hash, the image digest,
//! the binary's sha256).
//!
//! `[ID=]module:PATH@VERSION` builds PATH at VERSION (a tag or a
//! pseudo-version) the way the scenario builds its newest version of that
//! module (toolchain, cgo, flags, base; the version stamp in the flags
//! follows the new version). `[ID=]image:REF` and `[ID=]binary:PATH` run
//! the artifact with the command of the scenario's newest artifact version.

use super::scenario::{Artifact, GoModuleSpec, Scenario, Version};
use crate::diagnostic::FileError;
use kmatrix_metadata::Fidelity;
use std::path::{Path, PathBuf};

/// One `--add-version` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedVersion {
    pub id: Option<String>,
    pub what: Added,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Module { path: String, version: String },
    Image(String),
    Binary(PathBuf),
}

const FORMS: &str = "write [ID=]module:PATH@VERSION, [ID=]image:REF or [ID=]binary:PATH, e.g. --add-version module:github.com/ollama/ollama@v0.6.5";

impl AddedVersion {
    pub fn parse(text: &str) -> Result<AddedVersion, String> {
        let (id, spec) = match text.split_once('=') {
            Some((id, spec)) if !id.contains(':') => (Some(id.to_string()), spec),
            _ => (None, text),
        };
        if id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.contains('/'))
        {
            return Err(format!(
                "`{text}`: the ID before = must be a plain name; {FORMS}"
            ));
        }
        let what = match spec.split_once(':') {
            Some(("module", rest)) => match rest.rsplit_once('@') {
                Some((path, version)) if path.contains('/') && version.starts_with('v') => {
                    Added::Module {
                        path: path.to_string(),
                        version: version.to_string(),
                    }
                }
                _ => return Err(format!("`{text}`: a module is PATH@VERSION; {FORMS}")),
            },
            Some(("image", reference)) if !reference.is_empty() => {
                Added::Image(reference.to_string())
            }
            Some(("binary", path)) if !path.is_empty() => Added::Binary(PathBuf::from(path)),
            _ => return Err(format!("`{text}`: {FORMS}")),
        };
        Ok(AddedVersion { id, what })
    }

    /// The version id the cells carry.
    pub fn id(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        match &self.what {
            Added::Module { version, .. } => version.clone(),
            Added::Image(reference) => reference
                .rsplit(['/', ':'])
                .next()
                .unwrap_or("image")
                .to_string(),
            Added::Binary(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "binary".into()),
        }
    }
}

/// Adds the versions to the scenarios they fit. A module fits every
/// selected scenario that builds that module; an image or a binary needs
/// exactly one selected scenario with a real artifact version to take its
/// command from. A value that fits none is bad input (exit 2).
pub fn add_versions(
    scenarios: &mut [Scenario],
    added: &[String],
    scenarios_dir: &Path,
) -> Result<(), FileError> {
    let bad = |message: String, fix: &str| FileError::whole_file(scenarios_dir, message, fix);
    for text in added {
        let parsed = AddedVersion::parse(text).map_err(|why| bad(why, FORMS))?;
        let id = parsed.id();
        let mut fitted = 0;
        let artifact_scenarios = scenarios
            .iter()
            .filter(|s| s.versions.iter().any(|v| v.artifact.is_some()))
            .count();
        for scenario in scenarios.iter_mut() {
            let Some(version) = added_to(scenario, &parsed, &id, artifact_scenarios)
                .map_err(|why| bad(why, "give each --add-version its own ID= prefix"))?
            else {
                continue;
            };
            scenario.versions.push(version);
            fitted += 1;
        }
        if fitted == 0 {
            return Err(bad(
                format!("--add-version {text}: no selected scenario can run it"),
                "a module needs a scenario that builds that module (`module = {...}` in a version); an image or a binary needs exactly one selected scenario (--scenario ID) whose versions are real artifacts",
            ));
        }
    }
    Ok(())
}

/// The version `parsed` becomes in `scenario`, if it fits there.
fn added_to(
    scenario: &Scenario,
    parsed: &AddedVersion,
    id: &str,
    artifact_scenarios: usize,
) -> Result<Option<Version>, String> {
    let template = match &parsed.what {
        Added::Module { path, .. } => scenario
            .versions
            .iter()
            .rev()
            .find(|v| matches!(&v.artifact, Some(Artifact::GoModule(m)) if &m.path == path)),
        _ if artifact_scenarios == 1 => scenario
            .versions
            .iter()
            .rev()
            .find(|v| v.artifact.is_some()),
        _ => None,
    };
    let Some(template) = template else {
        return Ok(None);
    };
    if scenario.versions.iter().any(|v| v.id == id) {
        return Err(format!(
            "--add-version: scenario {} already has a version `{id}`",
            scenario.id
        ));
    }
    let (artifact, command) = match &parsed.what {
        Added::Module { version, .. } => {
            let Some(Artifact::GoModule(base)) = &template.artifact else {
                unreachable!("the template was found by its module");
            };
            (
                Artifact::GoModule(Box::new(restamped(base, version))),
                template.command.clone(),
            )
        }
        Added::Image(reference) => (Artifact::Image(reference.clone()), Vec::new()),
        Added::Binary(path) => {
            let path = std::fs::canonicalize(path)
                .map_err(|e| format!("--add-version binary:{}: {e}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut command = vec![format!("/usr/local/bin/{name}")];
            command.extend(template.command.iter().skip(1).cloned());
            (Artifact::Binary(path), command)
        }
    };
    let what = match &artifact {
        Artifact::GoModule(m) => format!(
            "{} built here from its module with {}",
            m.reference(),
            m.toolchain
        ),
        Artifact::Image(reference) => format!("the image {reference}"),
        Artifact::Binary(path) => format!("the binary {}", path.display()),
        Artifact::DebianPackage(_) => unreachable!("not an --add-version form"),
    };
    Ok(Some(Version {
        id: id.to_string(),
        toolchain: template.toolchain.clone(),
        go_directive: template.go_directive.clone(),
        built_from: format!(
            "given on the command line (--add-version): {what}; built as {} is",
            template.id
        ),
        artifact: Some(artifact),
        command,
        real: None,
        build_tags: Vec::new(),
        bpf_object: None,
        fidelity: Fidelity::Release,
        fidelity_note: what,
        only_on_clusters: false,
        harness: None,
    }))
}

/// The template's build for another version of the module: the same
/// toolchain, cgo, base and flags, with the version stamp in the flags
/// (`-X …Version=0.5.13`) following the new version.
fn restamped(base: &GoModuleSpec, version: &str) -> GoModuleSpec {
    let old = format!("={}", base.version.trim_start_matches('v'));
    let new = format!("={}", version.trim_start_matches('v'));
    let stamp =
        |flags: &[String]| -> Vec<String> { flags.iter().map(|f| f.replace(&old, &new)).collect() };
    GoModuleSpec {
        version: version.to_string(),
        flags: stamp(&base.flags),
        also: base
            .also
            .iter()
            .map(|program| super::scenario::ModuleProgram {
                flags: stamp(&program.flags),
                ..program.clone()
            })
            .collect(),
        ..base.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_parse_and_name_themselves() {
        let module = AddedVersion::parse("module:github.com/ollama/ollama@v0.6.5").unwrap();
        assert_eq!(module.id(), "v0.6.5");
        let named =
            AddedVersion::parse("rc1=module:github.com/o/o@v0.0.0-20250101000000-abcdef123456")
                .unwrap();
        assert_eq!(named.id(), "rc1");
        assert_eq!(
            AddedVersion::parse("image:docker-archive:/tmp/x.tar")
                .unwrap()
                .what,
            Added::Image("docker-archive:/tmp/x.tar".into())
        );
        assert_eq!(
            AddedVersion::parse("binary:./target/server").unwrap().id(),
            "server"
        );
        assert!(AddedVersion::parse("v0.6.5").is_err());
        assert!(AddedVersion::parse("module:ollama").is_err());
    }

    #[test]
    fn the_version_stamp_follows_the_new_version() {
        let base = GoModuleSpec {
            path: "github.com/ollama/ollama".into(),
            version: "v0.5.13".into(),
            package: ".".into(),
            toolchain: "go-1.24".into(),
            cgo: true,
            flags: vec!["-ldflags=-w -s -X=github.com/ollama/ollama/version.Version=0.5.13".into()],
            install: None,
            env: vec![],
            base: None,
            harness: None,
            also: vec![],
        };
        let next = restamped(&base, "v0.6.5");
        assert_eq!(next.version, "v0.6.5");
        assert_eq!(
            next.flags,
            ["-ldflags=-w -s -X=github.com/ollama/ollama/version.Version=0.6.5"]
        );
        assert_eq!(next.toolchain, "go-1.24");
    }
}
