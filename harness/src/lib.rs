//! kmatrix: reproducible kernel × component test matrices.
//!
//! Data flows one way, and so do the imports (a module never imports one
//! listed after it, except `ops`, which drives them all):
//!
//! ```text
//! inputs ─► plan ─► provision ─► runner ──events──► reporter ─► results ─► report, diff
//!  (files)   (cells)  (sources,    (backend: boots,     (display,   (cells.jsonl,
//!                      cache)       verdict)              recorder)    run.json)
//! ```
//!
//! The results contract (records, verdicts, matrix and diff types) is the
//! `kmatrix-metadata` crate; the guest protocol is `kmatrix-agent`'s lib.

// Foundations: used by every layer above, using none of them.
pub mod cancel;
pub mod diagnostic;
pub mod events;
pub mod files;
pub mod hashing;
pub mod ids;

// The flow, bottom to top.
pub mod backend;
pub mod diff;
pub mod inputs;
pub mod plan;
pub mod provision;
pub mod report;
pub mod reporter;
pub mod results;
pub mod runner;
pub mod sources;
pub mod verdict;

// What the commands do, as library functions the CLI calls.
pub mod ops;
pub mod project;

pub use project::Project;
