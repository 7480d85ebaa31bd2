//! `kmatrix exec`: "does this binary (or image) work on these kernels?"
//! without writing a scenario. It writes a one-version scenario into a
//! throw-away project beside the real catalogs, runs it like any run, and
//! returns one record per kernel.

use super::run::{run, RunOptions, RunSummary};
use crate::backend::accel::AccelChoice;
use crate::cancel::Cancel;
use crate::diagnostic::FileError;
use crate::files::copy_tree;
use crate::project::Request;
use crate::provision::EmulatorChoice;
use crate::Project;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// What to run where.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub kernels: Vec<String>,
    /// An image reference (registry, `docker-archive:`, `oci:`) ...
    pub image: Option<String>,
    /// ... or a local binary ...
    pub binary: Option<PathBuf>,
    /// ... or a Go module built here.
    pub module: Option<ExecModule>,
    /// The command: for a binary, its arguments; for an image, the whole
    /// command (empty: the image's entrypoint and cmd).
    pub args: Vec<String>,
    /// Environment for the program (`--env K=V`).
    pub env: BTreeMap<String, String>,
    pub out: PathBuf,
    pub timeout_secs: u64,
    pub jobs: usize,
    pub accel: AccelChoice,
    pub emulator: EmulatorChoice,
}

/// `--module PATH@VERSION --toolchain ID [--cgo] [--build-flag F]...`.
#[derive(Debug, Clone)]
pub struct ExecModule {
    pub reference: String,
    pub toolchain: String,
    pub cgo: bool,
    pub flags: Vec<String>,
}

const SCENARIO: &str = "exec";

/// Runs the program; `summary.records` name each kernel by its id (a
/// kernel given as a path: its absolute path), in the order of `kernels`.
pub fn exec(
    project: &Project,
    cache_root: &Path,
    options: &ExecOptions,
    interrupted: Cancel,
) -> Result<(RunSummary, Vec<String>)> {
    if options.kernels.is_empty() {
        bail!("give at least one --kernel (`kmatrix list` shows them)");
    }
    // Checked against the user's catalog here: an unknown id found later
    // would point into the scenario exec writes, a file the user never saw.
    // A kernel given as a path gets an id of its own (its record's), so
    // that the caller can find each kernel's record.
    let ids: Vec<String> = project
        .catalog()?
        .kernel_ids_from(&options.kernels)?
        .iter()
        .map(|id| id.to_string())
        .collect();
    let temp = tempfile::Builder::new().prefix("kmatrix-exec-").tempdir()?;
    let root = temp.path();
    throwaway_project(project, root, SCENARIO, &scenario_text(options)?)?;
    let run_options = RunOptions {
        jobs: options.jobs,
        ..RunOptions::ad_hoc(
            Request {
                scenarios: vec![SCENARIO.into()],
                kernels: options.kernels.clone(),
                ..Default::default()
            },
            options.out.clone(),
            options.accel,
            options.emulator.clone(),
        )
    };
    let summary = run(&Project::new(root), cache_root, &run_options, interrupted)?;
    Ok((summary, ids))
}

/// A project at `root` that kmatrix writes for a command (exec, shell):
/// the user's catalogs copied beside one scenario `id` of `text`, so the
/// run pins and fetches as the user's project would.
pub(super) fn throwaway_project(
    project: &Project,
    root: &Path,
    id: &str,
    text: &str,
) -> Result<()> {
    copy_tree(
        &project.images_dir(),
        &root.join("images"),
        &crate::files::all,
    )?;
    let folder = root.join("scenarios").join(id);
    fs::create_dir_all(&folder)?;
    fs::write(folder.join(crate::inputs::scenario::SCENARIO_FILE), text)?;
    Ok(())
}

/// A string as a TOML value (quoted and escaped).
pub(super) fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A list of strings as a TOML array.
fn toml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| toml_string(i)).collect();
    format!("[{}]", items.join(", "))
}

/// The one-version scenario, as TOML.
fn scenario_text(options: &ExecOptions) -> Result<String> {
    let (quote, list) = (toml_string, toml_list);
    let (what, version) = version_text(options)?;
    let env: Vec<String> = options
        .env
        .iter()
        .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
        .collect();
    Ok(format!(
        r#"# Written by `kmatrix exec`.
[scenario]
id = "{SCENARIO}"
component = {component}
title = {title}
issue = "https://example.invalid/kmatrix-exec"
summary = "An ad hoc run of one artifact on a list of kernels."
kernels = {kernels}

[guest]
suite = "bookworm"
packages = ["crun"]
exclude = ["usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*"]

[[version]]
id = "artifact"
{version}built_from = {what}

[[variant]]
id = "baseline"
description = "as given"
env = {{ {env} }}

[[probe]]
id = "exec"
run = ["{{service}}"]
timeout_secs = {timeout}
"#,
        component = quote(&what),
        title = quote(&format!("kmatrix exec {what} {}", options.args.join(" "))),
        // Paths are no catalog ids: they come with the run's --kernel.
        kernels = list(
            &options
                .kernels
                .iter()
                .filter(|k| !crate::inputs::kernel_path::is_path(k))
                .cloned()
                .collect::<Vec<_>>()
        ),
        what = quote(&what),
        env = env.join(", "),
        timeout = options.timeout_secs,
    ))
}

/// What the one version is (its artifact and command, as TOML lines), and
/// what it was built from.
fn version_text(options: &ExecOptions) -> Result<(String, String)> {
    let (quote, list) = (toml_string, toml_list);
    let made = match (&options.image, &options.binary, &options.module) {
        (None, None, Some(module)) => {
            let Some((path, version)) = module.reference.rsplit_once('@') else {
                bail!(
                    "--module {}: write PATH@VERSION, e.g. github.com/ollama/ollama@v0.5.13",
                    module.reference
                );
            };
            let name = path.rsplit('/').next().unwrap_or("program");
            let mut command = vec![format!("/usr/local/bin/{name}")];
            command.extend(options.args.iter().cloned());
            let base = if module.cgo {
                ", base = { suite = \"bookworm\", packages = [\"libc6\", \"libstdc++6\"] }"
            } else {
                ""
            };
            (
                module.reference.clone(),
                format!(
                    "module = {{ path = {}, version = {}, toolchain = {}, cgo = {}, flags = {}{base} }}\ncommand = {}\n",
                    quote(path),
                    quote(version),
                    quote(&module.toolchain),
                    module.cgo,
                    list(&module.flags),
                    list(&command)
                ),
            )
        }
        (Some(image), None, None) => {
            let mut version = format!("image = {}\n", quote(image));
            if !options.args.is_empty() {
                version.push_str(&format!("command = {}\n", list(&options.args)));
            }
            (image.clone(), version)
        }
        (None, Some(binary), None) => {
            let binary = fs::canonicalize(binary)
                .with_context(|| format!("no binary at {}", binary.display()))?;
            check_runs_alone(&binary)?;
            let name = binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut command = vec![format!("/usr/local/bin/{name}")];
            command.extend(options.args.iter().cloned());
            (
                binary.display().to_string(),
                format!(
                    "binary = {}\ncommand = {}\n",
                    quote(&binary.display().to_string()),
                    list(&command)
                ),
            )
        }
        _ => bail!("give exactly one of --image, --binary and --module"),
    };
    Ok(made)
}

/// A binary is copied into the guest alone: it must be an x86-64 ELF that
/// needs no dynamic loader, or it would fail late, on every kernel, as a
/// missing file. Checked before anything boots; bad input (exit 2).
fn check_runs_alone(binary: &Path) -> Result<()> {
    let bytes = fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let refuse = |message: String, fix: &str| -> Result<()> {
        Err(FileError::whole_file(binary, message, fix).into())
    };
    match elf_interpreter(&bytes) {
        Err(what) => refuse(
            format!("not a program kmatrix can run in a guest: {what}"),
            "give an x86-64 Linux ELF executable (or --image / --module)",
        ),
        Ok(Some(loader)) => refuse(
            format!("dynamically linked (it needs {loader} and its libraries, which the guest does not have)"),
            "build it static (Go: CGO_ENABLED=0; C: -static), or give an image with its libraries (--image)",
        ),
        Ok(None) => Ok(()),
    }
}

/// The program interpreter (PT_INTERP) an x86-64 ELF names, if any. Only
/// the header and the program headers are read: that one entry is all
/// this needs, so no ELF library is pulled in for it.
fn elf_interpreter(bytes: &[u8]) -> std::result::Result<Option<String>, String> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if !bytes.starts_with(b"\x7fELF") {
        return Err("no ELF header (a script or data file?)".into());
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian, e_machine 62 = x86-64.
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) || u16_at(18) != Some(62) {
        return Err("not a 64-bit x86-64 ELF".into());
    }
    let truncated = || "truncated ELF headers".to_string();
    let phoff = u64_at(32).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(54).ok_or_else(truncated)? as usize;
    let phnum = u16_at(56).ok_or_else(truncated)? as usize;
    for n in 0..phnum {
        let header = phoff + n * phentsize;
        if u32_at(header).ok_or_else(truncated)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(header + 8).ok_or_else(truncated)? as usize;
        let size = u64_at(header + 32).ok_or_else(truncated)? as usize;
        let path = bytes.get(offset..offset + size).ok_or_else(truncated)?;
        return Ok(Some(
            String::from_utf8_lossy(path)
                .trim_end_matches('\0')
                .to_string(),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::elf_interpreter;

    #[test]
    fn the_hosts_dynamic_programs_name_their_loader() {
        let ls = std::fs::read("/bin/ls").unwrap();
        let loader = elf_interpreter(&ls).unwrap().expect("ls is dynamic");
        assert!(loader.contains("ld-linux-x86-64"), "{loader}");
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
        assert!(elf_interpreter(b"\x7fELF").is_err());
    }
}
