//! The `kmatrix` command: parses the arguments (`args.rs`), calls the one
//! library function each command is (`kmatrix::ops`, reports, diffs), and
//! prints what it returns. No matrix logic lives here.

mod args;
mod lock;

use anyhow::{Context, Result};
use args::{
    Accel, BenchArgs, BisectArgs, Cli, Command, DiffArgs, DiffFormat, ExecArgs, Format,
    KernelsCommand, LockCommand, PlanArgs, ReportArgs, ReportFormat, RunArgs,
};
use clap::Parser;
use kmatrix::backend::accel::AccelChoice;
use kmatrix::diagnostic::FileError;
use kmatrix::events::Events;
use kmatrix::ops::run::RunOptions;
use kmatrix::plan::Selection;
use kmatrix::project::Request;
use kmatrix::provision::EmulatorChoice;
use kmatrix::reporter::{Display, Reporter};
use kmatrix::results::{read_run, read_run_info};
use kmatrix::sources::cache::Cache;
use kmatrix::{diff, ops, report, Project};
use kmatrix_metadata::{Change, ExitStatus};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
        Command::List => list(&project),
        Command::Plan(mut args) => {
            args.select.kernels = resolve_latest(&project, &cache_root, &args.select.kernels)?;
            if args.check {
                plan_check(&project, &cache_root, &args)
            } else {
                plan_cells(&project, &args)
            }
        }
        Command::Merge { dirs, out } => merge(&project, &dirs, &out),
        Command::Repro { cell, out } => repro(&project, &cache_root, &cell, out),
        Command::Report(args) => report(&project, args),
        Command::Run(args) => run(&project, &cache_root, args),
        Command::Bisect(args) => bisect(&project, &cache_root, args),
        Command::Diff(args) => diff(args),
        Command::Kernels(command) => kernels(&project, &cache_root, command),
        Command::Lock(LockCommand::Accept { keys }) => lock::accept(&project, &cache_root, &keys),
        Command::Exec(args) => exec(&project, &cache_root, args),
        Command::Bench(args) => bench(&project, &cache_root, args),
    }
}

fn bench(project: &Project, cache_root: &Path, args: BenchArgs) -> Result<ExitCode> {
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

fn exec(project: &Project, cache_root: &Path, args: ExecArgs) -> Result<ExitCode> {
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

fn exit(status: u8) -> Result<ExitCode> {
    Ok(ExitCode::from(status))
}

/// Reads a run's cells, saying on stderr when a torn last line was dropped.
fn cells_of(path: &Path) -> Result<Vec<kmatrix_metadata::CellRecord>> {
    let cells = read_run(path)?;
    if let Some(warning) = &cells.warning {
        eprintln!("{warning}");
    }
    Ok(cells.records)
}

/// `results/runs/<prefix><UTC timestamp>`: where a run goes without --out.
fn default_run_dir(project: &Project, prefix: &str) -> PathBuf {
    stamped_dir(&project.root.join("results/runs"), prefix)
}

/// `<parent>/<prefix><UTC timestamp>`.
fn stamped_dir(parent: &Path, prefix: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    parent.join(format!("{prefix}{stamp}"))
}

/// Ctrl-C stops the VMs and keeps finished cells; a second one quits at once.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(ExitStatus::INTERRUPTED));
        }
        eprintln!("\ninterrupted: stopping the VMs; finished cells are kept (Ctrl-C again to quit at once)");
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(interrupted)
}

fn accel_choice(accel: Accel) -> AccelChoice {
    match accel {
        Accel::Auto => AccelChoice::Auto,
        Accel::Tcg => AccelChoice::Tcg,
        Accel::Kvm => AccelChoice::Kvm,
    }
}

fn bisect(project: &Project, cache_root: &Path, mut args: BisectArgs) -> Result<ExitCode> {
    args.kernels = resolve_latest(project, cache_root, &args.kernels)?;
    use kmatrix::ops::bisect::{Axis, BisectOptions};
    let axis = match (args.versions.as_slice(), args.kernels.as_slice()) {
        ([version], kernels) if kernels.len() >= 2 => Axis::Kernels {
            version: version.clone(),
            kernels: kernels.to_vec(),
        },
        (versions, [kernel]) if versions.len() >= 2 => Axis::Versions {
            kernel: kernel.clone(),
            versions: versions.to_vec(),
        },
        _ => {
            eprintln!("error: give one --version and several --kernel (search kernels), or one --kernel and several --version (search versions)\n  see `kmatrix bisect --help`");
            return exit(ExitStatus::BAD_INPUT);
        }
    };
    let out = args
        .out
        .unwrap_or_else(|| default_run_dir(project, "bisect-"));
    let interrupted = interrupt_flag()?;
    let options = BisectOptions {
        scenario: args.scenario,
        variant: args.variant,
        axis,
        run: RunOptions {
            request: Request::default(),
            out: out.clone(),
            resume: true,
            jobs: 1,
            accel: accel_choice(args.accel),
            locked: args.locked,
            retries: Some(0),
            emulator: EmulatorChoice::from_arg(args.emulator.as_deref()),
            keep_initramfs: false,
            only: None,
        },
    };
    let result = ops::bisect::bisect(project, cache_root, &options, interrupted)?;
    println!("{}", result.summary);
    println!(
        "{} boots; {}",
        result.boots,
        out.join(kmatrix_metadata::BISECT_FILE).display()
    );
    exit(if result.boundary.is_some() {
        ExitStatus::OK
    } else {
        ExitStatus::FAILED
    })
}

/// `latest:<series>` kernel selectors, looked up in the archives now.
fn resolve_latest(project: &Project, cache_root: &Path, kernels: &[String]) -> Result<Vec<String>> {
    if !kernels.iter().any(|k| k.starts_with(ops::discover::LATEST)) {
        return Ok(kernels.to_vec());
    }
    let (ids, said) = ops::discover::resolve_latest(project, cache_root, kernels)?;
    for line in said {
        eprintln!("kernel {line}");
    }
    Ok(ids)
}

fn run(project: &Project, cache_root: &Path, mut args: RunArgs) -> Result<ExitCode> {
    args.select.kernels = resolve_latest(project, cache_root, &args.select.kernels)?;
    let (out, resume) = match (args.out, args.resume) {
        (_, Some(dir)) => (dir, true),
        (Some(dir), None) => (dir, false),
        (None, None) => (default_run_dir(project, ""), false),
    };
    let interrupted = interrupt_flag()?;
    let options = RunOptions {
        request: Request {
            scenarios: args.select.scenarios,
            kernels: args.select.kernels,
            added_versions: args.select.added_versions,
            selection: Selection {
                variants: args.select.variants,
                versions: args.select.versions,
                cells: args.cells,
                shard: args.shard,
            },
        },
        out,
        resume,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        accel: accel_choice(args.accel),
        locked: args.locked,
        retries: args.retries,
        emulator: EmulatorChoice::from_arg(args.emulator.as_deref()),
        keep_initramfs: false,
        only: None,
    };
    let summary = ops::run::run(project, cache_root, &options, interrupted)?;
    let counts: Vec<String> = summary
        .counts
        .iter()
        .map(|(verdict, n)| format!("{n} {verdict}"))
        .collect();
    println!(
        "{} cells in {} ({}); accelerator {}; cache: {} reused, {} made",
        summary.planned,
        summary.out.display(),
        counts.join(", "),
        summary.accel.accel,
        summary.cache.reused,
        summary.cache.made
    );
    println!("matrix: {}", summary.out.join("matrix.md").display());
    if summary.interrupted {
        println!(
            "interrupted: continue with `kmatrix run --resume {}`",
            summary.out.display()
        );
        return exit(ExitStatus::INTERRUPTED);
    }
    exit(ExitStatus::OK)
}

fn report(project: &Project, args: ReportArgs) -> Result<ExitCode> {
    let records = cells_of(&args.dir)?;
    let run = read_run_info(&args.dir);
    let (catalog, scenarios) = project.load_selected(&[])?;
    let baseline_records = match &args.baseline {
        Some(path) => Some(cells_of(path)?),
        None => project.baseline_cells(),
    };
    let baseline = baseline_records.map(|old| diff::diff(&old, &records, false));
    let input = report::ReportInput {
        records: &records,
        scenarios: &scenarios,
        catalog: &catalog,
        run: run.as_ref(),
        run_dir: Some(&args.dir),
        baseline: baseline.as_ref(),
    };
    let Some(format) = args.format else {
        report::write_all(&args.dir, &input)?;
        println!(
            "wrote {} in {} from {} cells",
            report::FILES.join(", "),
            args.dir.display(),
            records.len()
        );
        return exit(ExitStatus::OK);
    };
    let model = report::ReportModel::build(&input);
    let text = match format {
        ReportFormat::Markdown => report::compat::render(&model),
        ReportFormat::MatrixMarkdown => report::markdown::render(&model),
        ReportFormat::Junit => report::junit::render(&model)?,
        ReportFormat::Html => report::html::render(&model)?,
        ReportFormat::Csv => report::csv::render(&model.matrix)?,
        ReportFormat::Json => serde_json::to_string_pretty(&model.matrix)? + "\n",
    };
    match args.output {
        Some(path) => kmatrix::files::write_atomically(&path, text.as_bytes())?,
        None => print!("{text}"),
    }
    exit(ExitStatus::OK)
}

fn diff(args: DiffArgs) -> Result<ExitCode> {
    let usage = |message: &str| -> Result<ExitCode> {
        eprintln!("error: {message}\n  see `kmatrix diff --help`");
        exit(ExitStatus::BAD_INPUT)
    };
    if let Some(versions) = &args.versions {
        let [run] = args.runs.as_slice() else {
            return usage("--versions compares inside one run: give exactly one RUN");
        };
        let records = cells_of(run)?;
        // A version the run does not hold is a mistake, not "no difference".
        let mut held: Vec<&str> = records.iter().map(|r| r.version.as_str()).collect();
        held.sort_by_key(|v| kmatrix::ids::version_order_key(v));
        held.dedup();
        if let Some(missing) = versions.iter().find(|v| !held.contains(&v.as_str())) {
            return usage(&format!(
                "{} holds no cells of version `{missing}`; its versions: {}",
                run.display(),
                held.join(", ")
            ));
        }
        let changes = diff::diff_versions(&records, &versions[0], &versions[1]);
        match args.format {
            DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
            _ => print!(
                "{}",
                diff::versions_to_text(&versions[0], &versions[1], &changes)
            ),
        }
        let regressed = changes.iter().any(|c| c.change == Change::Regression);
        return exit(if regressed {
            ExitStatus::FAILED
        } else {
            ExitStatus::OK
        });
    }
    let [old, new] = args.runs.as_slice() else {
        return usage("give OLD and NEW (or one RUN with --versions)");
    };
    let result = diff::diff(&cells_of(old)?, &cells_of(new)?, args.ignore_variant);
    match args.format {
        DiffFormat::Console => print!("{}", diff::to_console(&result)),
        DiffFormat::Markdown => print!("{}", diff::to_markdown(&result)),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    exit(if result.regressions() > 0 {
        ExitStatus::FAILED
    } else {
        ExitStatus::OK
    })
}

fn request_of(args: &PlanArgs) -> Request {
    Request {
        scenarios: args.select.scenarios.clone(),
        kernels: args.select.kernels.clone(),
        added_versions: args.select.added_versions.clone(),
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

fn merge(project: &Project, dirs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let merged = ops::merge::merge(project, dirs, out)?;
    for warning in &merged.warnings {
        eprintln!("{warning}");
    }
    println!(
        "merged {} cells from {} runs into {}",
        merged.cells,
        dirs.len(),
        out.display()
    );
    let Some(file) = &merged.conflicts_file else {
        return exit(ExitStatus::OK);
    };
    eprintln!(
        "error: {} cells ran in more than one input with different verdicts (kept the first; see {}):",
        merged.conflicts.len(),
        file.display()
    );
    for conflict in &merged.conflicts {
        eprintln!(
            "  {}: {} in {} vs {} in {}",
            conflict.cell,
            conflict.first.verdict,
            conflict.first.dir.display(),
            conflict.second.verdict,
            conflict.second.dir.display()
        );
    }
    exit(ExitStatus::FAILED)
}

fn repro(
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

fn kernels(project: &Project, cache_root: &Path, command: KernelsCommand) -> Result<ExitCode> {
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

/// Runs `work` on another thread with the terminal display drawing its events.
fn with_display<T: Send>(work: impl FnOnce(Events) -> T + Send) -> T {
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

fn list(project: &Project) -> Result<ExitCode> {
    let (catalog, scenarios) = project.load_selected(&[])?;
    println!("Scenarios:");
    for s in &scenarios {
        let versions: Vec<&str> = s.versions.iter().map(|v| v.id.as_str()).collect();
        let variants: Vec<&str> = s.variants.iter().map(|v| v.id.as_str()).collect();
        let kernels: Vec<&str> = s.kernels.iter().map(|k| k.as_str()).collect();
        println!("  {:<22} {}", s.id.as_str(), s.title);
        println!(
            "  {:<22} versions: {}; variants: {}; kernels: {}",
            "",
            versions.join(", "),
            variants.join(", "),
            kernels.join(", ")
        );
    }
    println!("\nKernels (images/kernels.toml):");
    for id in catalog.kernel_ids() {
        let k = &catalog.kernels[id];
        println!("  {:<22} {:<6} {}", k.id.as_str(), k.version, k.description);
    }
    if catalog.kubernetes.is_some() {
        println!(
            "  {:<22} {:<6} the local Kubernetes cluster inside that kernel's QEMU guest (e.g. ubuntu-22.04+k8s)",
            "<kernel>+k8s", ""
        );
    }
    println!("\nToolchains (images/toolchains.toml):");
    for t in catalog.toolchains.values() {
        println!(
            "  {:<22} Go {:<5} Debian {} ({})",
            t.id,
            t.version,
            t.suite,
            t.packages.join(", ")
        );
    }
    exit(ExitStatus::OK)
}
