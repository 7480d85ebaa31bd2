//! A content-addressed artifact cache: every artifact lives in a folder named
//! by the hash of everything that went into it, is built in a scratch folder
//! and renamed into place only when complete, and carries the sha256 of its
//! payload so a corrupted entry is noticed and rebuilt instead of used.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const MANIFEST: &str = "kmatrix-artifact.json";

#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    reused: AtomicUsize,
    made: AtomicUsize,
}

/// What the cache did during a run: a second identical run makes nothing.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheStats {
    pub reused: usize,
    pub made: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Payload file (relative to the entry) whose checksum is kept.
    payload: String,
    sha256: String,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        fs::create_dir_all(root)
            .with_context(|| format!("cannot create the cache folder {}", root.display()))?;
        Ok(Cache {
            root: root.to_path_buf(),
            reused: AtomicUsize::new(0),
            made: AtomicUsize::new(0),
        })
    }

    /// `$KMATRIX_CACHE`, else the user's cache folder.
    pub fn default_root() -> PathBuf {
        std::env::var_os("KMATRIX_CACHE")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("kmatrix")))
            .unwrap_or_else(|| PathBuf::from(".kmatrix-cache"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            reused: self.reused.load(Ordering::Relaxed),
            made: self.made.load(Ordering::Relaxed),
        }
    }

    pub fn entry_dir(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(key)
    }

    /// The payload of a complete, intact entry, without making anything.
    pub fn lookup(&self, kind: &str, key: &str) -> Option<PathBuf> {
        verified_payload(&self.entry_dir(kind, key))
    }

    /// Returns the entry for `key`, making it with `make` when it is absent or
    /// its payload no longer matches its recorded checksum. `make` fills the
    /// folder it is given and returns the payload's path relative to it.
    pub fn get_or_make(
        &self,
        kind: &str,
        key: &str,
        make: impl FnOnce(&Path) -> Result<PathBuf>,
    ) -> Result<PathBuf> {
        let dir = self.entry_dir(kind, key);
        let _lock = FileLock::acquire(&lock_path(&dir))?;
        if let Some(payload) = verified_payload(&dir) {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(payload);
        }
        if dir.exists() {
            eprintln!(
                "note: cache entry {} is incomplete or corrupted; making it again",
                dir.display()
            );
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        let parent = dir.parent().expect("entries live under a kind folder");
        fs::create_dir_all(parent)?;
        let scratch = tempfile::Builder::new()
            .prefix(&format!(".{key}."))
            .tempdir_in(parent)?;
        let payload = make(scratch.path())?;
        let manifest = Manifest {
            payload: payload.to_string_lossy().into_owned(),
            sha256: sha256_file(&scratch.path().join(&payload))?,
        };
        fs::write(
            scratch.path().join(MANIFEST),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        let scratch = scratch.keep();
        fs::rename(&scratch, &dir)
            .with_context(|| format!("cannot move {} into place", dir.display()))?;
        self.made.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(payload))
    }
}

fn verified_payload(dir: &Path) -> Option<PathBuf> {
    let manifest: Manifest = serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()?;
    let payload = dir.join(&manifest.payload);
    (sha256_file(&payload).ok()? == manifest.sha256).then_some(payload)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hashes a folder's files (names and contents, in sorted order).
pub fn sha256_tree(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for relative in files {
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update(sha256_file(&dir.join(&relative))?.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            out.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn lock_path(entry: &Path) -> PathBuf {
    let parent = entry.parent().expect("entries live under a kind folder");
    let name = entry
        .file_name()
        .expect("entry has a name")
        .to_string_lossy();
    parent.join(format!(".{name}.lock"))
}

/// An advisory lock on a file, so two kmatrix processes never make the same
/// artifact (or refresh the same package lists) at once.
pub struct FileLock(File);

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = File::create(path)?;
        use std::os::fd::AsRawFd;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_get_reuses_and_corruption_remakes() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let make = |dir: &Path| {
            fs::write(dir.join("blob"), b"payload")?;
            Ok(PathBuf::from("blob"))
        };
        let first = cache.get_or_make("thing", "k1", make).unwrap();
        assert_eq!(fs::read(&first).unwrap(), b"payload");
        let second = cache
            .get_or_make("thing", "k1", |_| panic!("must not remake"))
            .unwrap();
        assert_eq!(first, second);
        assert_eq!(cache.stats(), CacheStats { reused: 1, made: 1 });

        fs::write(&first, b"tampered").unwrap();
        let third = cache.get_or_make("thing", "k1", make).unwrap();
        assert_eq!(fs::read(third).unwrap(), b"payload");
        assert_eq!(cache.stats(), CacheStats { reused: 1, made: 2 });
    }

    #[test]
    fn failed_make_leaves_no_entry() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let result = cache.get_or_make("thing", "k", |dir| {
            fs::write(dir.join("half"), b"x")?;
            anyhow::bail!("download failed")
        });
        assert!(result.is_err());
        assert!(!cache.entry_dir("thing", "k").exists());
    }

    #[test]
    fn tree_hash_sees_content_and_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.go"), "package main").unwrap();
        let one = sha256_tree(dir.path()).unwrap();
        fs::write(dir.path().join("a.go"), "package main // changed").unwrap();
        let two = sha256_tree(dir.path()).unwrap();
        assert_ne!(one, two);
    }
}
