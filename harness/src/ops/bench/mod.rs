//! `kmatrix bench`: what a cell costs against a bare QEMU boot of the same
//! kernel, and against the tools a user would otherwise pick, measured in
//! one invocation on one kernel: every figure is taken once per round, the
//! order rotating each round, and compared by medians.
//!
//! kmatrix's own figures time the `kmatrix` binary as a user runs it
//! (process start, planning, provisioning from the warm cache, the boot),
//! never a function inside this process.

mod floor;
mod peers;

use crate::backend::accel::AccelChoice;
use crate::backend::qemu::QemuBackend;
use crate::cancel::Cancel;
use crate::events::Events;
use crate::ids::KernelId;
use crate::plan::Cell;
use crate::project::{Planned, Request};
use crate::provision::{BootImage, EmulatorChoice, KernelArtifact, Provisioner};
use crate::sources::cache::Cache;
use crate::Project;
use anyhow::{bail, Context, Result};
use kmatrix_metadata::{
    BenchFigure, BenchMachine, BenchResult, CellRecord, RunInfo, Verdict, BENCH_FILE, BENCH_FLOOR,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub use peers::PEERS;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub kernel: String,
    pub scenario: String,
    /// How many cells the N-cell figures run (the scenario's first N on the kernel).
    pub cells: usize,
    pub rounds: usize,
    pub out: PathBuf,
    pub accel: AccelChoice,
    pub emulator: Option<String>,
    /// Peers to time beside kmatrix (`virtme-ng`, `vmtest`); empty: none.
    pub peers: Vec<String>,
    /// The `kmatrix` binary to time (this one, normally).
    pub exe: PathBuf,
}

/// The Markdown table beside `bench.json`.
pub const BENCH_MARKDOWN: &str = "bench.md";

/// Figure ids.
const ONE_CELL: &str = "kmatrix-one-cell";
const N_CELLS: &str = "kmatrix-n-cells";
const BOOT_PER_CELL: &str = "kmatrix-boot-per-cell";
const BARE_BZIMAGE: &str = "bare-qemu-bzimage";

/// Runs a figure's work once, given a scratch folder of its own.
type RunOnce = Box<dyn Fn(&Path) -> Result<()>>;

/// One thing the rounds time.
struct Timed {
    figure: BenchFigure,
    run: RunOnce,
}

pub fn bench(
    project: &Project,
    cache_root: &Path,
    options: &BenchOptions,
    events: Events,
) -> Result<BenchResult> {
    if options.rounds == 0 || options.cells == 0 {
        bail!("--rounds and --cells must be at least 1");
    }
    let started = std::time::SystemTime::now();
    fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot make {}", options.out.display()))?;
    // Absolute: the peers run in folders of their own, and read the job
    // script by its path.
    let options = &BenchOptions {
        out: fs::canonicalize(&options.out)?,
        ..options.clone()
    };
    let (planned, cells) = bench_cells(project, options)?;
    let ids: Vec<String> = cells.iter().map(|c| c.id.to_string()).collect();
    let runs_dir = options.out.join("runs");

    // Warm-up: builds and caches everything the cells need, and says which
    // accelerator and emulator the timed runs will get.
    let kmatrix = KmatrixRuns {
        exe: options.exe.clone(),
        root: project.root.clone(),
        cache: cache_root.to_path_buf(),
        scenario: options.scenario.clone(),
        kernel: options.kernel.clone(),
        accel: options.accel,
        emulator: options.emulator.clone(),
    };
    let warm = events.step("warm-up run of the cells (builds what they need)", || {
        kmatrix.run(&ids, &runs_dir.join("warm-up"))
    })?;

    let cache = Cache::open(cache_root)?;
    let provisioner = Provisioner::new(&cache, &planned.catalog, false, Events::none())?;
    let emulator = provisioner.emulator(&EmulatorChoice::from_arg(options.emulator.as_deref()))?;
    let kernel = provisioner.kernel(&KernelId::new(&options.kernel))?;
    let boot = provisioner.boot_image(&kernel.image);
    let accel = crate::backend::accel::AccelDecision {
        accel: crate::backend::qemu::Accel::from_name(&warm.info.accel),
        reason: warm.info.accel_reason.clone(),
    };
    let qemu = QemuBackend::new(emulator.clone(), accel.accel(), Cancel::new());

    let floor_dir = options.out.join("floor");
    let mut timed = floor_figures(&qemu, &kernel, &boot, &floor_dir)?;
    timed.extend(kmatrix.figures(&ids));

    if !options.peers.is_empty() {
        let peer_work = peers::Work::of(
            &provisioner,
            &planned,
            &cells[0],
            &kernel,
            &qemu,
            &floor_dir,
        )?;
        for peer in &options.peers {
            timed.push(peers::prepare(peer, &peer_work, cache_root));
        }
    }

    time_rounds(&mut timed, options.rounds, &runs_dir, &events);

    let mut figures: Vec<BenchFigure> = timed.into_iter().map(|t| t.figure).collect();
    fill_ratios(&mut figures);
    let result = BenchResult {
        harness_version: env!("CARGO_PKG_VERSION").into(),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        machine: machine(),
        emulator: emulator.version.clone(),
        accel: accel.name().into(),
        accel_reason: accel.reason.clone(),
        kernel: options.kernel.clone(),
        kernel_release: warm.records.iter().find_map(|r| r.kernel_release.clone()),
        boot_image: boot.how.clone(),
        scenario: options.scenario.clone(),
        cells: ids,
        rounds: options.rounds as u32,
        figures,
    };
    write_result(&options.out, &result)?;
    Ok(result)
}

/// The scenario's first `--cells` cells on the bench's kernel.
fn bench_cells(project: &Project, options: &BenchOptions) -> Result<(Planned, Vec<Cell>)> {
    let planned = project.plan(&Request {
        scenarios: vec![options.scenario.clone()],
        kernels: vec![options.kernel.clone()],
        ..Default::default()
    })?;
    let cells: Vec<Cell> = planned.cells.iter().take(options.cells).cloned().collect();
    if cells.is_empty() {
        bail!(
            "scenario {} has no cells on {} (`kmatrix plan --scenario {} --kernel {}`)",
            options.scenario,
            options.kernel,
            options.scenario,
            options.kernel
        );
    }
    Ok((planned, cells))
}

/// The floor: bare QEMU with kmatrix's flags and command line and an init
/// that only powers off, booting the kernel as kmatrix boots it, and its
/// compressed image.
fn floor_figures(
    qemu: &QemuBackend,
    kernel: &KernelArtifact,
    boot: &BootImage,
    floor_dir: &Path,
) -> Result<Vec<Timed>> {
    let initramfs = floor::trivial_initramfs(floor_dir)?;
    let mut timed = Vec::new();
    for (id, image, what) in [
        (
            BENCH_FLOOR,
            &boot.path,
            format!(
                "bare QEMU, kmatrix's flags, the kernel as kmatrix boots it ({}), an init that powers off",
                boot.how
            ),
        ),
        (
            BARE_BZIMAGE,
            &kernel.image,
            "bare QEMU, kmatrix's flags, the compressed image (bzImage), an init that powers off"
                .to_string(),
        ),
    ] {
        let console = floor_dir.join(format!("{id}.console.log"));
        // kmatrix's own QEMU flags and kernel command line.
        let argv = qemu.command(image, &initramfs, &console, &[]);
        timed.push(Timed {
            figure: figure(id, &what, crate::backend::qemu::shell_words(&argv)),
            run: Box::new(move |_| floor::boot(&argv, &console)),
        });
    }
    Ok(timed)
}

/// Times every figure once per round, the order rotating each round: no
/// figure always runs first (cold page cache) or right after the heaviest.
fn time_rounds(timed: &mut [Timed], rounds: usize, runs_dir: &Path, events: &Events) {
    for round in 0..rounds {
        let count = timed.len();
        for k in 0..count {
            let index = (round + k) % count;
            let item = &mut timed[index];
            if item.figure.unavailable.is_some() {
                continue;
            }
            let scratch = runs_dir.join(format!("{}-{}", item.figure.id, round + 1));
            let label = format!("round {}/{}: {}", round + 1, rounds, item.figure.id);
            let began = Instant::now();
            let outcome = events.step(&label, || (item.run)(&scratch));
            let took = began.elapsed().as_millis() as u64;
            match outcome {
                Ok(()) => item.figure.runs_ms.push(took),
                Err(e) => item.figure.unavailable = Some(format!("round {}: {e:#}", round + 1)),
            }
            let _ = fs::remove_dir_all(&scratch);
        }
    }
}

/// `bench.json` and `bench.md` in `out`.
fn write_result(out: &Path, result: &BenchResult) -> Result<()> {
    crate::files::write_atomically(&out.join(BENCH_FILE), &serde_json::to_vec_pretty(result)?)?;
    crate::files::write_atomically(
        &out.join(BENCH_MARKDOWN),
        crate::report::bench::render(result).as_bytes(),
    )?;
    Ok(())
}

fn figure(id: &str, what: &str, command: String) -> BenchFigure {
    BenchFigure {
        id: id.into(),
        what: what.into(),
        command,
        ..BenchFigure::default()
    }
}

/// The median of each figure, and its ratios to the floor and to kmatrix's
/// one cell (the work the peers do too).
fn fill_ratios(figures: &mut [BenchFigure]) {
    for figure in figures.iter_mut() {
        figure.median_ms = median(&figure.runs_ms);
    }
    let median_of = |id: &str, figures: &[BenchFigure]| {
        figures
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| f.median_ms)
    };
    let floor = median_of(BENCH_FLOOR, figures);
    let one = median_of(ONE_CELL, figures);
    let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > 0 => Some((a as f64 / b as f64 * 100.0).round() / 100.0),
        _ => None,
    };
    for figure in figures.iter_mut() {
        figure.vs_floor = ratio(figure.median_ms, floor);
        figure.vs_kmatrix_one_cell = ratio(figure.median_ms, one);
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

fn machine() -> BenchMachine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    BenchMachine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_mb: crate::files::proc_kib(&meminfo, "MemTotal").map_or(0, |kib| kib / 1024),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        host_kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Runs of the `kmatrix` binary, as a user types them.
#[derive(Clone)]
struct KmatrixRuns {
    exe: PathBuf,
    root: PathBuf,
    cache: PathBuf,
    scenario: String,
    kernel: String,
    accel: AccelChoice,
    emulator: Option<String>,
}

/// What a checked run left.
struct Ran {
    info: RunInfo,
    records: Vec<CellRecord>,
}

impl KmatrixRuns {
    /// kmatrix's own figures: one cell, all `ids` in one boot, and the
    /// same cells one boot each.
    fn figures(&self, ids: &[String]) -> Vec<Timed> {
        vec![
            self.figure(
                ONE_CELL,
                format!("`kmatrix run` of one {} cell", self.scenario),
                ids[..1].to_vec(),
                1,
            ),
            self.figure(
                N_CELLS,
                format!("`kmatrix run` of {} cells in one boot", ids.len()),
                ids.to_vec(),
                1,
            ),
            self.boot_per_cell(ids),
        ]
    }

    fn argv(&self, cells: &[String], out: &Path) -> Vec<String> {
        let mut argv = vec![
            self.exe.display().to_string(),
            "--root".into(),
            self.root.display().to_string(),
            "--cache".into(),
            self.cache.display().to_string(),
            "run".into(),
            "--scenario".into(),
            self.scenario.clone(),
            "--kernel".into(),
            self.kernel.clone(),
            "--retries".into(),
            "0".into(),
            "--accel".into(),
            match self.accel {
                AccelChoice::Auto => "auto",
                AccelChoice::Tcg => "tcg",
                AccelChoice::Kvm => "kvm",
            }
            .into(),
            "--out".into(),
            out.display().to_string(),
        ];
        if let Some(emulator) = &self.emulator {
            argv.extend(["--emulator".into(), emulator.clone()]);
        }
        for cell in cells {
            argv.extend(["--cell".into(), cell.clone()]);
        }
        argv
    }

    /// Runs the cells into `out` and checks that each really ran in a
    /// guest: a figure of cells that never booted would measure nothing.
    fn run(&self, cells: &[String], out: &Path) -> Result<Ran> {
        let argv = self.argv(cells, out);
        fs::create_dir_all(out)?;
        let log = fs::File::create(out.with_extension("log"))?;
        let status = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("cannot start {}", argv[0]))?;
        let records = crate::results::read_run(out)
            .with_context(|| format!("{} left no results", out.display()))?
            .records;
        let info = crate::results::read_run_info(out)
            .with_context(|| format!("{} left no run.json", out.display()))?;
        let problem = records
            .iter()
            .find(|r| matches!(r.verdict, Verdict::InfraError | Verdict::Unavailable));
        if records.len() != cells.len() || problem.is_some() || info.boots.is_empty() {
            bail!(
                "`{}` ({status}) did not run its {} cell(s) in a guest{}; its log: {}",
                crate::backend::qemu::shell_words(&argv),
                cells.len(),
                problem
                    .map(|r| format!(": {} is {} ({})", r.cell_id, r.verdict, r.signature))
                    .unwrap_or_default(),
                out.with_extension("log").display()
            );
        }
        Ok(Ran { info, records })
    }

    fn figure(&self, id: &str, what: String, cells: Vec<String>, boots: usize) -> Timed {
        let runs = self.clone();
        let command = crate::backend::qemu::shell_words(&self.argv(&cells, Path::new("OUT")));
        Timed {
            figure: figure(id, &what, command),
            run: Box::new(move |out| {
                let ran = runs.run(&cells, out)?;
                let booted: u32 = ran.info.boots.values().map(|b| b.boots).sum();
                if booted as usize != boots {
                    bail!("expected {boots} boot(s), the run booted {booted}");
                }
                Ok(())
            }),
        }
    }

    /// The same N cells, each in a run (and boot) of its own, one after another.
    fn boot_per_cell(&self, cells: &[String]) -> Timed {
        let runs = self.clone();
        let cells = cells.to_vec();
        let command = format!(
            "for each of the {} cells: {}",
            cells.len(),
            crate::backend::qemu::shell_words(&self.argv(&["CELL".into()], Path::new("OUT")))
        );
        Timed {
            figure: figure(
                BOOT_PER_CELL,
                &format!(
                    "the same {} cells, one `kmatrix run` (one boot) each",
                    cells.len()
                ),
                command,
            ),
            run: Box::new(move |out| {
                for (i, cell) in cells.iter().enumerate() {
                    runs.run(std::slice::from_ref(cell), &out.join(i.to_string()))?;
                }
                Ok(())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        let mut figures = vec![
            BenchFigure {
                id: BENCH_FLOOR.into(),
                runs_ms: vec![1000, 1200, 1100],
                ..Default::default()
            },
            BenchFigure {
                id: ONE_CELL.into(),
                runs_ms: vec![1300, 1400, 1320],
                ..Default::default()
            },
            BenchFigure {
                id: "virtme-ng".into(),
                unavailable: Some("not installed".into()),
                ..Default::default()
            },
        ];
        fill_ratios(&mut figures);
        assert_eq!(figures[1].median_ms, Some(1320));
        assert_eq!(figures[1].vs_floor, Some(1.2));
        assert_eq!(figures[0].vs_kmatrix_one_cell, Some(0.83));
        assert_eq!(figures[2].vs_floor, None);
    }
}
