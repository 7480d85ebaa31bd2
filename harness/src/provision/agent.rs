//! The guest agent: the static `vm/` binary every guest runs as PID 1.

use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_file, sha256_tree};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

impl Provisioner<'_> {
    /// The static guest agent: `$KMATRIX_AGENT` if set, else built from the
    /// `vm/` crate of the workspace this harness was built from.
    pub fn agent(&self) -> Result<PathBuf> {
        if let Some(path) = std::env::var_os("KMATRIX_AGENT") {
            return Ok(PathBuf::from(path));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the harness crate lives in the workspace");
        let vm = workspace.join("vm");
        let key = sha256_bytes(
            format!(
                "agent\0{}\0{}\0{}",
                sha256_tree(&vm.join("src"))?,
                sha256_file(&vm.join("Cargo.toml"))?,
                sha256_file(&workspace.join("Cargo.lock")).unwrap_or_default()
            )
            .as_bytes(),
        );
        let target_dir = self.cache.root().join("agent-target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        self.cache.get_or_make("agent", &key, |dir| {
            let output = Command::new(&cargo)
                .args([
                    "build",
                    "--release",
                    "-p",
                    "kmatrix-agent",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                    "--target-dir",
                ])
                .arg(&target_dir)
                .current_dir(workspace)
                .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
                .output()
                .context("cannot run cargo to build the guest agent")?;
            if !output.status.success() {
                bail!(
                    "building the guest agent failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let built = target_dir.join("x86_64-unknown-linux-gnu/release/kmatrix-agent");
            fs::copy(&built, dir.join("kmatrix-agent"))?;
            Ok(PathBuf::from("kmatrix-agent"))
        })
    }
}
