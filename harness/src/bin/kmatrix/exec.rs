//! `kmatrix exec`: one program on several kernels; prints a row per kernel.

use crate::args::ExecArgs;
use crate::shared::{default_run_dir, exit};
use anyhow::Result;
use kmatrix::backend::accel::AccelChoice;
use kmatrix::provision::EmulatorChoice;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn exec(project: &Project, cache_root: &Path, args: ExecArgs) -> Result<ExitCode> {
    let mut env = std::collections::BTreeMap::new();
    for pair in &args.env {
        let Some((key, value)) = pair.split_once('=') else {
            eprintln!("error: --env {pair}: write KEY=VALUE\n  see `kmatrix exec --help`");
            return exit(ExitStatus::BAD_INPUT);
        };
        env.insert(key.to_string(), value.to_string());
    }
    let out = args
        .out
        .unwrap_or_else(|| default_run_dir(project, "exec-"));
    let options = ops::exec::ExecOptions {
        kernels: args.kernels,
        image: args.image,
        binary: args.binary,
        module: args.module.map(|reference| ops::exec::ExecModule {
            reference,
            toolchain: args.toolchain.unwrap_or_default(),
            cgo: args.cgo,
            flags: args.build_flags,
        }),
        args: args.args,
        env,
        out,
        timeout_secs: args.timeout,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        accel: AccelChoice::Auto,
        emulator: EmulatorChoice::Pinned(None),
    };
    let summary = ops::exec::exec(
        project,
        cache_root,
        &options,
        Arc::new(AtomicBool::new(false)),
    )?;
    println!(
        "{:<18} {:<26} {:<11} {:<10} output",
        "kernel", "release", "verdict", "exit"
    );
    for kernel in &options.kernels {
        let Some(record) = summary.records.iter().find(|r| &r.kernel == kernel) else {
            continue;
        };
        let probe = record.probes.first();
        let output = probe
            .map(|p| format!("{}{}", p.stdout, p.stderr))
            .unwrap_or_else(|| record.signature.clone());
        let first_line = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        println!(
            "{:<18} {:<26} {:<11} {:<10} {}",
            kernel,
            record.kernel_release.as_deref().unwrap_or("-"),
            record.verdict.as_str(),
            probe.map(|p| p.exit.as_str()).unwrap_or("-"),
            first_line.chars().take(100).collect::<String>()
        );
        let facts: Vec<String> = ["mptcp.enabled", "go.version", "go.mptcp_listeners"]
            .iter()
            .filter_map(|f| record.facts.get(*f).map(|v| format!("{f}={v}")))
            .collect();
        if !facts.is_empty() {
            println!("{:<18} {}", "", facts.join("  "));
        }
    }
    println!("results: {}", summary.out.display());
    exit(ExitStatus::OK)
}
