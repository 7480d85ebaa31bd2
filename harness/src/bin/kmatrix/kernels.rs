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
            print_list(&ops::kernels::list(project, cache_root)?);
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

/// Kernels booted in QEMU, oldest first, then the environments that are not
/// kernels; the `<kernel>+k8s` clusters, one per bootable kernel, are folded
/// into one line naming those already built.
fn print_list(rows: &[ops::kernels::KernelRow]) {
    use kmatrix::inputs::{EnvironmentSource, Source};
    let cached = |row: &ops::kernels::KernelRow| match row.cached {
        Some(true) => "cached",
        Some(false) => "-",
        None => "?",
    };
    let (environments, kernels): (Vec<_>, Vec<_>) = rows
        .iter()
        .partition(|row| !row.entry.source.boots_in_qemu());
    let id_width = kernels
        .iter()
        .map(|r| r.entry.id.as_str().len())
        .max()
        .unwrap_or(6);
    let releases: Vec<String> = kernels.iter().map(|r| r.entry.release_hint()).collect();
    let release_width = releases.iter().map(String::len).max().unwrap_or(7);
    let indent = id_width + release_width + 14;
    println!("Kernels booted in QEMU, oldest first ({}):", kernels.len());
    println!(
        "  {:<id_width$}  {:<release_width$}  {:<6}  origin",
        "kernel", "release", "cache"
    );
    for (row, release) in kernels.iter().zip(&releases) {
        let kernel = &row.entry;
        println!(
            "  {:<id_width$}  {release:<release_width$}  {:<6}  {}",
            kernel.id.as_str(),
            cached(row),
            kernel.source.describe()
        );
        if let (Some(word), Some(alias)) = (kernel.build_word(), kernel.aliases.first()) {
            println!("{:indent$}{word} build; also --kernel {alias}", "");
        }
        if let Some(stand_in) = &kernel.stands_in_for {
            println!("{:indent$}stands in for {stand_in}", "");
        }
        if let Some(checksums) = &kernel.checksums {
            println!("{:indent$}checksums published in {checksums}", "");
        }
    }
    println!("\nEnvironments that are not a kernel of their own:");
    let mut in_guests = Vec::new();
    for row in &environments {
        if let Source::Environment(EnvironmentSource::GuestKubernetes { kernel }) =
            &row.entry.source
        {
            if row.cached == Some(true) {
                in_guests.push(kernel.as_str());
            }
            continue;
        }
        println!(
            "  {:<12}  {:<6}  {}",
            row.entry.id.as_str(),
            cached(row),
            row.entry.source.describe()
        );
    }
    println!(
        "  {:<12}  {:<6}  the local Kubernetes cluster inside a kernel's QEMU guest, for every kernel above",
        "<kernel>+k8s", ""
    );
    if !in_guests.is_empty() {
        println!(
            "  {:<12}  {:<6}  for: {}",
            "",
            "cached",
            in_guests.join(", ")
        );
    }
}
