//! The kmatrix results contract, for kmatrix itself and for any tool that
//! reads its run directories (CI gates, dashboards, docs builds).
//!
//! It holds data only: the records of `cells.jsonl`, the facts of
//! `run.json`, the [`Verdict`] and its one table of names and symbols, the
//! `matrix.json`, `bisect.json`, `bench.json` and `diff --format json` shapes, the exit
//! codes, and the one reader/writer of `cells.jsonl`. Fields are only ever added, never renamed
//! or removed, and every added field has a default, so an older file still
//! reads.

mod bench;
mod bisect;
mod diff;
mod exit;
mod fidelity;
mod jsonl;
mod matrix;
mod record;
mod run;
mod verdict;

pub use bench::{BenchFigure, BenchMachine, BenchResult, BENCH_FILE, BENCH_FLOOR};
pub use bisect::{BisectResult, BISECT_FILE};
pub use diff::{CellChange, CellKey, Change, Diff, Side, VersionChange};
pub use exit::ExitStatus;
pub use fidelity::Fidelity;
pub use jsonl::{parse_cells, render_cells, BadLine, CellsFile, TornLine, CELLS_FILE};
pub use matrix::{KernelColumn, Matrix, MatrixCell, MatrixRow, ScenarioMatrix};
pub use record::{CellRecord, ProbeRecord, RunCounts};
pub use run::{
    BootStats, CacheStats, ContainerEngine, ResumeEntry, RunInfo, RunSelection, RUN_FILE,
};
pub use verdict::Verdict;
