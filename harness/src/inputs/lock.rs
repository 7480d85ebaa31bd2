//! `images/kmatrix.lock`: the exact package versions and sha256 checksums
//! each catalog artifact resolved to. The first fetch of an artifact records
//! it (trust on first use, marked so in the file); every later fetch must
//! match it byte for byte.

use crate::diagnostic::{parse_toml, FileError};
use crate::ids::ArtifactKey;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "kmatrix.lock";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LockFile {
    #[serde(default)]
    pub artifact: BTreeMap<String, LockedArtifact>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockedArtifact {
    pub packages: Vec<LockedPackage>,
    /// How the checksums were first obtained, e.g. "trust-on-first-use 2026-11-21".
    pub provenance: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    /// Empty until the first fetch records it (trust on first use).
    pub sha256: String,
    /// Set for packages fetched by URL rather than through apt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Go module's `h1:` hash (its files and go.mod, as go.sum writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h1: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Lock {
    path: PathBuf,
    file: LockFile,
}

impl Lock {
    /// Reads the lock file; a missing one is empty, a damaged one is bad
    /// input (file, line, fix), like a damaged scenario.
    pub fn load(images_dir: &Path) -> Result<Lock, FileError> {
        let path = images_dir.join(LOCK_FILE);
        let file = match fs::read_to_string(&path) {
            Ok(text) => parse_toml(
                &path,
                &text,
                "restore it with `git checkout images/kmatrix.lock`, or delete it to re-resolve every pin",
            )?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LockFile::default(),
            Err(e) => {
                return Err(FileError::whole_file(
                    &path,
                    format!("cannot read: {e}"),
                    "check the file's permissions",
                ))
            }
        };
        Ok(Lock { path, file })
    }

    pub fn get(&self, artifact: &ArtifactKey) -> Option<&LockedArtifact> {
        self.file.artifact.get(&artifact.to_string())
    }

    /// The entry under `key` as the file spells it (`kernel:debian-6.1`).
    pub fn get_key(&self, key: &str) -> Option<&LockedArtifact> {
        self.file.artifact.get(key)
    }

    /// Every entry's key, in the file's order.
    pub fn keys(&self) -> Vec<String> {
        self.file.artifact.keys().cloned().collect()
    }

    /// Takes the entry `key` out and writes the file (atomically, under the
    /// same file lock as [`Lock::record`], from what is on disk now).
    pub fn remove(&mut self, key: &str) -> Result<Option<LockedArtifact>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let _guard = crate::files::FileLock::acquire(&dir.join(".kmatrix.lock.lock"))?;
        if let Ok(current) = Lock::load(dir) {
            self.file = current.file;
        }
        let removed = self.file.artifact.remove(key);
        self.write()?;
        Ok(removed)
    }

    fn write(&self) -> Result<()> {
        let text = format!(
            "# Written by kmatrix: exact versions and sha256 of every fetched artifact.\n\
             # Commit it. `provenance` says how a checksum was first obtained.\n\n{}",
            toml::to_string_pretty(&self.file)?
        );
        crate::files::write_atomically(&self.path, text.as_bytes())
    }

    /// Records an artifact and writes the file (atomically). Two runs may
    /// pin at once: under a file lock, what the other wrote since is read
    /// back first, so neither pin is lost.
    pub fn record(&mut self, artifact: &ArtifactKey, locked: LockedArtifact) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let _guard = crate::files::FileLock::acquire(&dir.join(".kmatrix.lock.lock"))?;
        if let Ok(current) = Lock::load(dir) {
            for (key, value) in current.file.artifact {
                self.file.artifact.entry(key).or_insert(value);
            }
        }
        self.file.artifact.insert(artifact.to_string(), locked);
        self.write()
    }
}
