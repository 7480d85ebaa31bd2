//! BPF objects: C sources built with Debian's clang `-target bpf`.

use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_tree};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

impl Provisioner<'_> {
    /// Builds a BPF object from C with Debian's clang (`-target bpf`), keyed
    /// by the sources beside it and the compiler.
    pub fn bpf_object(&self, source: &Path) -> Result<PathBuf> {
        let clang_version = clang_version()
            .context("building BPF objects needs clang: apt-get install clang libbpf-dev (scripts/setup.sh does)")?;
        let folder = source.parent().unwrap_or(Path::new("."));
        let key = sha256_bytes(
            format!(
                "bpf\0{}\0{}\0{clang_version}",
                source.display(),
                sha256_tree(folder)?
            )
            .as_bytes(),
        );
        self.cache.get_or_make("bpf-objects", &key, |dir| {
            let output = Command::new("clang")
                .args([
                    "-O2",
                    "-g",
                    "-target",
                    "bpf",
                    "-I/usr/include/x86_64-linux-gnu",
                    "-c",
                ])
                .arg(source)
                .arg("-o")
                .arg(dir.join("object.o"))
                .output()
                .context("cannot run clang")?;
            if !output.status.success() {
                bail!(
                    "clang -target bpf {} failed:\n{}",
                    source.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(PathBuf::from("object.o"))
        })
    }
}

/// Which clang builds BPF objects: the installed compiler's resolved path,
/// size and modification time (a package upgrade changes them). Read from
/// the file system, not by running `clang --version`: clang's 70 MB
/// start-up would double a warm run's peak memory for a key.
fn clang_version() -> Option<String> {
    let clang = crate::files::which("clang")?;
    let resolved = std::fs::canonicalize(&clang).ok()?;
    let meta = std::fs::metadata(&resolved).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} {} {modified}", resolved.display(), meta.len()))
}
