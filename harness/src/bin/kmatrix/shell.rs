//! `kmatrix shell`: a shell in a kernel's guest, on this terminal.

use crate::args::ShellArgs;
use crate::shared::{accel_choice, exit};
use anyhow::Result;
use kmatrix::cancel::Cancel;
use kmatrix::provision::EmulatorChoice;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn shell(project: &Project, cache_root: &Path, args: ShellArgs) -> Result<ExitCode> {
    let options = ops::shell::ShellOptions {
        kernel: args.kernel,
        scenario: args.scenario,
        version: args.version,
        variant: args.variant,
        accel: accel_choice(args.accel),
        emulator: EmulatorChoice::Pinned(None),
    };
    let end = ops::shell::shell(project, cache_root, &options, Cancel::new())?;
    match end.failure {
        None => {
            eprintln!(
                "\nkmatrix shell: {} on {}: the guest powered off ({})",
                end.guest, options.kernel, end.accel
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(why) => {
            eprintln!(
                "\nkmatrix shell: {} on {}: {why} ({})",
                end.guest, options.kernel, end.accel
            );
            exit(ExitStatus::FAILED)
        }
    }
}
