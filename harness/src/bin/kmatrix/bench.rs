//! `kmatrix bench`: runs the benchmark and prints its table.

use crate::args::BenchArgs;
use crate::shared::{accel_choice, exit, stamped_dir, with_display};
use anyhow::Result;
use kmatrix::{ops, report, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn bench(project: &Project, cache_root: &Path, args: BenchArgs) -> Result<ExitCode> {
    for peer in &args.peers {
        if !ops::bench::PEERS.contains(&peer.as_str()) {
            eprintln!(
                "error: --peer {peer}: unknown (known: {})\n  see `kmatrix bench --help`",
                ops::bench::PEERS.join(", ")
            );
            return exit(ExitStatus::BAD_INPUT);
        }
    }
    let out = args
        .out
        .unwrap_or_else(|| stamped_dir(&project.root.join("results"), "bench-"));
    let options = ops::bench::BenchOptions {
        kernel: args.kernel,
        scenario: args.scenario,
        cells: args.cells,
        rounds: args.rounds,
        out: out.clone(),
        accel: accel_choice(args.accel),
        emulator: args.emulator,
        peers: args.peers,
        exe: std::env::current_exe()?,
    };
    let result = with_display(|events| ops::bench::bench(project, cache_root, &options, events))?;
    print!("{}", report::bench::render(&result));
    eprintln!(
        "bench: {} and {}",
        out.join(kmatrix_metadata::BENCH_FILE).display(),
        out.join(ops::bench::BENCH_MARKDOWN).display()
    );
    Ok(ExitCode::SUCCESS)
}
