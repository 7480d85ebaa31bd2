//! `kmatrix exec`: "does this binary (or image) work on these kernels?"
//! without writing a scenario. It writes a one-version scenario into a
//! throw-away project beside the real catalogs, runs it like any run, and
//! returns one record per kernel.

use super::run::{run, RunOptions, RunSummary};
use crate::backend::accel::AccelChoice;
use crate::files::copy_tree;
use crate::project::Request;
use crate::provision::EmulatorChoice;
use crate::Project;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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

pub fn exec(
    project: &Project,
    cache_root: &Path,
    options: &ExecOptions,
    interrupted: Arc<AtomicBool>,
) -> Result<RunSummary> {
    if options.kernels.is_empty() {
        bail!("give at least one --kernel (`kmatrix list` shows them)");
    }
    let temp = tempfile::Builder::new().prefix("kmatrix-exec-").tempdir()?;
    let root = temp.path();
    copy_tree(
        &project.images_dir(),
        &root.join("images"),
        &crate::files::all,
    )?;
    let folder = root.join("scenarios").join(SCENARIO);
    fs::create_dir_all(&folder)?;
    fs::write(folder.join("scenario.toml"), scenario_text(options)?)?;
    let run_options = RunOptions {
        request: Request {
            scenarios: vec![SCENARIO.into()],
            kernels: options.kernels.clone(),
            ..Default::default()
        },
        out: options.out.clone(),
        resume: false,
        jobs: options.jobs,
        accel: options.accel,
        locked: false,
        retries: Some(0),
        emulator: options.emulator.clone(),
        keep_initramfs: false,
        only: None,
    };
    run(&Project::new(root), cache_root, &run_options, interrupted)
}

/// The one-version scenario, as TOML.
fn scenario_text(options: &ExecOptions) -> Result<String> {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let list = |items: &[String]| {
        format!(
            "[{}]",
            items
                .iter()
                .map(|i| quote(i))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let (what, version) = match (&options.image, &options.binary, &options.module) {
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
        kernels = list(&options.kernels),
        what = quote(&what),
        env = env.join(", "),
        timeout = options.timeout_secs,
    ))
}
