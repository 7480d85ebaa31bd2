use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kmatrix::accel::AccelChoice;
use kmatrix::cache::Cache;
use kmatrix::diagnostic::FileError;
use kmatrix::runner::{self, RunOptions};
use kmatrix::{plan, Project};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Boots real kernels in QEMU, runs each component version's reproduction in
/// them, and writes a compatibility matrix with a classified verdict per cell
/// (pass, fail, crash, timeout, infra-error, unavailable).
///
/// A cell is scenario × component version × variant × kernel. Each kernel is
/// booted once for all its cells; finished cells are written at once to
/// OUT/cells.jsonl, so Ctrl-C loses nothing and `--resume OUT` continues.
#[derive(Parser)]
#[command(name = "kmatrix", version, after_help = EXAMPLES)]
struct Cli {
    /// Project root holding images/ and scenarios/ [default: nearest ancestor of the current folder with images/kernels.toml]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Artifact cache (kernels, toolchains, builds) [default: $KMATRIX_CACHE or ~/.cache/kmatrix]
    #[arg(long, global = true, value_name = "DIR")]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  kmatrix list                                   scenarios, kernels and toolchains
  kmatrix plan --scenario kube-ovn-tproxy        the cells a run would execute
  kmatrix run --scenario kube-ovn-tproxy --kernel debian-6.1 --out results/runs/try
  kmatrix run --resume results/runs/try          finish an interrupted run
  kmatrix report results/runs/try                rewrite matrix.{csv,json,md}

Exit status: 0 the run completed (whatever the verdicts), 1 an error,
2 bad input (a scenario, catalog or option; the message names file, line and fix),
130 interrupted (finished cells are kept).";

#[derive(Subcommand)]
enum Command {
    /// Run the matrix: provision, boot, classify, write results and reports.
    Run(RunArgs),
    /// List the cells a run would execute, without running anything.
    Plan(PlanArgs),
    /// List scenarios, catalog kernels and toolchains.
    List,
    /// Inspect and prepare catalog kernels (CI can cache the cache folder).
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// Compare two runs (or a baseline and a run), or two versions inside one run.
    ///
    /// Exit status: 0 no regression, 1 regressions (a cell went from pass to
    /// fail, crash or timeout), 2 usage or input error. Cells unavailable,
    /// infra-error or flaky on either side are listed, never counted as regressions.
    #[command(
        after_help = "Examples:\n  kmatrix diff results/baseline results/runs/nightly\n  kmatrix diff --format markdown OLD NEW >> $GITHUB_STEP_SUMMARY\n  kmatrix diff --ignore-variant RUN_WITH_WORKAROUND RUN_WITHOUT\n  kmatrix diff --versions v1.13 v1.14.0 results/runs/tproxy"
    )]
    Diff(DiffArgs),
    /// Join the results of several runs (CI shards) into one run directory.
    ///
    /// A cell present in more than one with different verdicts is reported
    /// (and listed in OUT/conflicts.json); the exit status is then 1.
    Merge {
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Rerun exactly one cell and print how to reproduce it without kmatrix.
    Repro {
        /// A cell id, as `kmatrix plan` or a report shows it.
        cell: String,
        /// Where to keep the run [default: results/runs/repro-<cell>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Reports for a run: the docs compatibility table, JUnit XML, HTML, the matrix.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// A run directory (holding cells.jsonl and run.json).
    dir: PathBuf,
    /// Print one report instead of rewriting all of them in DIR
    /// (matrix.{csv,json,md}, compatibility.md, junit.xml, report.html).
    #[arg(long, value_enum)]
    format: Option<ReportFormat>,
    /// With --format: write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE", requires = "format")]
    output: Option<PathBuf>,
    /// The run to compare with in the HTML report [default: results/baseline when it exists].
    #[arg(long, value_name = "RUN")]
    baseline: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// The docs compatibility table (version rows x kernel columns, workarounds, legend).
    Markdown,
    /// The full matrix (version x variant rows) with signatures.
    MatrixMarkdown,
    Junit,
    Html,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum KernelsCommand {
    /// Every catalog kernel: version, origin, whether it is cached, what it stands in for.
    List,
    /// Fetch (or build) kernels ahead of a run.
    Fetch {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Build source-built kernels ahead of a run (kept in the cache; the log too).
    Build {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

#[derive(clap::Args)]
struct SelectArgs {
    /// Scenario id (repeatable) [default: every scenario]
    #[arg(long = "scenario", value_name = "ID")]
    scenarios: Vec<String>,
    /// Kernel catalog id (repeatable) [default: the kernels each scenario lists]
    #[arg(long = "kernel", value_name = "ID")]
    kernels: Vec<String>,
    /// Variant id (repeatable), e.g. only `baseline` [default: every variant]
    #[arg(long = "variant", value_name = "ID")]
    variants: Vec<String>,
}

#[derive(clap::Args)]
struct DiffArgs {
    /// OLD NEW (run directories or cells.jsonl files), or one RUN with --versions.
    #[arg(required = true, num_args = 1..=2, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// Compare two component versions inside one run, kernel by kernel.
    #[arg(long, num_args = 2, value_names = ["OLD_VERSION", "NEW_VERSION"])]
    versions: Option<Vec<String>>,
    /// Match cells by scenario, version and kernel only (one variant per side).
    #[arg(long)]
    ignore_variant: bool,
    #[arg(long, value_enum, default_value_t = DiffFormat::Console)]
    format: DiffFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum DiffFormat {
    Console,
    Markdown,
    Json,
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// `github-matrix` prints a strategy.matrix for GitHub Actions with --shards entries.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only the cells of shard I of N.
    #[arg(long, value_name = "I/N")]
    shard: Option<kmatrix::shard::Shard>,
    /// How many shards `--format github-matrix` makes.
    #[arg(long, value_name = "N", default_value_t = 4)]
    shards: usize,
    /// Say, per scenario, which cells can run here and which are unavailable
    /// here and why (checks the cache, the Debian mirror and kernel URLs).
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Results directory [default: results/runs/<UTC timestamp>]
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in DIR: run only the cells it does not hold yet.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// VMs booted at once [default: number of cores]
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Accelerator; `auto` uses KVM only after a test guest really ran under it.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
    /// Fail instead of re-resolving a locked package version the archive no longer has.
    #[arg(long)]
    locked: bool,
    /// Rerun failing cells up to N times; a cell that passes in any is `flaky`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// Run one shard of the plan, I of N (cells of a kernel stay together).
    #[arg(long, value_name = "I/N")]
    shard: Option<kmatrix::shard::Shard>,
    /// Run only this cell (repeatable); ids as `kmatrix plan` lists them.
    #[arg(long = "cell", value_name = "CELL_ID")]
    cells: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    GithubMatrix,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(error) => {
            if let Some(file_error) = error.downcast_ref::<FileError>() {
                eprintln!("{file_error}");
                return ExitCode::from(2);
            }
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn execute(cli: Cli) -> Result<ExitCode> {
    let project = match &cli.root {
        Some(root) => Project::new(root),
        None => {
            let here = std::env::current_dir()?;
            Project::discover(&here).with_context(|| {
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
        Command::Plan(args) if args.check => plan_check(&project, &cache_root, &args),
        Command::Plan(args) => plan_cells(&project, &args),
        Command::Merge { dirs, out } => merge(&project, &dirs, &out),
        Command::Repro { cell, out } => repro(&project, &cache_root, &cell, out),
        Command::Report(args) => report(&project, args),
        Command::Run(args) => run(&project, &cache_root, args),
        Command::Diff(args) => diff(args),
        Command::Kernels(command) => kernels(&project, &cache_root, command),
    }
}

fn run(project: &Project, cache_root: &std::path::Path, args: RunArgs) -> Result<ExitCode> {
    let (out, resume) = match (args.out, args.resume) {
        (_, Some(dir)) => (dir, true),
        (Some(dir), None) => (dir, false),
        (None, None) => {
            let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .replace(':', "");
            (project.root.join("results/runs").join(stamp), false)
        }
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C means "now".
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: stopping the VMs; finished cells are kept (Ctrl-C again to quit at once)");
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    if let Err(why) = kmatrix::backend::qemu::qemu_available() {
        anyhow::bail!("{why}");
    }
    let cache = Cache::open(cache_root)?;
    let options = RunOptions {
        scenarios: args.select.scenarios,
        kernels: args.select.kernels,
        out,
        resume,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        accel: args.accel,
        locked: args.locked,
        retries: args.retries,
        selection: plan::Selection {
            variants: args.select.variants,
            cells: args.cells,
            shard: args.shard,
        },
    };
    let summary = runner::run(project, &cache, &options, interrupted)?;
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
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

fn report(project: &Project, args: ReportArgs) -> Result<ExitCode> {
    use kmatrix::report;
    let records = kmatrix::results::read_run(&args.dir)?;
    let run = kmatrix::results::read_run_info(&args.dir);
    let (catalog, scenarios) = project.load_selected(&[])?;
    let baseline_records = match &args.baseline {
        Some(path) => Some(kmatrix::results::read_run(path)?),
        None => project.baseline_cells(),
    };
    let baseline = baseline_records.map(|old| kmatrix::diff::diff(&old, &records, false));
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
            "wrote matrix.{{csv,json,md}}, compatibility.md, junit.xml and report.html in {} from {} cells",
            args.dir.display(),
            records.len()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let matrix = || report::build(&records, &scenarios, &catalog);
    let text = match format {
        ReportFormat::Markdown => report::compat::render(&input),
        ReportFormat::MatrixMarkdown => {
            report::to_markdown(&matrix())
                + &report::workarounds_markdown(&report::workaround_checks(&records))
        }
        ReportFormat::Junit => report::junit::render(&records),
        ReportFormat::Html => report::html::render(&input)?,
        ReportFormat::Csv => report::to_csv(&matrix())?,
        ReportFormat::Json => serde_json::to_string_pretty(&matrix())? + "\n",
    };
    match args.output {
        Some(path) => kmatrix::results::write_atomically(&path, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(args: DiffArgs) -> Result<ExitCode> {
    use kmatrix::diff;
    let usage = |message: &str| -> Result<ExitCode> {
        eprintln!("error: {message}\n  see `kmatrix diff --help`");
        Ok(ExitCode::from(2))
    };
    if let Some(versions) = &args.versions {
        let [run] = args.runs.as_slice() else {
            return usage("--versions compares inside one run: give exactly one RUN");
        };
        let records = kmatrix::results::read_run(run)?;
        let changes = diff::diff_versions(&records, &versions[0], &versions[1]);
        match args.format {
            DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
            _ => print!(
                "{}",
                diff::versions_to_text(&versions[0], &versions[1], &changes)
            ),
        }
        let regressed = changes.iter().any(|c| c.change == diff::Change::Regression);
        return Ok(ExitCode::from(u8::from(regressed)));
    }
    let [old, new] = args.runs.as_slice() else {
        return usage("give OLD and NEW (or one RUN with --versions)");
    };
    let result = diff::diff(
        &kmatrix::results::read_run(old)?,
        &kmatrix::results::read_run(new)?,
        args.ignore_variant,
    );
    match args.format {
        DiffFormat::Console => print!("{}", diff::to_console(&result)),
        DiffFormat::Markdown => print!("{}", diff::to_markdown(&result)),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    Ok(ExitCode::from(u8::from(result.regressions() > 0)))
}

fn plan_check(
    project: &Project,
    cache_root: &std::path::Path,
    args: &PlanArgs,
) -> Result<ExitCode> {
    let (catalog, scenarios, cells) = planned(project, args)?;
    let cache = Cache::open(cache_root)?;
    let provisioner = kmatrix::provision::Provisioner::new(&cache, &catalog, false)?;
    let kernels: std::collections::BTreeSet<&String> = cells.iter().map(|c| &c.kernel).collect();
    let availability: std::collections::BTreeMap<&String, Result<String, String>> = kernels
        .into_iter()
        .map(|k| (k, provisioner.kernel_availability(k)))
        .collect();
    for scenario in &scenarios {
        let mine: Vec<&plan::Cell> = cells.iter().filter(|c| c.scenario == scenario.id).collect();
        let runnable = mine
            .iter()
            .filter(|c| availability[&c.kernel].is_ok())
            .count();
        println!(
            "{}: {} cells, {runnable} can run here",
            scenario.id,
            mine.len()
        );
        for (kernel, state) in &availability {
            let count = mine.iter().filter(|c| &&c.kernel == kernel).count();
            if count == 0 {
                continue;
            }
            match state {
                Ok(how) => println!("  run here    {count:>3} cells on {kernel:<18} ({how})"),
                Err(why) => println!("  unavailable {count:>3} cells on {kernel:<18} {why}"),
            }
        }
        if let Some(image) = scenario.versions.iter().find_map(|v| v.image.as_ref()) {
            println!(
                "  online only: the real component images ({image}, ...) for the kind backend; no container registry is used here"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The cells `plan` shows, selected as `run` would select them.
fn planned(
    project: &Project,
    args: &PlanArgs,
) -> Result<(
    kmatrix::catalog::Catalog,
    Vec<kmatrix::scenario::Scenario>,
    Vec<plan::Cell>,
)> {
    let (catalog, scenarios) = project.load_selected(&args.select.scenarios)?;
    let lock = kmatrix::lock::Lock::load(&project.images_dir())?;
    let cells = plan::Selection {
        variants: args.select.variants.clone(),
        cells: Vec::new(),
        shard: args.shard,
    }
    .apply(plan::plan(
        &scenarios,
        &args.select.kernels,
        &catalog,
        &lock,
    )?);
    Ok((catalog, scenarios, cells))
}

fn plan_cells(project: &Project, args: &PlanArgs) -> Result<ExitCode> {
    let (_, _, cells) = planned(project, args)?;
    match args.format {
        Format::GithubMatrix => {
            let shards = args.shards.max(1);
            let kernels = kmatrix::shard::assign_kernels(&cells, shards);
            let include: Vec<serde_json::Value> = kernels
                .iter()
                .enumerate()
                .filter(|(_, k)| !k.is_empty())
                .map(|(i, k)| {
                    serde_json::json!({
                        "shard": format!("{}/{shards}", i + 1),
                        "kernels": k.join(" "),
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
                    c.id, c.scenario, c.version, c.variant, c.kernel
                );
            }
            println!("{} cells", cells.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn merge(project: &Project, dirs: &[PathBuf], out: &std::path::Path) -> Result<ExitCode> {
    use kmatrix::results::{read_run, CellRecord, ResultsStore};
    let mut merged: std::collections::BTreeMap<String, (CellRecord, PathBuf)> = Default::default();
    let mut conflicts = Vec::new();
    for dir in dirs {
        for record in read_run(dir)? {
            match merged.get(&record.cell_id) {
                Some((kept, from))
                    if kept.verdict != record.verdict || kept.signature != record.signature =>
                {
                    conflicts.push(serde_json::json!({
                        "cell_id": record.cell_id,
                        "cell": format!("{} {} {} on {}", record.scenario, record.version, record.variant, record.kernel),
                        "first": { "dir": from, "verdict": kept.verdict, "signature": kept.signature },
                        "second": { "dir": dir, "verdict": record.verdict, "signature": record.signature },
                    }));
                }
                Some(_) => {}
                None => {
                    merged.insert(record.cell_id.clone(), (record, dir.clone()));
                }
            }
        }
        copy_boots(dir, out)?;
    }
    let mut store = ResultsStore::open(out)?;
    for (record, _) in merged.into_values() {
        store.add(record)?;
    }
    if let Some(info) = dirs
        .iter()
        .find_map(|d| std::fs::read(d.join(kmatrix::results::RUN_FILE)).ok())
    {
        kmatrix::results::write_atomically(&out.join(kmatrix::results::RUN_FILE), &info)?;
    }
    let records: Vec<CellRecord> = store.records().cloned().collect();
    let (catalog, scenarios) = project.load_selected(&[])?;
    let run = kmatrix::results::read_run_info(out);
    kmatrix::report::write_all(
        out,
        &kmatrix::report::ReportInput {
            records: &records,
            scenarios: &scenarios,
            catalog: &catalog,
            run: run.as_ref(),
            run_dir: Some(out),
            baseline: None,
        },
    )?;
    println!(
        "merged {} cells from {} runs into {}",
        records.len(),
        dirs.len(),
        out.display()
    );
    if conflicts.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    kmatrix::results::write_atomically(
        &out.join("conflicts.json"),
        &serde_json::to_vec_pretty(&conflicts)?,
    )?;
    eprintln!(
        "error: {} cells ran in more than one input with different verdicts (kept the first; see {}):",
        conflicts.len(),
        out.join("conflicts.json").display()
    );
    for conflict in &conflicts {
        eprintln!(
            "  {}: {} in {} vs {} in {}",
            conflict["cell"].as_str().unwrap_or_default(),
            conflict["first"]["verdict"],
            conflict["first"]["dir"],
            conflict["second"]["verdict"],
            conflict["second"]["dir"]
        );
    }
    Ok(ExitCode::from(1))
}

/// Copies a run's boot logs (console, QEMU command) so merged reports keep them.
fn copy_boots(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let is_boots = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("boots"));
        if path.is_dir() && is_boots {
            // The initramfs images are large and can be rebuilt; the logs are kept.
            kmatrix::files::copy_tree(&path, &to.join(path.file_name().expect("named")), &|p| {
                p.extension().is_none_or(|e| e != "cpio")
            })?;
        }
    }
    Ok(())
}

fn repro(
    project: &Project,
    cache_root: &std::path::Path,
    cell_id: &str,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let (catalog, scenarios) = project.load_selected(&[])?;
    let lock = kmatrix::lock::Lock::load(&project.images_dir())?;
    let all_kernels: Vec<String> = catalog.kernels.keys().cloned().collect();
    let cells = plan::plan(&scenarios, &all_kernels, &catalog, &lock)?;
    let Some(cell) = cells.into_iter().find(|c| c.id == cell_id) else {
        return Err(FileError::whole_file(
            &project.scenarios_dir,
            format!("no cell `{cell_id}` in the current plan"),
            "take the id from `kmatrix plan` (a report from older inputs may name ids that no longer exist)",
        )
        .into());
    };
    let out = out.unwrap_or_else(|| {
        project
            .root
            .join("results/runs")
            .join(format!("repro-{cell_id}"))
    });
    if out.join(kmatrix::results::CELLS_FILE).exists() {
        std::fs::remove_file(out.join(kmatrix::results::CELLS_FILE))?;
    }
    let cache = Cache::open(cache_root)?;
    let options = RunOptions {
        scenarios: vec![cell.scenario.clone()],
        kernels: vec![cell.kernel.clone()],
        out: out.clone(),
        resume: false,
        jobs: 1,
        accel: AccelChoice::Auto,
        locked: false,
        retries: 0,
        selection: plan::Selection {
            cells: vec![cell.id.clone()],
            ..Default::default()
        },
    };
    let summary = runner::run(project, &cache, &options, Arc::new(AtomicBool::new(false)))?;
    let record = kmatrix::results::read_run(&out)?
        .into_iter()
        .find(|r| r.cell_id == cell.id);
    println!(
        "\n{} {} {} on {}: {}",
        cell.scenario,
        cell.version,
        cell.variant,
        cell.kernel,
        record
            .as_ref()
            .map(|r| format!("{} {}", r.verdict, r.signature))
            .unwrap_or_else(|| "no result".into())
    );
    let console = record.as_ref().and_then(|r| r.console_log.clone());
    if let Some(console) = console {
        let boot = out.join(console);
        let boot = boot.parent().expect("console in a boot folder");
        println!("\nTo reproduce without kmatrix, boot the same kernel and initramfs:\n");
        println!(
            "  {}",
            std::fs::read_to_string(boot.join("qemu-command.txt"))?
        );
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
    println!("\nresults: {}", summary.out.display());
    Ok(ExitCode::SUCCESS)
}

fn kernels(
    project: &Project,
    cache_root: &std::path::Path,
    command: KernelsCommand,
) -> Result<ExitCode> {
    let catalog = project.catalog()?;
    let cache = Cache::open(cache_root)?;
    let provisioner = kmatrix::provision::Provisioner::new(&cache, &catalog, false)?;
    let check_ids = |ids: &[String]| -> Result<()> {
        for id in ids {
            if !catalog.kernels.contains_key(id) {
                return Err(FileError::whole_file(
                    &catalog.dir.join(kmatrix::catalog::KERNELS_FILE),
                    format!("unknown kernel id `{id}`"),
                    format!("use one of: {}", catalog.kernel_ids().join(", ")),
                )
                .into());
            }
        }
        Ok(())
    };
    match command {
        KernelsCommand::List => {
            println!("{:<19} {:<7} {:<10} origin", "kernel", "version", "cache");
            for kernel in catalog.kernels.values() {
                let cached = match provisioner.kernel_is_cached(&kernel.id) {
                    Ok(true) => "cached",
                    Ok(false) => "-",
                    Err(_) => "?",
                };
                println!(
                    "{:<19} {:<7} {:<10} {}",
                    kernel.id,
                    kernel.version,
                    cached,
                    kernel.source.describe()
                );
                if let Some(stand_in) = &kernel.stands_in_for {
                    println!("{:<38} stands in for {stand_in}", "");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KernelsCommand::Fetch { ids } | KernelsCommand::Build { ids } => {
            check_ids(&ids)?;
            let mut failed = false;
            for id in &ids {
                let started = std::time::Instant::now();
                match provisioner.kernel(id) {
                    Ok(kernel) => println!(
                        "{id}: ready in {:.1} s: {} ({})",
                        started.elapsed().as_secs_f64(),
                        kernel.image.display(),
                        kernel.origin
                    ),
                    Err(e) => {
                        failed = true;
                        eprintln!("{id}: failed: {e:#}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn list(project: &Project) -> Result<ExitCode> {
    let (catalog, scenarios) = project.load_selected(&[])?;
    println!("Scenarios:");
    for s in &scenarios {
        let versions: Vec<&str> = s.versions.iter().map(|v| v.id.as_str()).collect();
        let variants: Vec<&str> = s.variants.iter().map(|v| v.id.as_str()).collect();
        println!("  {:<22} {}", s.id, s.title);
        println!(
            "  {:<22} versions: {}; variants: {}; kernels: {}",
            "",
            versions.join(", "),
            variants.join(", "),
            s.kernels.join(", ")
        );
    }
    println!("\nKernels (images/kernels.toml):");
    for k in catalog.kernels.values() {
        println!("  {:<22} {:<6} {}", k.id, k.version, k.description);
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
    Ok(ExitCode::SUCCESS)
}
