//! Builds Kubernetes' server binaries from an upstream source tarball that
//! carries `vendor/` (Debian's `kubernetes` source package), offline, with
//! the tree's own `make WHAT=…`, and the pause program its pod sandboxes
//! run. Only the binaries are kept: the build tree is ~3 GB.

use super::kbuild::logged_step;
use crate::events::Events;
use anyhow::{Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to build.
pub struct K8sBuild<'a> {
    pub tarball: &'a Path,
    pub goroot: &'a Path,
    /// Stamped into every binary, e.g. "v1.20.2".
    pub version: &'a str,
    pub binaries: &'a [String],
}

/// The pause program's version string (`pause -v`), after the tree's own
/// build/pause/Makefile (TAG 3.4).
pub const PAUSE_VERSION: &str = "v3.4-kmatrix";

/// What a build tree needs besides Go: `make`, and `rsync`, which the tree's
/// build scripts copy generated code with.
pub fn check_build_tools() -> Result<()> {
    crate::files::require_tools(
        &["make", "rsync", "gcc", "tar"],
        "building Kubernetes needs",
    )
}

/// Builds into `dir/bin` (the binaries and `pause`), keeps `dir/build.log`;
/// returns `binaries.json` (each binary's sha256), relative to `dir`.
pub fn build(spec: &K8sBuild, dir: &Path, events: &Events) -> Result<PathBuf> {
    check_build_tools()?;
    let label = format!("build kubernetes {}", spec.version);
    let log_path = dir.join("build.log");
    let mut log = File::create(&log_path)?;
    let src = dir.join("src");
    fs::create_dir_all(&src)?;
    events.progress(&label, 0, None, "unpacking the source tree");
    logged_step(
        Command::new("tar")
            .arg("xzf")
            .arg(spec.tarball)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(&src),
        &mut log,
        &log_path,
        &mut |_| {},
    )?;
    let what = spec
        .binaries
        .iter()
        .map(|b| format!("cmd/{b}"))
        .collect::<Vec<_>>()
        .join(" ");
    let path = format!(
        "{}:{}",
        spec.goroot.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut steps = 0u64;
    let mut make = Command::new("make");
    super::gotool::isolate(&mut make, spec.goroot);
    logged_step(
        make.arg(format!("WHAT={what}"))
            .current_dir(&src)
            .env("PATH", path)
            // Everything the build writes stays in the tree we delete after.
            .env("GOCACHE", src.join("_output/gocache"))
            .env("HOME", &src)
            // hack/lib/version.sh stamps from these when there is no .git.
            .env("KUBE_GIT_VERSION", spec.version)
            .env("KUBE_GIT_TREE_STATE", "clean")
            .env("KUBE_GIT_COMMIT", "0".repeat(40)),
        &mut log,
        &log_path,
        &mut |line| {
            // The tree's scripts announce each phase with "+++ [date] ...".
            if let Some(phase) = line.strip_prefix("+++ ") {
                steps += 1;
                let phase = phase.split_once("] ").map(|(_, p)| p).unwrap_or(phase);
                events.progress(&label, steps, None, phase.trim());
            }
        },
    )?;
    let bin = dir.join("bin");
    fs::create_dir_all(&bin)?;
    let built = src.join("_output/bin");
    let mut sums = serde_json::Map::new();
    for name in spec.binaries {
        fs::copy(built.join(name), bin.join(name))
            .with_context(|| format!("the build made no {name} (see {})", log_path.display()))?;
    }
    events.progress(&label, steps + 1, None, "compiling pause (static)");
    logged_step(
        Command::new("gcc")
            .args(["-Os", "-Wall", "-Werror", "-static"])
            .arg(format!("-DVERSION={PAUSE_VERSION}"))
            .arg("-o")
            .arg(bin.join("pause"))
            .arg(src.join("build/pause/linux/pause.c")),
        &mut log,
        &log_path,
        &mut |_| {},
    )?;
    for entry in fs::read_dir(&bin)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .expect("named")
            .to_string_lossy()
            .into_owned();
        sums.insert(name, crate::hashing::sha256_file(&path)?.into());
    }
    fs::remove_dir_all(&src)
        .with_context(|| format!("cannot remove the build tree {}", src.display()))?;
    fs::write(dir.join("binaries.json"), serde_json::to_vec_pretty(&sums)?)?;
    Ok(PathBuf::from("binaries.json"))
}
