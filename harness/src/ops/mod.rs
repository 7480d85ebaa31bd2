//! What each command does, as library functions: the CLI parses arguments
//! and calls one of these. Each wires the layers together for one job and
//! returns data; printing is left to the caller (or to the reporters).

pub mod baseline;
pub mod bench;
pub mod bisect;
pub mod check;
pub mod discover;
pub mod exec;
pub mod kernels;
pub mod lock;
pub mod merge;
pub mod repro;
pub mod run;
pub mod shell;
