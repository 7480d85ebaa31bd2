//! What several commands share: exit codes, run folders, Ctrl-C, the one event pump.

use crate::args::Accel;
use anyhow::{Context, Result};
use kmatrix::backend::accel::AccelChoice;
use kmatrix::cancel::Cancel;
use kmatrix::events::Events;
use kmatrix::reporter::{Display, Reporter};
use kmatrix::results::read_run;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

pub fn exit(status: u8) -> Result<ExitCode> {
    Ok(ExitCode::from(status))
}

/// Reads a run's cells, saying on stderr when a torn last line was dropped.
pub fn cells_of(path: &Path) -> Result<Vec<kmatrix_metadata::CellRecord>> {
    let cells = read_run(path)?;
    if let Some(warning) = &cells.warning {
        eprintln!("{warning}");
    }
    Ok(cells.records)
}

/// `results/runs/<prefix><UTC timestamp>`: where a run goes without --out.
pub fn default_run_dir(project: &Project, prefix: &str) -> PathBuf {
    stamped_dir(&project.root.join("results/runs"), prefix)
}

/// `<parent>/<prefix><UTC timestamp>`.
pub fn stamped_dir(parent: &Path, prefix: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    parent.join(format!("{prefix}{stamp}"))
}

/// Ctrl-C stops the VMs and keeps finished cells; a second one quits at once.
pub fn interrupt_flag() -> Result<Cancel> {
    let interrupted = Cancel::new();
    let flag = interrupted.flag();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(ExitStatus::INTERRUPTED));
        }
        eprintln!("\ninterrupted: stopping the VMs; finished cells are kept (Ctrl-C again to quit at once)");
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(interrupted)
}

pub fn accel_choice(accel: Accel) -> AccelChoice {
    match accel {
        Accel::Auto => AccelChoice::Auto,
        Accel::Tcg => AccelChoice::Tcg,
        Accel::Kvm => AccelChoice::Kvm,
    }
}

/// `latest:<series>` kernel selectors, looked up in the archives now.
pub fn resolve_latest(
    project: &Project,
    cache_root: &Path,
    kernels: &[String],
) -> Result<Vec<String>> {
    if !kernels.iter().any(|k| k.starts_with(ops::discover::LATEST)) {
        return Ok(kernels.to_vec());
    }
    let (ids, said) = ops::discover::resolve_latest(project, cache_root, kernels)?;
    for line in said {
        eprintln!("kernel {line}");
    }
    Ok(ids)
}

/// Runs `work` on another thread with the terminal display drawing its events.
pub fn with_display<T: Send>(work: impl FnOnce(Events) -> T + Send) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || work(Events::new(sender)));
        let mut display = Display::new();
        for event in receiver {
            let _ = display.report(&event);
        }
        worker.join().expect("the worker does not panic")
    })
}
