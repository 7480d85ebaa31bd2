//! `kmatrix bisect`: finds the first kernel or version where a verdict changes.

use crate::args::BisectArgs;
use crate::shared::{accel_choice, default_run_dir, exit, interrupt_flag, resolve_latest};
use anyhow::Result;
use kmatrix::ops::run::RunOptions;
use kmatrix::project::Request;
use kmatrix::provision::EmulatorChoice;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn bisect(project: &Project, cache_root: &Path, mut args: BisectArgs) -> Result<ExitCode> {
    args.kernels = resolve_latest(project, cache_root, &args.kernels)?;
    use kmatrix::ops::bisect::{Axis, BisectOptions};
    let axis = match (args.versions.as_slice(), args.kernels.as_slice()) {
        ([version], kernels) if kernels.len() >= 2 => Axis::Kernels {
            version: version.clone(),
            kernels: kernels.to_vec(),
        },
        (versions, [kernel]) if versions.len() >= 2 => Axis::Versions {
            kernel: kernel.clone(),
            versions: versions.to_vec(),
        },
        _ => {
            eprintln!("error: give one --version and several --kernel (search kernels), or one --kernel and several --version (search versions)\n  see `kmatrix bisect --help`");
            return exit(ExitStatus::BAD_INPUT);
        }
    };
    let out = args
        .out
        .unwrap_or_else(|| default_run_dir(project, "bisect-"));
    let interrupted = interrupt_flag()?;
    let options = BisectOptions {
        scenario: args.scenario,
        variant: args.variant,
        axis,
        run: RunOptions {
            request: Request::default(),
            out: out.clone(),
            resume: true,
            jobs: 1,
            accel: accel_choice(args.accel),
            locked: args.locked,
            retries: Some(0),
            emulator: EmulatorChoice::from_arg(args.emulator.as_deref()),
            keep_initramfs: false,
            only: None,
            shell: false,
        },
    };
    let result = ops::bisect::bisect(project, cache_root, &options, interrupted)?;
    println!("{}", result.summary);
    println!(
        "{} boots; {}",
        result.boots,
        out.join(kmatrix_metadata::BISECT_FILE).display()
    );
    exit(if result.boundary.is_some() {
        ExitStatus::OK
    } else {
        ExitStatus::FAILED
    })
}
