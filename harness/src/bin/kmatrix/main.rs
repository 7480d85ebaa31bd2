//! The `kmatrix` command: parses the arguments (`args.rs`) and dispatches
//! each command to its module, which calls the one library function the
//! command is (`kmatrix::ops`, reports, diffs) and prints what it returns.
//! No matrix logic lives here; `shared.rs` holds the one event pump.

mod args;
mod baseline;
mod bench;
mod bisect;
mod diff;
mod exec;
mod kernels;
mod list;
mod lock;
mod merge;
mod plan;
mod report;
mod repro;
mod run;
mod shared;
mod shell;

use anyhow::{Context, Result};
use args::{BaselineCommand, Cli, Command, LockCommand};
use clap::Parser;
use kmatrix::diagnostic::FileError;
use kmatrix::sources::cache::Cache;
use kmatrix::Project;
use kmatrix_metadata::ExitStatus;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A closed pipe (`kmatrix kernels list | head -1`) ends the output
    // quietly, as for any Unix filter, instead of a panic in println!.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(error) => {
            if let Some(file_error) = error.downcast_ref::<FileError>() {
                eprintln!("{file_error}");
                return ExitCode::from(ExitStatus::BAD_INPUT);
            }
            eprintln!("error: {error:#}");
            ExitCode::from(ExitStatus::FAILED)
        }
    }
}

/// `run --resume DIR` from outside any project: the project the run came
/// from, as its `run.json` records it.
fn resumed_project(command: &Command) -> Option<Project> {
    let Command::Run(args) = command else {
        return None;
    };
    let info = kmatrix::results::read_run_info(args.resume.as_ref()?)?;
    let root = PathBuf::from(info.project?);
    Project::discover(&root)
}

fn execute(cli: Cli) -> Result<ExitCode> {
    let project = match &cli.root {
        Some(root) => Project::new(root),
        None => {
            let here = std::env::current_dir()?;
            Project::discover(&here)
                .or_else(|| resumed_project(&cli.command))
                .with_context(|| {
                format!(
                    "no kmatrix project at or above {} (no images/kernels.toml); run from the repository or pass --root",
                    here.display()
                )
            })?
        }
    };
    let cache_root = cli.cache.clone().unwrap_or_else(Cache::default_root);
    match cli.command {
        Command::List => list::list(&project),
        Command::Plan(args) => plan::plan(&project, &cache_root, args),
        Command::Merge { dirs, out } => merge::merge(&project, &dirs, &out),
        Command::Repro { cell, out } => repro::repro(&project, &cache_root, &cell, out),
        Command::Report(args) => report::report(&project, args),
        Command::Run(args) => run::run(&project, &cache_root, args),
        Command::Bisect(args) => bisect::bisect(&project, &cache_root, args),
        Command::Diff(args) => diff::diff(args),
        Command::Baseline(BaselineCommand::Accept { run }) => baseline::accept(&project, &run),
        Command::Kernels(command) => kernels::kernels(&project, &cache_root, command),
        Command::Lock(LockCommand::Accept { keys }) => lock::accept(&project, &cache_root, &keys),
        Command::Exec(args) => exec::exec(&project, &cache_root, args),
        Command::Shell(args) => shell::shell(&project, &cache_root, args),
        Command::Bench(args) => bench::bench(&project, &cache_root, args),
    }
}
