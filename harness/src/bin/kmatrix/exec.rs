//! `kmatrix exec`: one program on several kernels; prints a row per kernel.

use crate::args::ExecArgs;
use crate::shared::{default_run_dir, exit};
use anyhow::Result;
use kmatrix::backend::accel::AccelChoice;
use kmatrix::cancel::Cancel;
use kmatrix::provision::EmulatorChoice;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

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
    let (summary, kernels) = ops::exec::exec(project, cache_root, &options, Cancel::new())?;
    println!("{:<18} {:<26} {:<11} exit", "kernel", "release", "verdict");
    let mut ends = Vec::new();
    for kernel in &kernels {
        let Some(record) = summary.records.iter().find(|r| &r.kernel == kernel) else {
            continue;
        };
        let probe = record.probes.first();
        println!(
            "{:<18} {:<26} {:<11} {}",
            kernel,
            record.kernel_release.as_deref().unwrap_or("-"),
            record.verdict.as_str(),
            probe.map(|p| p.exit.as_str()).unwrap_or("-"),
        );
        match probe {
            Some(p) => {
                print_stream("stdout", &p.stdout);
                print_stream("stderr", &p.stderr);
            }
            None => print_stream("why", &record.signature),
        }
        let facts: Vec<String> = ["mptcp.enabled", "go.version", "go.mptcp_listeners"]
            .iter()
            .filter_map(|f| record.facts.get(*f).map(|v| format!("{f}={v}")))
            .collect();
        if !facts.is_empty() {
            println!("  facts: {}", facts.join("  "));
        }
        ends.push(probe.map(|p| p.exit.clone()));
    }
    println!("results: {}", summary.out.display());
    exit(exit_status(&ends))
}

/// A stream of the program's output, every line, indented under its kernel.
fn print_stream(name: &str, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    println!("  {name}:");
    for line in text.lines() {
        println!("    {line}");
    }
}

/// What exec exits with: 0 when the program exited 0 on every kernel; the
/// program's own status when it exited with the same one everywhere; else
/// 1 (statuses differ, a signal, a timeout, a kernel where it never ran).
fn exit_status(ends: &[Option<String>]) -> u8 {
    let codes: Vec<Option<u8>> = ends
        .iter()
        .map(|end| end.as_deref()?.strip_prefix("exit ")?.parse().ok())
        .collect();
    match codes.first() {
        Some(Some(code)) if codes.iter().all(|c| *c == Some(*code)) => *code,
        _ => ExitStatus::FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::exit_status;

    #[test]
    fn exec_exits_with_the_programs_status_when_every_kernel_agrees() {
        let exit = |code: &str| Some(format!("exit {code}"));
        assert_eq!(exit_status(&[exit("0"), exit("0")]), 0);
        assert_eq!(exit_status(&[exit("3"), exit("3")]), 3);
        assert_eq!(exit_status(&[exit("0"), exit("3")]), 1);
        assert_eq!(exit_status(&[exit("0"), Some("signal 11".into())]), 1);
        assert_eq!(exit_status(&[exit("0"), None]), 1);
        assert_eq!(exit_status(&[]), 1);
    }
}
