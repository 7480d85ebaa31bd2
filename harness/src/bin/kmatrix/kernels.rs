//! `kmatrix kernels list|discover|fetch|build`.

use crate::args::KernelsCommand;
use crate::shared::{exit, with_display};
use anyhow::Result;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn kernels(project: &Project, cache_root: &Path, command: KernelsCommand) -> Result<ExitCode> {
    match command {
        KernelsCommand::List => {
            println!("{:<25} {:<7} {:<7} origin", "kernel", "version", "cache");
            for row in ops::kernels::list(project, cache_root)? {
                let cached = match row.cached {
                    Some(true) => "cached",
                    Some(false) => "-",
                    None => "?",
                };
                let kernel = &row.entry;
                println!(
                    "{:<25} {:<7} {:<7} {}",
                    kernel.id.as_str(),
                    kernel.version,
                    cached,
                    kernel.source.describe()
                );
                if let Some(stand_in) = &kernel.stands_in_for {
                    println!("{:<41} stands in for {stand_in}", "");
                }
                if let Some(checksums) = &kernel.checksums {
                    println!("{:<41} checksums published in {checksums}", "");
                }
            }
            exit(ExitStatus::OK)
        }
        KernelsCommand::Discover { write } => {
            let found = ops::discover::discover(project, cache_root)?;
            println!("{:<20} {:<64} catalog", "series", "newest build");
            for d in &found {
                println!(
                    "{:<20} {:<64} {}",
                    d.id,
                    d.build,
                    match (&d.in_catalog, d.same_id) {
                        (Some(id), _) => format!("has it: {id}"),
                        (None, true) => format!("{} is older: `--write` bumps it", d.id),
                        (None, false) => "missing".to_string(),
                    }
                );
            }
            if write {
                for line in ops::discover::write(project, &found)? {
                    println!("{line}");
                }
            }
            exit(ExitStatus::OK)
        }
        KernelsCommand::Fetch { ids } | KernelsCommand::Build { ids } => {
            let fetched =
                with_display(|events| ops::kernels::fetch(project, cache_root, &ids, events))?;
            let mut failed = false;
            for (id, result) in fetched {
                match result {
                    Ok((environment, took)) => println!(
                        "{id}: ready in {:.1} s: {}{}",
                        took.as_secs_f64(),
                        environment
                            .kernel()
                            .map(|k| format!("{} ", k.image.display()))
                            .unwrap_or_default(),
                        environment.origin()
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("{id}: failed: {e:#}");
                    }
                }
            }
            exit(if failed {
                ExitStatus::FAILED
            } else {
                ExitStatus::OK
            })
        }
    }
}
