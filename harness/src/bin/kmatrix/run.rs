//! `kmatrix run`: runs the matrix and prints its one-line summary.

use crate::args::RunArgs;
use crate::shared::{accel_choice, default_run_dir, exit, interrupt_flag, resolve_latest};
use anyhow::Result;
use kmatrix::ops::run::RunOptions;
use kmatrix::plan::Selection;
use kmatrix::project::Request;
use kmatrix::provision::EmulatorChoice;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn run(project: &Project, cache_root: &Path, mut args: RunArgs) -> Result<ExitCode> {
    args.select.kernels = resolve_latest(project, cache_root, &args.select.kernels)?;
    let (out, resume) = match (args.out, args.resume) {
        (_, Some(dir)) => (dir, true),
        (Some(dir), None) => (dir, false),
        (None, None) => (default_run_dir(project, ""), false),
    };
    let interrupted = interrupt_flag()?;
    let options = RunOptions {
        request: Request {
            scenarios: args.select.scenarios,
            kernels: args.select.kernels,
            added_versions: args.select.added_versions,
            selection: Selection {
                variants: args.select.variants,
                versions: args.select.versions,
                cells: args.cells,
                shard: args.shard,
            },
        },
        out,
        resume,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        accel: accel_choice(args.accel),
        locked: args.locked,
        retries: args.retries,
        emulator: EmulatorChoice::from_arg(args.emulator.as_deref()),
        keep_initramfs: false,
        only: None,
    };
    let summary = ops::run::run(project, cache_root, &options, interrupted)?;
    let counts: Vec<String> = summary
        .counts
        .iter()
        .map(|(verdict, n)| format!("{n} {verdict}"))
        .collect();
    println!(
        "{} cells in {} ({}); accelerator {}; cache: {} reused, {} made",
        summary.planned,
        summary.out.display(),
        counts.join(", "),
        summary.accel.accel,
        summary.cache.reused,
        summary.cache.made
    );
    println!("matrix: {}", summary.out.join("matrix.md").display());
    if summary.interrupted {
        println!(
            "interrupted: continue with `kmatrix run --resume {}`",
            summary.out.display()
        );
        return exit(ExitStatus::INTERRUPTED);
    }
    exit(ExitStatus::OK)
}
