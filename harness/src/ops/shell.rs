//! `kmatrix shell`: an interactive shell in a kernel's guest. With a
//! scenario and version, the guest is the one that version's cell gets on
//! that kernel (its guest root, modules, artifact disk, reproducers); the
//! cell's probes are listed, not run. Without, a bare guest with busybox.

use super::run::{run, RunOptions};
use crate::backend::accel::AccelChoice;
use crate::cancel::Cancel;
use crate::diagnostic::FileError;
use crate::inputs::catalog::KERNELS_FILE;
use crate::plan::Selection;
use crate::project::Request;
use crate::provision::EmulatorChoice;
use crate::sources::apt::Apt;
use crate::Project;
use anyhow::{Context, Result};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct ShellOptions {
    pub kernel: String,
    /// The scenario whose guest to enter, and its version (and variant:
    /// the first when not given).
    pub scenario: Option<String>,
    pub version: Option<String>,
    pub variant: Option<String>,
    pub accel: AccelChoice,
    pub emulator: EmulatorChoice,
}

/// What the shell was: which cell's guest, and how the boot ended.
#[derive(Debug)]
pub struct ShellEnd {
    /// `scenario version variant`, or `a bare guest`.
    pub guest: String,
    /// The accelerator the guest ran under, and why.
    pub accel: String,
    /// Why the guest did not power off by itself (it died, QEMU was
    /// stopped, it never booted); `None` when the shell was left.
    pub failure: Option<String>,
}

const BARE: &str = "shell";

/// What `kmatrix shell` lays under a guest: Debian's static busybox (a
/// shell and its applets, whatever the scenario's guest holds), pinned in
/// the lock like any guest root.
pub(super) fn tools() -> crate::inputs::scenario::GuestSpec {
    crate::inputs::scenario::GuestSpec {
        suite: "bookworm".into(),
        packages: vec!["busybox-static".into()],
        exclude: vec!["usr/share/*".into()],
    }
}

pub fn shell(
    project: &Project,
    cache_root: &Path,
    options: &ShellOptions,
    interrupted: Cancel,
) -> Result<ShellEnd> {
    let mut catalog = project.catalog()?;
    let kernel = catalog
        .kernel_ids_from(std::slice::from_ref(&options.kernel))?
        .remove(0);
    if !catalog.kernel(&kernel).source.boots_in_qemu() {
        return Err(FileError::whole_file(
            &project.images_dir().join(KERNELS_FILE),
            format!("`{kernel}` is not a kernel QEMU boots (a container engine or a cluster)"),
            "give a kernel id (`kmatrix kernels list`), or a kernel image's path",
        )
        .into());
    }
    let temp = tempfile::Builder::new()
        .prefix("kmatrix-shell-")
        .tempdir()?;
    let (root, request, guest) = match &options.scenario {
        Some(scenario) => {
            let (request, guest) = scenario_request(project, scenario, options)?;
            (project.root.clone(), request, guest)
        }
        None => {
            let root = temp.path().join("project");
            bare_project(project, cache_root, &root, &options.kernel)?;
            let request = Request {
                scenarios: vec![BARE.into()],
                kernels: vec![options.kernel.clone()],
                ..Default::default()
            };
            (root, request, "a bare guest (busybox)".to_string())
        }
    };
    let run_options = RunOptions {
        shell: true,
        ..RunOptions::ad_hoc(
            request,
            temp.path().join("run"),
            options.accel,
            options.emulator.clone(),
        )
    };
    let summary = run(&Project::new(&root), cache_root, &run_options, interrupted)?;
    let mut failures = summary
        .info
        .boots
        .values()
        .flat_map(|b| b.death_signatures.iter().cloned());
    let failure = match summary.info.boots.is_empty() {
        // No boot at all: something it needs was out of reach.
        true => Some(
            summary
                .records
                .first()
                .map(|r| format!("{}: {}", r.verdict.as_str(), r.signature))
                .unwrap_or_else(|| "the guest was never booted".into()),
        ),
        false => failures.next(),
    };
    Ok(ShellEnd {
        guest,
        accel: format!("{} ({})", summary.accel.name(), summary.accel.reason),
        failure,
    })
}

/// The one cell whose guest the shell enters: bad input when the scenario
/// has none for this kernel and version.
fn scenario_request(
    project: &Project,
    scenario: &str,
    options: &ShellOptions,
) -> Result<(Request, String)> {
    let request = Request {
        scenarios: vec![scenario.to_string()],
        kernels: vec![options.kernel.clone()],
        selection: Selection {
            versions: options.version.iter().cloned().collect(),
            variants: options.variant.iter().cloned().collect(),
            ..Default::default()
        },
        added_versions: Vec::new(),
        kubernetes: None,
    };
    let planned = project.plan(&request)?;
    let Some(cell) = planned.cells.first() else {
        return Err(FileError::whole_file(
            &project.scenarios_dir.join(scenario).join("scenario.toml"),
            format!(
                "no cell of {scenario}{} on {}",
                options
                    .version
                    .as_ref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                options.kernel
            ),
            format!(
                "`kmatrix plan --scenario {scenario} --kernel {}` lists the versions and variants it has there",
                options.kernel
            ),
        )
        .into());
    };
    let guest = format!("{} {} {}", cell.scenario, cell.version, cell.variant);
    let request = Request {
        selection: Selection {
            cells: vec![cell.id.to_string()],
            ..Default::default()
        },
        ..request
    };
    Ok((request, guest))
}

/// A throw-away project beside the user's catalogs, whose one scenario's
/// guest holds Debian's static busybox (its version from the suite's index).
fn bare_project(project: &Project, cache_root: &Path, root: &Path, kernel: &str) -> Result<()> {
    let busybox = Apt::new(cache_root)
        .resolve("busybox-static", "bookworm")
        .context("cannot find Debian bookworm's busybox-static for the bare guest")?;
    let quote = super::exec::toml_string;
    super::exec::throwaway_project(
        project,
        root,
        BARE,
        &format!(
            r#"# Written by `kmatrix shell` for a bare guest.
[scenario]
id = "{BARE}"
component = "busybox"
title = "a bare guest"
issue = "https://github.com/kmatrix/kmatrix"
summary = "A guest with busybox and nothing else, for `kmatrix shell`."
kernels = [{kernels}]

[[version]]
id = "busybox"
debian_package = {{ suite = "bookworm", package = "busybox-static", version = {version} }}
command = ["/bin/busybox", "true"]
built_from = "Debian bookworm's busybox-static"

[[variant]]
id = "baseline"
description = "nothing added"

[[probe]]
id = "true"
run = ["/bin/busybox", "true"]
timeout_secs = 10
"#,
            // A path is no catalog id: it comes with the run's --kernel.
            kernels = match crate::inputs::kernel_path::is_path(kernel) {
                true => String::new(),
                false => quote(kernel),
            },
            version = quote(&busybox.version),
        ),
    )?;
    Ok(())
}
