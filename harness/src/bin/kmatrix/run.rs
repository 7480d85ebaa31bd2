//! `kmatrix run`: runs the matrix and prints its one-line summary.

use crate::args::{FailOn, RunArgs};
use crate::shared::{
    accel_choice, cells_of, default_run_dir, exit, interrupt_flag, resolve_latest,
};
use anyhow::{Context, Result};
use kmatrix::diff;
use kmatrix::ops::run::RunOptions;
use kmatrix::plan::Selection;
use kmatrix::project::Request;
use kmatrix::provision::EmulatorChoice;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use kmatrix_metadata::{CellRecord, Verdict};
use std::path::Path;
use std::process::ExitCode;

pub fn run(project: &Project, cache_root: &Path, mut args: RunArgs) -> Result<ExitCode> {
    let gates = std::mem::take(&mut args.fail_on);
    // The baseline is read before anything runs: a wrong path is found now.
    let baseline = if gates.contains(&FailOn::Regressions) {
        Some(match &args.baseline {
            Some(dir) => cells_of(dir)?,
            None => project.baseline_cells().context(
                "--fail-on regressions: this project has no results/baseline; give --baseline DIR",
            )?,
        })
    } else {
        None
    };
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
            kubernetes: args.select.kubernetes,
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
        shell: false,
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
        summary.accel.name(),
        summary.cache.reused,
        summary.cache.made
    );
    print!("{}", kmatrix::reporter::summary::render(&summary.records));
    println!("matrix: {}", summary.out.join("matrix.md").display());
    let failed_on = fail_on(&gates, baseline.as_deref(), &summary.records);
    for reason in &failed_on {
        println!("--fail-on: {reason}");
    }
    if summary.interrupted {
        println!(
            "interrupted: continue with `kmatrix run --resume {}`",
            summary.out.display()
        );
        return exit(ExitStatus::INTERRUPTED);
    }
    exit(if failed_on.is_empty() {
        ExitStatus::OK
    } else {
        ExitStatus::FAILED
    })
}

/// What `--fail-on` found in the run; empty when it passes the gate.
fn fail_on(
    gates: &[FailOn],
    baseline: Option<&[CellRecord]>,
    records: &[CellRecord],
) -> Vec<String> {
    let count = |wanted: fn(Verdict) -> bool| records.iter().filter(|r| wanted(r.verdict)).count();
    let mut found = Vec::new();
    for gate in gates {
        let (n, what) = match gate {
            FailOn::Findings => (
                count(Verdict::is_failure),
                "cells are fail, crash or timeout",
            ),
            FailOn::Infra => (count(|v| v == Verdict::InfraError), "cells are infra-error"),
            FailOn::Regressions => (
                baseline.map_or(0, |old| diff::diff(old, records, false).regressions()),
                "regressions against the baseline (`kmatrix diff` lists them)",
            ),
        };
        if n > 0 {
            found.push(format!("{n} {what}"));
        }
    }
    found
}
