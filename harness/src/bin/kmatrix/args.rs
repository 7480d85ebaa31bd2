//! The command line: argument types only. `main.rs` dispatches them.

use clap::{Parser, Subcommand, ValueEnum};
use kmatrix::plan::shard::Shard;
use std::path::PathBuf;

/// Boots real kernels in QEMU, runs each component version's reproduction in
/// them, and writes a compatibility matrix with a classified verdict per cell
/// (pass, fail, crash, timeout, infra-error, unavailable).
///
/// A cell is scenario × component version × variant × kernel. Each kernel is
/// booted once for all its cells; finished cells are written at once to
/// OUT/cells.jsonl, so Ctrl-C loses nothing and `--resume OUT` continues.
#[derive(Parser)]
#[command(name = "kmatrix", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Project root holding images/ and scenarios/ [default: nearest ancestor of the current folder with images/kernels.toml]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Artifact cache (kernels, toolchains, builds) [default: $KMATRIX_CACHE or ~/.cache/kmatrix]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  kmatrix list                                   scenarios, kernels and toolchains
  kmatrix plan --scenario kube-ovn-tproxy        the cells a run would execute
  kmatrix run --scenario kube-ovn-tproxy --kernel debian-6.1 --out results/runs/try
  kmatrix run --resume results/runs/try          finish an interrupted run
  kmatrix report results/runs/try                rewrite matrix.{csv,json,md}
  kmatrix run --locked --fail-on regressions     a nightly's gate against results/baseline

Exit status: 0 the run completed (whatever the verdicts, unless --fail-on), 1 an error
or what --fail-on names,
2 bad input (a scenario, catalog or option; the message names file, line and fix),
130 interrupted (finished cells are kept).";

#[derive(Subcommand)]
pub enum Command {
    /// Run the matrix: provision, boot, classify, write results and reports.
    ///
    /// Each cell ends with one verdict: pass; fail, crash or timeout (the
    /// component misbehaved: these gate CI); flaky (passed and failed across
    /// --retries); infra-error (the harness or emulator failed); unavailable
    /// (cannot run here: a kernel, image or toolchain out of reach, named in
    /// its signature).
    #[command(after_help = "Examples:
  kmatrix run                                            the default matrix (every scenario, every kernel it lists)
  kmatrix run --scenario kube-vip-cidr --kernel debian-6.1 --out results/runs/vip
  kmatrix run --resume results/runs/vip                  finish it after Ctrl-C or kill -9
  kmatrix run --locked --fail-on regressions             a nightly's gate against results/baseline
  kmatrix run --scenario caddy-mptcp --add-version rc1=binary:./caddy   a local build beside the releases
  kmatrix run --scenario caddy-mptcp --kernel ./linux/arch/x86/boot/bzImage,modules=./mods   your own kernel build")]
    Run(RunArgs),
    /// List the cells a run would execute, without running anything.
    #[command(after_help = "Examples:
  kmatrix plan --scenario kube-ovn-tproxy               the cells, their ids and kernels
  kmatrix plan --check                                   what can run on this machine, and why not
  kmatrix plan --format github-matrix --shards 4         a strategy.matrix for GitHub Actions
  kmatrix plan --format json > cells.json")]
    Plan(PlanArgs),
    /// List scenarios, catalog kernels and toolchains.
    #[command(after_help = "Examples:\n  kmatrix list\n  kmatrix list | grep -A1 kube-vip")]
    List,
    /// Inspect and prepare catalog kernels (CI can cache the cache folder).
    #[command(
        subcommand,
        after_help = "Examples:\n  kmatrix kernels list\n  kmatrix kernels fetch debian-6.1 ubuntu-14.04\n  kmatrix kernels build debian-5.10-mptcp\n  kmatrix kernels discover --write"
    )]
    Kernels(KernelsCommand),
    /// Change pins in images/kmatrix.lock, the only way they change.
    ///
    /// A run never moves a pin: bytes that differ from it, or a pinned
    /// version the archive stopped publishing, are errors that name the
    /// entry. `lock accept` fetches what the source serves now for the
    /// entries you name, checks it as a first fetch would, replaces exactly
    /// those entries and prints the old and new digests. Commit the lock.
    #[command(
        subcommand,
        after_help = "Examples:\n  kmatrix lock accept kernel:debian-sid\n  kmatrix lock accept toolchain:go-1.24 image:docker.io/library/caddy:2.11.4\n  git diff images/kmatrix.lock"
    )]
    Lock(LockCommand),
    /// Make a finished run the project's baseline (results/baseline) and
    /// regenerate the docs table (results/COMPATIBILITY.md) from it.
    ///
    /// Copies the run's cells.jsonl and run.json, rewrites the reports in
    /// results/baseline, writes results/COMPATIBILITY.md exactly as
    /// `kmatrix report results/baseline --format markdown` does, and prints
    /// the diff against the baseline it replaced. An interrupted or torn
    /// run is refused (exit 2): finish it with `run --resume` first.
    #[command(
        subcommand,
        after_help = "Examples:\n  kmatrix run --out results/runs/full && kmatrix baseline accept results/runs/full\n  git diff --stat results/"
    )]
    Baseline(BaselineCommand),
    /// Compare two runs (or a baseline and a run), or two versions inside one run.
    ///
    /// Exit status: 0 no regression, 1 regressions (a cell went from pass to
    /// fail, crash or timeout), 2 usage or input error. Cells unavailable,
    /// infra-error or flaky on either side are listed, never counted as regressions.
    #[command(
        after_help = "Examples:\n  kmatrix diff results/baseline results/runs/nightly\n  kmatrix diff --common results/baseline results/runs/pr-check   only the cells both hold\n  kmatrix diff --format markdown OLD NEW >> $GITHUB_STEP_SUMMARY\n  kmatrix diff --ignore-variant RUN_WITH_WORKAROUND RUN_WITHOUT\n  kmatrix diff --versions v1.13.14 v1.14.0 results/runs/tproxy"
    )]
    Diff(DiffArgs),
    /// Join the results of several runs (CI shards) into one run directory.
    ///
    /// A cell present in more than one with different verdicts is reported
    /// (and listed in OUT/conflicts.json); the exit status is then 1.
    #[command(
        after_help = "Examples:\n  kmatrix merge shard-1 shard-2 shard-3 --out results/runs/nightly\n  kmatrix report results/runs/nightly"
    )]
    Merge {
        /// The runs to join (run directories, each holding cells.jsonl and run.json).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The run directory to write (a new folder).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Rerun exactly one cell and print how to reproduce it without kmatrix.
    #[command(
        after_help = "Examples:\n  kmatrix plan --scenario kube-vip-cidr --kernel debian-6.1 --version v0.8.5   find the cell's id\n  kmatrix repro CELL_ID"
    )]
    Repro {
        /// A cell id, as `kmatrix plan` or a report shows it.
        cell: String,
        /// Where to keep the run [default: results/runs/repro-<cell>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Reports for a run: the docs compatibility table, JUnit XML, HTML, the matrix.
    #[command(after_help = "Examples:
  kmatrix report results/runs/vip                                   rewrite every report file in the run
  kmatrix report results/runs/vip --format markdown -o COMPAT.md    the docs table
  kmatrix report results/runs/vip --format junit -o junit.xml       for a CI test tab")]
    Report(ReportArgs),
    /// Find where a verdict changes along kernels or along versions.
    ///
    /// One scenario and variant; either one --version and several --kernel
    /// (searched oldest kernel to newest), or one --kernel and several
    /// --version (searched in the order given). Both ends are judged, then
    /// binary search finds the adjacent pair where the verdict changes, in
    /// either direction (a regression or a fix). Cells already in --out are
    /// reused; every cell run is written there like a run, with
    /// OUT/bisect.json = {axis, boundary, verdicts, boots, ...}. A point that
    /// is unavailable, flaky or an infra-error (after two more tries) is
    /// never taken as either side. Exit status: 0 a boundary was found, 1
    /// none (the ends agree), 2 bad input, 130 interrupted.
    #[command(
        after_help = "Examples:\n  kmatrix bisect --scenario kube-ovn-tproxy --version v1.14.0 --kernel ubuntu-22.04 --kernel ubuntu-22.04-hwe-5.19 --kernel ubuntu-24.04-hwe --out results/runs/bisect-tproxy\n  kmatrix bisect --scenario kube-vip-cidr --kernel debian-6.1 --version v0.8.0 --version v0.8.1 ... --version v0.8.10 --out results/runs/bisect-vip"
    )]
    Bisect(BisectArgs),
    /// Run one program on a list of kernels, no scenario needed: "does this
    /// binary (or image) work on these kernels?"
    ///
    /// The program runs as a container (crun) inside each kernel's guest,
    /// its file system on a read-only virtio disk. A --binary must be static
    /// (checked before anything boots: a dynamically linked one is exit 2,
    /// naming its loader). Prints one row per kernel (release, verdict,
    /// exit), then the program's whole stdout and stderr there, and what the
    /// guest and the binary's Go build info said (MPTCP, Go version). The run
    /// directory holds the usual results and reports. Exit status: 0 the
    /// program exited 0 on every kernel; its own status when it exited with
    /// the same one everywhere; 1 otherwise (statuses differ, a signal, a
    /// timeout, a kernel where it could not run); 2 bad input.
    #[command(after_help = "Examples:
  kmatrix exec --kernel debian-6.1 --kernel ubuntu-22.04 --binary ./caddy -- version
  kmatrix exec --kernel debian-6.12 --image docker-archive:app.tar
  kmatrix exec --kernel debian-6.1 --image registry.example:5000/app:v2 -- /app --check
  kmatrix exec --kernel debian-6.1 --binary ./server --env GODEBUG=multipathtcp=0 -- --port 80")]
    Exec(ExecArgs),
    /// An interactive shell in a kernel's guest: the guest a cell gets.
    ///
    /// With --scenario and --version, the guest that version's cell gets on
    /// the kernel (the scenario's guest root, kernel modules, the version's
    /// files mounted read-only, its reproducers in /kmatrix/bin); the cell's
    /// probes are printed, not run. Without, a bare guest. Busybox is laid
    /// under either (sh, ls, ip, wget, ...). The console is this terminal:
    /// `exit` or Ctrl-D powers the guest off, Ctrl-A X stops QEMU at once.
    /// Exit status: 0 the guest powered off, 1 it could not boot, 2 bad input.
    #[command(after_help = "Examples:
  kmatrix shell --kernel debian-6.12
  kmatrix shell --kernel ubuntu-22.04 --scenario caddy-mptcp --version v2.6.2
  kmatrix shell --kernel ./linux/arch/x86/boot/bzImage      your own build")]
    Shell(ShellArgs),
    /// Measure what a cell costs against a bare QEMU boot of the same kernel,
    /// and against virtme-ng and vmtest doing the same work.
    ///
    /// In one invocation, on one kernel, every figure is timed once per
    /// round, the order rotating each round: bare QEMU with kmatrix's flags
    /// and an init that only powers off (the floor; also its bzImage), a
    /// `kmatrix run` of one cell, of N cells in one boot, and of the same N
    /// cells one boot each, then the peers asked for with --peer (installed
    /// by scripts/bench-setup.sh). A warm-up run builds what the cells need
    /// first. Writes OUT/bench.json (each figure's runs, median and ratios,
    /// the machine, the emulator) and OUT/bench.md, and prints the table.
    /// Ratios only compare figures taken in the same invocation.
    #[command(after_help = "Examples:
  kmatrix bench
  kmatrix bench --kernel debian-6.12 --rounds 9 --out results/bench-6.12
  bash scripts/bench-setup.sh && kmatrix bench --peer virtme-ng --peer vmtest")]
    Bench(BenchArgs),
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The kernel every figure boots.
    #[arg(long, value_name = "ID", default_value = "debian-6.1")]
    pub kernel: String,
    /// The scenario whose cells kmatrix runs (and whose first cell the peers run).
    #[arg(long, value_name = "ID", default_value = "kube-vip-cidr")]
    pub scenario: String,
    /// How many of the scenario's cells the N-cell figures run.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub cells: usize,
    /// Rounds: each figure is timed once per round; medians are reported.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub rounds: usize,
    /// A peer to time on the same work: virtme-ng, vmtest (repeatable).
    #[arg(long = "peer", value_name = "NAME")]
    pub peers: Vec<String>,
    /// Where bench.json and bench.md go [default: results/bench-<UTC timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Accelerator for every figure; `auto` uses KVM only after a test guest really ran under it.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// The emulator: an id of images/emulators.toml, or `host` [default: the catalog's pinned default]
    #[arg(long, value_name = "ID|host")]
    pub emulator: Option<String>,
}

#[derive(clap::Args)]
pub struct ShellArgs {
    /// The kernel: a catalog id, or the path of a kernel image (see `kmatrix run --help`).
    #[arg(long, value_name = "ID|PATH")]
    pub kernel: String,
    /// Enter the guest of this scenario's cell on the kernel.
    #[arg(long, value_name = "ID", requires = "version")]
    pub scenario: Option<String>,
    /// The scenario's version whose files are mounted.
    #[arg(long, value_name = "ID", requires = "scenario")]
    pub version: Option<String>,
    /// The scenario's variant (its kernel command line, environment) [default: the first]
    #[arg(long, value_name = "ID", requires = "scenario")]
    pub variant: Option<String>,
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Kernel catalog id or image path (repeatable; at least one); `docker` runs it in a container on the Docker engine's host kernel; a path (it holds `/`) is your own bzImage or vmlinux, `PATH,modules=DIR` with its modules.
    #[arg(long = "kernel", value_name = "ID|PATH", required = true)]
    pub kernels: Vec<String>,
    /// An image: REGISTRY/NAME:TAG, NAME@sha256:..., docker-archive:PATH, oci:DIR[:TAG] or docker-daemon:NAME[:TAG] (an image the local Docker engine has; a registry image it has is taken from it too).
    #[arg(
        long,
        value_name = "REF",
        conflicts_with_all = ["binary", "module"],
        required_unless_present_any = ["binary", "module"]
    )]
    pub image: Option<String>,
    /// A local binary (what CI just built); it runs alone in its file system.
    #[arg(long, value_name = "PATH", conflicts_with = "module")]
    pub binary: Option<PathBuf>,
    /// A Go module's main package at a tag or pseudo-version, built here
    /// (PATH@VERSION; with --toolchain, and --cgo for a cgo program).
    #[arg(long, value_name = "PATH@VERSION", requires = "toolchain")]
    pub module: Option<String>,
    /// The Go toolchain for --module (an id of images/toolchains.toml: the
    /// Go minor upstream builds the release with).
    #[arg(long, value_name = "ID")]
    pub toolchain: Option<String>,
    /// Build --module with cgo (the program then runs on a Debian base with libc6 and libstdc++6).
    #[arg(long)]
    pub cgo: bool,
    /// A `go build` flag for --module, as upstream's release build passes it (repeatable).
    #[arg(long = "build-flag", value_name = "FLAG", allow_hyphen_values = true)]
    pub build_flags: Vec<String>,
    /// Environment for the program, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Results directory [default: results/runs/exec-<UTC timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seconds the program may run.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub timeout: u64,
    /// The program's arguments (a binary), or its whole command (an image; default: its entrypoint and cmd).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A run directory (holding cells.jsonl and run.json).
    pub dir: PathBuf,
    /// Print one report instead of rewriting all of them in DIR
    /// (matrix.{csv,json,md}, compatibility.md, junit.xml, report.html).
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// With --format: write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE", requires = "format")]
    pub output: Option<PathBuf>,
    /// The run to compare with in the HTML report [default: results/baseline when it exists].
    #[arg(long, value_name = "RUN")]
    pub baseline: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
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
pub enum BaselineCommand {
    /// Make RUN (a finished run directory) the baseline.
    Accept {
        #[arg(value_name = "RUN")]
        run: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum LockCommand {
    /// Re-fetch the named entries (keys as the lock spells them:
    /// kernel:ID, toolchain:ID, emulator:ID, image:REF, rootfs:HASH,
    /// module:PATH@VERSION) and pin what the source serves now.
    Accept {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum KernelsCommand {
    /// Every catalog kernel: version, origin, whether it is cached, what it stands in for.
    List,
    /// Fetch (or build) kernels ahead of a run.
    Fetch {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// What the archives publish now: per series (Ubuntu GA and HWE, Debian
    /// suites) the newest kernel build and whether the catalog has it.
    ///
    /// Reads Ubuntu's own Packages indexes (the release, -updates and
    /// -security pockets) and Debian's through kmatrix's apt config.
    /// `--write` adds (or bumps) a by-URL catalog entry for each Ubuntu build
    /// the catalog lacks, its packages' sha256 pinned in the lock from the
    /// archive's index.
    Discover {
        /// Add or bump the catalog entries and their lock pins.
        #[arg(long)]
        write: bool,
    },
    /// Build source-built kernels ahead of a run (kept in the cache; the log too);
    /// `k8s-local` builds the local cluster's Kubernetes binaries from Debian's
    /// source package (about 7 minutes on 2 cores) and fetches its node packages.
    Build {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct SelectArgs {
    /// Scenario id (repeatable) [default: every scenario]
    #[arg(long = "scenario", value_name = "ID")]
    pub scenarios: Vec<String>,
    /// Kernel catalog id (repeatable) [default: the kernels each scenario lists]; `docker` = containers on the Docker engine's host kernel (DOCKER_HOST or the default socket); `k8s-local` = workloads on a single-node Kubernetes kmatrix assembles on this host (the scenario's kubernetes/ manifests), `kind` = on a kind cluster; `latest:ubuntu-jammy` (GA), `latest:ubuntu-jammy-hwe`, `latest:debian-trixie` = the newest build the archive publishes now (the catalog entry is bumped to it); a path (it holds `/`: ./linux/arch/x86/boot/bzImage, a vmlinux) = your own kernel build, `PATH,modules=DIR` with the folder `make modules_install INSTALL_MOD_PATH=DIR` wrote (its cells' kernel id: the file name and a digest, bzImage@3f9ed566ba8e)
    #[arg(long = "kernel", value_name = "ID|PATH")]
    pub kernels: Vec<String>,
    /// Variant id (repeatable), e.g. only `baseline` [default: every variant]
    #[arg(long = "variant", value_name = "ID")]
    pub variants: Vec<String>,
    /// Component version id (repeatable), e.g. `v1.14.0` [default: every version]
    #[arg(long = "version", value_name = "ID")]
    pub versions: Vec<String>,
    /// One more version for this run, beside the scenario's own (repeatable):
    /// `module:PATH@VERSION` (a tag or a pseudo-version, built the way the
    /// scenario builds that module), `image:REF` or `binary:PATH` (run with
    /// the command of the scenario's newest artifact version); `ID=` names it.
    #[arg(long = "add-version", value_name = "[ID=]SPEC")]
    pub added_versions: Vec<String>,
    /// The Kubernetes release every cluster of the run (`k8s-local`,
    /// `<kernel>+k8s`) is built from: `[local]` or a `[[release]]` of
    /// images/kubernetes.toml, e.g. `v1.35.4` [default: `[local]`'s]. Cells
    /// record it (fact `kubernetes`); each release's cells have ids of their own.
    #[arg(long = "kubernetes", value_name = "RELEASE")]
    pub kubernetes: Option<String>,
}

#[derive(clap::Args)]
pub struct DiffArgs {
    /// OLD NEW (run directories or cells.jsonl files), or one RUN with --versions.
    #[arg(required = true, num_args = 1..=2, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Compare two component versions inside one run, kernel by kernel.
    #[arg(long, num_args = 2, value_names = ["OLD_VERSION", "NEW_VERSION"])]
    pub versions: Option<Vec<String>>,
    /// Match cells by scenario, version and kernel only (one variant per side).
    #[arg(long)]
    pub ignore_variant: bool,
    /// Compare only the cells both runs hold: no "new" or "removed" lines
    /// (a pull request's small run against the full baseline).
    #[arg(long)]
    pub common: bool,
    /// `console` for a terminal, `markdown` for a pull request comment or a
    /// job summary, `json` (the `Diff` type of kmatrix-metadata) for tools.
    #[arg(long, value_enum, default_value_t = DiffFormat::Console)]
    pub format: DiffFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DiffFormat {
    Console,
    Markdown,
    Json,
}

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// `github-matrix` prints a strategy.matrix for GitHub Actions with --shards entries.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only the cells of shard I of N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// How many shards `--format github-matrix` makes.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub shards: usize,
    /// Say, per scenario, which cells can run here and which are unavailable
    /// here and why (checks the cache, the Debian mirror and kernel URLs).
    #[arg(long)]
    pub check: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Results directory [default: results/runs/<UTC timestamp>]
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR exactly as it was started (its run.json keeps the selection): run only the cells it does not hold yet. --scenario, --kernel, --variant, --cell and --shard given with it narrow the run further.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// VMs booted at once [default: number of cores]
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Accelerator; `auto` uses KVM only after a test guest really ran under it.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// Add no pin: an artifact images/kmatrix.lock does not pin makes its cells
    /// unavailable (what CI runs; pins never change in a run either way).
    #[arg(long)]
    pub locked: bool,
    /// Rerun failing cells up to N times; a cell that passes in any is `flaky` [default: 0, or what a resumed run was started with]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// The emulator: an id of images/emulators.toml, or `host` for the host's qemu-system-x86_64 [default: the catalog's pinned default]
    #[arg(long, value_name = "ID|host")]
    pub emulator: Option<String>,
    /// Run one shard of the plan, I of N (cells of a kernel stay together).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Run only this cell (repeatable); ids as `kmatrix plan` lists them.
    #[arg(long = "cell", value_name = "CELL_ID")]
    pub cells: Vec<String>,
    /// Exit 1 when the run holds what you name (repeatable): `findings` (a
    /// cell is fail, crash or timeout), `infra` (an infra-error), or
    /// `regressions` (a cell went from pass to a finding against --baseline,
    /// or against results/baseline when it is not given). For CI: a nightly
    /// gates with `--fail-on regressions`, a component's own CI with
    /// `--fail-on findings`.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub fail_on: Vec<FailOn>,
    /// The run `--fail-on regressions` compares with [default: results/baseline]
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
}

/// What makes `run --fail-on` exit 1.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Findings,
    Infra,
    Regressions,
}

#[derive(clap::Args)]
pub struct BisectArgs {
    /// The scenario.
    #[arg(long, value_name = "ID")]
    pub scenario: String,
    /// Component version: one (kernel axis) or several in order (version axis).
    #[arg(long = "version", value_name = "ID", required = true)]
    pub versions: Vec<String>,
    /// Kernel catalog id or image path: several (kernel axis, sorted by kernel version) or one (version axis).
    #[arg(long = "kernel", value_name = "ID|PATH", required = true)]
    pub kernels: Vec<String>,
    /// The variant.
    #[arg(long, value_name = "ID", default_value = "baseline")]
    pub variant: String,
    /// Results directory (cells there are reused) [default: results/runs/bisect-<UTC timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Accelerator; `auto` uses KVM only after a test guest really ran under it.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// The emulator: an id of images/emulators.toml, or `host` [default: the catalog's pinned default]
    #[arg(long, value_name = "ID|host")]
    pub emulator: Option<String>,
    /// Add no pin: an artifact images/kmatrix.lock does not pin makes its cells
    /// unavailable (what CI runs; pins never change in a run either way).
    #[arg(long)]
    pub locked: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    GithubMatrix,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Accel {
    /// KVM if a test guest really runs under it here, else TCG.
    Auto,
    Tcg,
    Kvm,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command teaches by example, and the verdicts are all named.
    #[test]
    fn every_command_has_examples() {
        let mut cli = Cli::command();
        cli.build();
        for command in cli.get_subcommands().filter(|c| c.get_name() != "help") {
            let help = command
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Examples:"),
                "`kmatrix {}` has no examples",
                command.get_name()
            );
        }
        let run = cli.find_subcommand("run").unwrap();
        let about = run.get_long_about().unwrap().to_string();
        for verdict in kmatrix_metadata::Verdict::ALL {
            assert!(
                about.contains(verdict.as_str()),
                "{verdict} missing from run's help"
            );
        }
    }
}
