//! `kmatrix plan`: the planned cells (table, JSON, GitHub matrix) or, with `--check`, what can run here.

use crate::args::{Format, PlanArgs};
use crate::shared::{exit, resolve_latest};
use anyhow::Result;
use kmatrix::plan::Selection;
use kmatrix::project::Request;
use kmatrix::{ops, Project};
use kmatrix_metadata::ExitStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn plan(project: &Project, cache_root: &Path, mut args: PlanArgs) -> Result<ExitCode> {
    args.select.kernels = resolve_latest(project, cache_root, &args.select.kernels)?;
    if args.check {
        plan_check(project, cache_root, &args)
    } else {
        plan_cells(project, &args)
    }
}

fn request_of(args: &PlanArgs) -> Request {
    Request {
        scenarios: args.select.scenarios.clone(),
        kernels: args.select.kernels.clone(),
        added_versions: args.select.added_versions.clone(),
        kubernetes: args.select.kubernetes.clone(),
        selection: Selection {
            variants: args.select.variants.clone(),
            versions: args.select.versions.clone(),
            cells: Vec::new(),
            shard: args.shard,
        },
    }
}

fn plan_check(project: &Project, cache_root: &Path, args: &PlanArgs) -> Result<ExitCode> {
    for scenario in ops::check::check(project, cache_root, &request_of(args))? {
        println!(
            "{}: {} cells, {} can run here",
            scenario.scenario, scenario.cells, scenario.runnable
        );
        for (kernel, count, state) in &scenario.kernels {
            let kernel = kernel.as_str();
            match state {
                Ok(how) => println!("  run here    {count:>3} cells on {kernel:<18} ({how})"),
                Err(why) => println!("  unavailable {count:>3} cells on {kernel:<18} {why}"),
            }
        }
        for (version, what, state) in &scenario.real {
            match state {
                Ok(how) => println!("  real {version:<10} {what}: {how}"),
                Err(why) => println!("  real {version:<10} {what}: cannot run here: {why}"),
            }
        }
    }
    exit(ExitStatus::OK)
}

fn plan_cells(project: &Project, args: &PlanArgs) -> Result<ExitCode> {
    let cells = project.plan(&request_of(args))?.cells;
    match args.format {
        Format::GithubMatrix => {
            let shards = args.shards.max(1);
            let kernels = kmatrix::plan::shard::assign_kernels(&cells, shards);
            let include: Vec<serde_json::Value> = kernels
                .iter()
                .enumerate()
                .filter(|(_, k)| !k.is_empty())
                .map(|(i, k)| {
                    let names: Vec<&str> = k.iter().map(|k| k.as_str()).collect();
                    serde_json::json!({
                        "shard": format!("{}/{shards}", i + 1),
                        "kernels": names.join(" "),
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "include": include }));
        }
        Format::Json => {
            let rows: Vec<serde_json::Value> = cells
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "cell_id": c.id, "scenario": c.scenario, "version": c.version,
                        "variant": c.variant, "kernel": c.kernel,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Table => {
            println!(
                "{:<16}  {:<22} {:<10} {:<26} kernel",
                "cell", "scenario", "version", "variant"
            );
            for c in &cells {
                println!(
                    "{:<16}  {:<22} {:<10} {:<26} {}",
                    c.id.as_str(),
                    c.scenario.as_str(),
                    c.version,
                    c.variant,
                    c.kernel
                );
            }
            println!("{} cells", cells.len());
        }
    }
    exit(ExitStatus::OK)
}
