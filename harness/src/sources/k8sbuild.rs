//! Builds a program of a Go module that cannot be built as its own main
//! module from the proxy's copy: Kubernetes (its `replace` directives point
//! into `staging/`, which the module's zip leaves out because each staging
//! folder is a module of its own) and etcd (`replace … => ../api`). A small
//! build module requires the module at its tag and every module its
//! `replace` directives point into the tree for, at the version those are
//! published under (Kubernetes' staging modules `v0.X.Y` for `v1.X.Y`,
//! etcd's own tag); `go build` then resolves everything through the proxy
//! (`-mod=mod`, go.sum checked against the checksum database). Also the
//! pause program Kubernetes' pod sandboxes run, compiled from the tree.

use super::kbuild::logged_step;
use crate::events::Events;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One build: which module, which of its packages, how they are stamped.
pub struct ModuleProgramsBuild<'a> {
    /// Names the build's folder and log (`build-NAME/`, `build-NAME.log`).
    pub name: &'a str,
    pub goroot: &'a Path,
    /// The module as the go command downloaded it (`go mod download -json`'s Dir).
    pub module_dir: &'a Path,
    pub path: &'a str,
    pub version: &'a str,
    /// The version the modules its `replace` directives point into the tree
    /// for are published under.
    pub companions: &'a str,
    /// The main packages: import path, and the name the binary gets.
    pub packages: Vec<(String, String)>,
    /// `-ldflags`, as upstream's release build stamps its binaries.
    pub ldflags: String,
    /// Environment of the go command (module cache, build cache, proxy).
    pub env: Vec<(String, PathBuf)>,
    pub proxy: String,
}

/// The pause program's version string (`pause -v`).
pub const PAUSE_VERSION: &str = "v3.10-kmatrix";

/// What building Kubernetes needs besides Go: a C compiler for the pause
/// program (the Go programs are built with cgo off).
pub fn check_build_tools() -> Result<()> {
    crate::files::require_tools(&["gcc"], "building Kubernetes' pause program needs")
}

/// `go mod edit -json`'s view of a go.mod: what we need of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GoMod {
    go: Option<String>,
    #[serde(default)]
    require: Vec<Required>,
    #[serde(default)]
    replace: Vec<Replaced>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Required {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Replaced {
    old: ModulePath,
    new: ModulePath,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModulePath {
    path: String,
}

/// Builds the packages into `bin`; the build module and its log stay in
/// `dir` (`build-NAME/go.mod`, `build-NAME/go.sum`: every module the build
/// used, with its hash; `build-NAME.log`).
pub fn build_programs(
    spec: &ModuleProgramsBuild,
    dir: &Path,
    bin: &Path,
    events: &Events,
) -> Result<()> {
    let label = format!("build {}@{}", spec.path, spec.version);
    let build = dir.join(format!("build-{}", spec.name));
    fs::create_dir_all(&build)?;
    fs::create_dir_all(bin)?;
    let go_mod = build_module(spec)?;
    fs::write(build.join("go.mod"), go_mod)?;
    let log_path = dir.join(format!("build-{}.log", spec.name));
    let mut log = File::create(&log_path)?;
    // `go build -v` names each package as it compiles it, on stderr: the
    // shell joins stderr to stdout so those names become progress.
    let mut shell = Command::new("sh");
    super::gotool::isolate(&mut shell, spec.goroot);
    shell
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        // After isolate, which drops the user's GOFLAGS: this build's own.
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", &spec.proxy)
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux")
        .env("GOARCH", "amd64")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(spec.goroot.join("bin/go"))
        .args(["build", "-v", "-trimpath", "-ldflags", &spec.ldflags, "-o"])
        .arg(format!("{}/", bin.display()))
        .args(spec.packages.iter().map(|(package, _)| package))
        .current_dir(&build);
    let mut compiled = 0u64;
    events.progress(&label, 0, None, "resolving modules through the proxy");
    logged_step(&mut shell, &mut log, &log_path, &mut |line| {
        if !line.starts_with("go: ") {
            compiled += 1;
            events.progress(&label, compiled, None, line.trim());
        }
    })?;
    for (package, name) in &spec.packages {
        let made = bin.join(go_binary_name(package));
        if !made.is_file() {
            bail!("the build made no {name} (see {})", log_path.display());
        }
        fs::rename(&made, bin.join(name))?;
    }
    Ok(())
}

/// The file `go build -o DIR/` writes for a main package: its last path
/// element, or the one before a major-version suffix (`…/server/v3` → `server`).
fn go_binary_name(package: &str) -> &str {
    let mut elements = package.rsplit('/');
    let last = elements.next().unwrap_or(package);
    let is_major =
        last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    match (is_major, elements.next()) {
        (true, Some(before)) => before,
        _ => last,
    }
}

/// The build module's go.mod: the module at its tag, and each module it
/// replaces with a folder of its own tree (and requires) at `companions`.
fn build_module(spec: &ModuleProgramsBuild) -> Result<String> {
    let output = super::gotool::go(spec.goroot)
        .args(["mod", "edit", "-json"])
        .arg(spec.module_dir.join("go.mod"))
        .output()
        .context("cannot run go mod edit")?;
    if !output.status.success() {
        bail!(
            "go mod edit -json {}/go.mod: {}",
            spec.module_dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let go_mod: GoMod =
        serde_json::from_slice(&output.stdout).context("cannot read go mod edit -json's answer")?;
    Ok(render_build_module(
        spec.path,
        spec.version,
        spec.companions,
        &go_mod,
    ))
}

fn render_build_module(path: &str, version: &str, companions: &str, go_mod: &GoMod) -> String {
    let required: std::collections::BTreeSet<&str> =
        go_mod.require.iter().map(|r| r.path.as_str()).collect();
    let mut text = format!(
        "// Made by kmatrix: builds {path}@{version}'s programs, with the modules its\n\
         // replace directives point into its own tree at their published versions.\nmodule kmatrix.local/build\n\ngo {}\n\nrequire (\n\t{path} {version}\n",
        go_mod.go.as_deref().unwrap_or("1.21")
    );
    for replaced in &go_mod.replace {
        let into_tree = replaced.new.path.starts_with("./") || replaced.new.path.starts_with("../");
        if into_tree && required.contains(replaced.old.path.as_str()) {
            text.push_str(&format!("\t{} {companions}\n", replaced.old.path));
        }
    }
    text.push_str(")\n");
    text
}

/// The pause program, static, from the Kubernetes tree's `build/pause`
/// (the caller has checked for gcc with [`check_build_tools`] before the
/// Go builds, so a missing compiler is said before minutes of compiling).
pub fn build_pause(module_dir: &Path, bin: &Path, log_path: &Path) -> Result<()> {
    let mut log = File::options().create(true).append(true).open(log_path)?;
    logged_step(
        Command::new("gcc")
            .args(["-Os", "-Wall", "-Werror", "-static"])
            .arg(format!("-DVERSION={PAUSE_VERSION}"))
            .arg("-o")
            .arg(bin.join("pause"))
            .arg(module_dir.join("build/pause/linux/pause.c")),
        &mut log,
        log_path,
        &mut |_| {},
    )
}

/// The binaries' sha256, written as `binaries.json` in `dir`.
pub fn record_binaries(bin: &Path, dir: &Path) -> Result<PathBuf> {
    let mut sums = serde_json::Map::new();
    for entry in fs::read_dir(bin)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .expect("named")
            .to_string_lossy()
            .into_owned();
        sums.insert(name, crate::hashing::sha256_file(&path)?.into());
    }
    fs::write(dir.join("binaries.json"), serde_json::to_vec_pretty(&sums)?)?;
    Ok(PathBuf::from("binaries.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_module_requires_the_replaced_modules_at_their_published_version() {
        let go_mod: GoMod = serde_json::from_str(
            r#"{"Go":"1.24.0","Require":[{"Path":"k8s.io/api","Version":"v0.0.0"},{"Path":"github.com/x/y","Version":"v1.0.0"}],
                "Replace":[{"Old":{"Path":"k8s.io/api"},"New":{"Path":"./staging/src/k8s.io/api"}},
                           {"Old":{"Path":"k8s.io/sample-cli-plugin"},"New":{"Path":"./staging/src/k8s.io/sample-cli-plugin"}},
                           {"Old":{"Path":"go.etcd.io/etcd"},"New":{"Path":"example.com/fork","Version":"v1.0.0"}}]}"#,
        )
        .unwrap();
        let text = render_build_module("k8s.io/kubernetes", "v1.34.4", "v0.34.4", &go_mod);
        assert!(text.contains("go 1.24.0\n"), "{text}");
        assert!(text.contains("\tk8s.io/kubernetes v1.34.4\n"), "{text}");
        assert!(text.contains("\tk8s.io/api v0.34.4\n"), "{text}");
        // Not required by the module: its version is never asked for.
        assert!(!text.contains("sample-cli-plugin"), "{text}");
        // Replaced by another module, not a folder of the tree.
        assert!(!text.contains("go.etcd.io/etcd"), "{text}");
        assert!(!text.contains("github.com/x/y"), "{text}");
    }

    #[test]
    fn binaries_are_named_as_go_build_names_them() {
        assert_eq!(go_binary_name("k8s.io/kubernetes/cmd/kubelet"), "kubelet");
        assert_eq!(go_binary_name("go.etcd.io/etcd/server/v3"), "server");
        assert_eq!(go_binary_name("example.com/vendor"), "vendor");
    }
}
