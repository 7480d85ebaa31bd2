//! `kmatrix lock accept`: prints what changed in each accepted entry.

use anyhow::Result;
use kmatrix::events::Events;
use kmatrix::inputs::LockedPackage;
use kmatrix::ops::lock::Accepted;
use kmatrix::Project;
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn accept(project: &Project, cache_root: &Path, keys: &[String]) -> Result<ExitCode> {
    let accepted = crate::shared::with_display(|events: Events| {
        kmatrix::ops::lock::accept(project, cache_root, keys, events)
    })?;
    for entry in &accepted {
        print_entry(entry);
    }
    let changed = accepted.iter().filter(|a| a.changed()).count();
    println!(
        "{changed} of {} entr{} changed in {}; commit it",
        accepted.len(),
        if accepted.len() == 1 { "y" } else { "ies" },
        project.images_dir().join("kmatrix.lock").display()
    );
    Ok(ExitCode::from(ExitStatus::OK))
}

fn print_entry(entry: &Accepted) {
    println!("{}", entry.key);
    if !entry.changed() {
        println!("  unchanged: the source serves the pinned bytes");
        for package in &entry.new.packages {
            println!("    {}", describe(package));
        }
        return;
    }
    for package in &entry.old.packages {
        println!("  - {}", describe(package));
    }
    for package in &entry.new.packages {
        println!("  + {}", describe(package));
    }
}

/// `name version digest`, the digest whole (h1: for a module, else sha256).
fn describe(package: &LockedPackage) -> String {
    let digest = match &package.h1 {
        Some(h1) => h1.clone(),
        None => format!("sha256:{}", package.sha256),
    };
    match &package.url {
        Some(url) => format!("{url} {digest}"),
        None => format!("{} {} {digest}", package.name, package.version),
    }
}
