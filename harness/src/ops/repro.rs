//! `kmatrix repro CELL`: reruns exactly one cell and says how to reproduce
//! it without kmatrix (the QEMU command, the commands inside the guest).

use super::run::{run, RunOptions};
use crate::backend::accel::AccelChoice;
use crate::cancel::Cancel;
use crate::diagnostic::FileError;
use crate::plan::{Cell, Selection};
use crate::project::Request;
use crate::provision::EmulatorChoice;
use crate::results::CELLS_FILE;
use crate::Project;
use anyhow::Result;
use kmatrix_metadata::CellRecord;
use std::fs;
use std::path::{Path, PathBuf};

pub struct Repro {
    pub cell: Cell,
    pub record: Option<CellRecord>,
    pub out: PathBuf,
    /// The boot folder of the boot that gave the verdict.
    pub boot_dir: Option<PathBuf>,
    /// `qemu-command.txt` of that boot.
    pub qemu_command: Option<String>,
}

pub fn repro(
    project: &Project,
    cache_root: &Path,
    cell_id: &str,
    out: Option<PathBuf>,
) -> Result<Repro> {
    let (catalog, _) = project.load_selected(&[])?;
    let every_kernel: Vec<String> = catalog.kernel_ids().iter().map(|k| k.to_string()).collect();
    // A cluster cell's id hashes its Kubernetes release: each is planned.
    let releases: Vec<Option<String>> = std::iter::once(None)
        .chain(
            catalog
                .kubernetes
                .iter()
                .flat_map(|k| k.releases.iter().map(|r| Some(r.version.clone()))),
        )
        .collect();
    let mut found = None;
    for kubernetes in releases {
        let planned = project.plan(&Request {
            kernels: every_kernel.clone(),
            kubernetes: kubernetes.clone(),
            ..Default::default()
        })?;
        if let Some(cell) = planned.cells.into_iter().find(|c| c.id == cell_id) {
            found = Some((cell, kubernetes));
            break;
        }
    }
    let Some((cell, kubernetes)) = found else {
        return Err(FileError::whole_file(
            &project.scenarios_dir,
            format!("no cell `{cell_id}` in the current plan"),
            "take the id from `kmatrix plan` (a report from older inputs may name ids that no longer exist)",
        )
        .into());
    };
    let out = out.unwrap_or_else(|| {
        project
            .root
            .join("results/runs")
            .join(format!("repro-{cell_id}"))
    });
    if out.join(CELLS_FILE).exists() {
        fs::remove_file(out.join(CELLS_FILE))?;
    }
    let options = RunOptions {
        request: Request {
            scenarios: vec![cell.scenario.to_string()],
            kernels: vec![cell.kernel.to_string()],
            selection: Selection {
                cells: vec![cell.id.to_string()],
                ..Default::default()
            },
            added_versions: Vec::new(),
            kubernetes,
        },
        keep_initramfs: true,
        ..RunOptions::ad_hoc(
            Request::default(),
            out.clone(),
            AccelChoice::Auto,
            EmulatorChoice::Pinned(None),
        )
    };
    let summary = run(project, cache_root, &options, Cancel::new())?;
    let record = summary.records.into_iter().find(|r| cell.id == r.cell_id);
    let boot_dir = record
        .as_ref()
        .and_then(|r| r.console_log.as_ref())
        .and_then(|console| out.join(console).parent().map(Path::to_path_buf));
    let qemu_command = boot_dir
        .as_ref()
        .and_then(|dir| fs::read_to_string(dir.join(crate::backend::machine::COMMAND_FILE)).ok());
    Ok(Repro {
        cell,
        record,
        out,
        boot_dir,
        qemu_command,
    })
}
