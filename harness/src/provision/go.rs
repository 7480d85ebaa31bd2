//! Go: toolchains unpacked from Debian, Debian's Go library packages, and
//! each version's reproducer built static with the release's toolchain, its
//! go.mod `go` line and build tags, libraries vendored in.

use super::Provisioner;
use crate::files;
use crate::hashing::{sha256_bytes, sha256_tree};
use crate::ids::ArtifactKey;
use crate::inputs::catalog::ToolchainEntry;
use crate::inputs::scenario::{GoPackages, Scenario, Version};
use crate::sources::{gotool, govendor};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct GoToolchain {
    pub id: String,
    pub goroot: PathBuf,
}

impl Provisioner<'_> {
    pub fn toolchain(&self, id: &str) -> Result<GoToolchain> {
        let entry: &ToolchainEntry = self
            .catalog
            .toolchains
            .get(id)
            .with_context(|| format!("unknown toolchain `{id}`"))?;
        let resolve = || self.resolve_in(&entry.packages, &entry.suite);
        let goroot_rel = PathBuf::from(&entry.goroot);
        let (go, _) =
            self.pinned_artifact(&ArtifactKey::Toolchain(id.to_string()), &resolve, &|root| {
                let go = root.join(&goroot_rel).join("bin/go");
                let output = gotool::go(&root.join(&goroot_rel))
                    .arg("version")
                    .output()
                    .with_context(|| format!("cannot run {}", go.display()))?;
                if !output.status.success() {
                    bail!(
                        "unpacked Go does not run: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                Ok(go.strip_prefix(root).expect("under root").to_path_buf())
            })?;
        let goroot = go
            .parent()
            .and_then(Path::parent)
            .expect("go lives in GOROOT/bin")
            .to_path_buf();
        Ok(GoToolchain {
            id: id.to_string(),
            goroot,
        })
    }

    /// Debian Go library packages unpacked together; returns the gocode root.
    pub fn go_packages(&self, wanted: &GoPackages) -> Result<PathBuf> {
        let mut names = wanted.packages.clone();
        names.sort();
        let resolve = || self.resolve_in(&names, &wanted.suite);
        let (manifest, _) =
            self.pinned_artifact(&ArtifactKey::GoPackages(names.clone()), &resolve, &|root| {
                let modules = govendor::discover(&root.join(govendor::GOCODE))?;
                let manifest = Path::new(govendor::GOCODE).join("kmatrix-modules.json");
                fs::write(root.join(&manifest), serde_json::to_vec_pretty(&modules)?)?;
                Ok(manifest)
            })?;
        Ok(manifest
            .parent()
            .expect("manifest sits in the gocode root")
            .to_path_buf())
    }

    /// Builds the scenario's reproducer for one component version: its Go
    /// toolchain, a go.mod whose `go` line is the release's, the release's
    /// build tags, and any Debian Go libraries vendored in.
    pub fn reproducer(&self, scenario: &Scenario, version: &Version) -> Result<PathBuf> {
        if let Some((module, harness)) = &version.harness {
            return self.module_harness(module, harness);
        }
        let toolchain = self.toolchain(&version.toolchain)?;
        let gocode = scenario
            .go_packages
            .as_ref()
            .map(|wanted| self.go_packages(wanted))
            .transpose()?;
        let reproducer_dir = scenario
            .reproducer_dir
            .as_ref()
            .context("the scenario has no [reproducer]")?;
        let source_hash = sha256_tree(reproducer_dir)?;
        let key = sha256_bytes(
            format!(
                "go-reproducer\0{}\0{source_hash}\0{}\0{}\0{}",
                toolchain.goroot.display(),
                version.go_directive,
                version.build_tags.join(","),
                gocode
                    .as_ref()
                    .map(|g| g.display().to_string())
                    .unwrap_or_default()
            )
            .as_bytes(),
        );
        let go_cache = self.cache.root().join("go-build");
        let gopath = self.cache.root().join("gopath");
        self.cache.get_or_make("reproducers", &key, |dir| {
            let src = dir.join("src");
            files::copy_tree(reproducer_dir, &src, &files::all)?;
            write_go_mod(&src.join("go.mod"), &scenario.id, &version.go_directive)?;
            let mod_flag = match &gocode {
                Some(gocode) => {
                    let modules: Vec<govendor::GoModule> =
                        serde_json::from_slice(&fs::read(gocode.join("kmatrix-modules.json"))?)?;
                    govendor::vendor_into(&src, gocode, &modules)?;
                    "-mod=vendor"
                }
                None => "-mod=mod",
            };
            let output = gotool::go(&toolchain.goroot)
                .args(["build", "-trimpath", "-ldflags=-s -w"])
                .arg(format!("-tags={}", version.build_tags.join(",")))
                .arg("-o")
                .arg(dir.join("reproducer"))
                .arg(".")
                .current_dir(&src)
                .env("GOPROXY", "off")
                .env("GOSUMDB", "off")
                .env("GOFLAGS", mod_flag)
                .env("CGO_ENABLED", "0")
                .env("GOOS", "linux")
                .env("GOARCH", "amd64")
                .env("GOCACHE", &go_cache)
                .env("GOPATH", &gopath)
                .output()
                .context("cannot run go build")?;
            let log = [output.stdout, output.stderr].concat();
            fs::write(dir.join("build.log"), &log)?;
            if !output.status.success() {
                let kept = self.cache.root().join("logs").join(format!("{key}.log"));
                fs::create_dir_all(kept.parent().expect("logs folder"))?;
                fs::write(&kept, &log)?;
                bail!(
                    "go build of {} {} with {} failed (log: {}):\n{}",
                    scenario.id,
                    version.id,
                    toolchain.id,
                    kept.display(),
                    String::from_utf8_lossy(&log).trim()
                );
            }
            Ok(PathBuf::from("reproducer"))
        })
    }
}

/// Writes go.mod with the release's `go` line: Go >= 1.24 opens listeners as
/// MPTCP only when the main module says `go 1.24` or later.
fn write_go_mod(path: &Path, scenario: &str, directive: &str) -> Result<()> {
    let existing = fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = existing
        .lines()
        .filter(|l| !l.starts_with("go ") && !l.starts_with("toolchain "))
        .map(str::to_string)
        .collect();
    if !lines.iter().any(|l| l.starts_with("module ")) {
        lines.insert(0, format!("module kmatrix.invalid/{scenario}"));
    }
    let module_at = lines
        .iter()
        .position(|l| l.starts_with("module "))
        .expect("module line present");
    lines.insert(module_at + 1, format!("\ngo {directive}"));
    fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_gets_the_release_go_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("go.mod");
        fs::write(
            &path,
            "module example.com/x\n\ngo 1.21\ntoolchain go1.21.3\n",
        )
        .unwrap();
        write_go_mod(&path, "s", "1.24").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("go 1.24\n"), "{text}");
        assert!(!text.contains("1.21"), "{text}");
        assert!(text.starts_with("module example.com/x"), "{text}");

        fs::remove_file(&path).unwrap();
        write_go_mod(&path, "s", "1.23").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("module kmatrix.invalid/s\n\ngo 1.23"),
            "{text}"
        );
    }
}
