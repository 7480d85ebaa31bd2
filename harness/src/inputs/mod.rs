//! The declarative inputs a user writes: scenarios (`scenarios/*/`), the
//! catalogs (`images/kernels.toml`, `images/toolchains.toml`) and the lock
//! file (`images/kmatrix.lock`). Loading validates them and reports any
//! mistake with file, line and fix; nothing here fetches, runs or prints.

pub mod added;
pub mod catalog;
pub mod kernel_path;
pub mod lock;
pub mod scenario;

pub use catalog::{
    Catalog, EmulatorEntry, EnvironmentSource, KernelEntry, KernelSource, KernelTree, Source,
    ToolchainEntry,
};
pub use lock::{Lock, LockedArtifact, LockedPackage};
pub use scenario::Scenario;
