//! `kmatrix repro`: re-runs one cell and prints how to reproduce it by hand.

use crate::shared::exit;
use anyhow::Result;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn repro(
    project: &Project,
    cache_root: &Path,
    cell_id: &str,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let repro = ops::repro::repro(project, cache_root, cell_id, out)?;
    let cell = &repro.cell;
    println!(
        "\n{} {} {} on {}: {}",
        cell.scenario,
        cell.version,
        cell.variant,
        cell.kernel,
        repro
            .record
            .as_ref()
            .map(|r| format!("{} {}", r.verdict, r.signature))
            .unwrap_or_else(|| "no result".into())
    );
    if let (Some(boot), Some(command)) = (&repro.boot_dir, &repro.qemu_command) {
        println!("\nTo reproduce without kmatrix, boot the same kernel and initramfs:\n");
        println!("  {command}");
        println!(
            "\n(the initramfs is {}; its /init is the kmatrix agent, /kmatrix/job.json the job)",
            boot.join("initramfs.cpio").display()
        );
    }
    println!("\nInside the guest the agent runs, each in a fresh network namespace:\n");
    for probe in &cell.probes {
        let env: Vec<String> = probe.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "  {}{}",
            if env.is_empty() {
                String::new()
            } else {
                format!("{} ", env.join(" "))
            },
            kmatrix::backend::qemu::shell_words(&probe.argv)
        );
    }
    println!("\nresults: {}", repro.out.display());
    exit(ExitStatus::OK)
}
