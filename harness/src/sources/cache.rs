//! A content-addressed artifact cache: every artifact lives in a folder named
//! by the hash of everything that went into it, is built in a scratch folder
//! and renamed into place only when complete, and carries the sha256 of its
//! payload so a corrupted entry is noticed and rebuilt instead of used.

use crate::events::Events;
use crate::files::FileLock;
use crate::hashing::sha256_file;
use anyhow::{Context, Result};
pub use kmatrix_metadata::CacheStats;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const MANIFEST: &str = "kmatrix-artifact.json";

pub struct Cache {
    root: PathBuf,
    reused: AtomicUsize,
    made: AtomicUsize,
    from_engine: AtomicUsize,
    /// Where notes about remade entries go.
    events: Events,
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
            from_engine: AtomicUsize::new(0),
            events: Events::none(),
        })
    }

    /// The same cache, telling `events` when it remakes a damaged entry.
    pub fn watched_by(mut self, events: Events) -> Cache {
        self.events = events;
        self
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
            from_engine: self.from_engine.load(Ordering::Relaxed),
        }
    }

    /// Counts an entry whose bytes came from the local container engine.
    pub fn count_from_engine(&self) {
        self.from_engine.fetch_add(1, Ordering::Relaxed);
    }

    pub fn entry_dir(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(key)
    }

    /// The sha256 the cache recorded for `payload` (a path it handed out),
    /// checked against the file when it was handed out: callers that need
    /// the payload's hash take it from here instead of reading it again.
    pub fn recorded_sha256(&self, payload: &Path) -> Option<String> {
        let entry = payload
            .ancestors()
            .find(|dir| dir.join(MANIFEST).is_file() && dir.starts_with(&self.root))?;
        let manifest: Manifest =
            serde_json::from_slice(&fs::read(entry.join(MANIFEST)).ok()?).ok()?;
        (entry.join(&manifest.payload) == payload).then_some(manifest.sha256)
    }

    /// Removes an entry (its next use makes it again); absent is fine.
    pub fn forget(&self, kind: &str, key: &str) -> Result<()> {
        let dir = self.entry_dir(kind, key);
        let _lock = FileLock::acquire(&lock_path(&dir))?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", dir.display()))
            }
            _ => Ok(()),
        }
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
            self.events.note(format!(
                "note: cache entry {} is incomplete or corrupted; making it again",
                dir.display()
            ));
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

/// Beside the manifest: the payload's size and modification time when its
/// checksum last matched. A warm run then reads the manifest and stats the
/// file instead of hashing it again (a 121 MB kernel source, a 60 MB
/// vmlinux); any write to the payload changes its mtime, and a mismatch
/// means hashing it as before.
const VERIFIED: &str = "kmatrix-verified.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Verified {
    size: u64,
    modified_ns: u128,
}

fn stamp_of(payload: &Path) -> Option<Verified> {
    let meta = fs::metadata(payload).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(Verified {
        size: meta.len(),
        modified_ns: modified.as_nanos(),
    })
}

fn verified_payload(dir: &Path) -> Option<PathBuf> {
    let manifest: Manifest = serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()?;
    let payload = dir.join(&manifest.payload);
    let now = stamp_of(&payload)?;
    let recorded: Option<Verified> = fs::read(dir.join(VERIFIED))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if recorded.as_ref() == Some(&now) {
        return Some(payload);
    }
    if sha256_file(&payload).ok()? != manifest.sha256 {
        return None;
    }
    // Best effort: a read-only cache is verified by hashing every time.
    let _ = serde_json::to_vec(&now)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| crate::files::write_atomically(&dir.join(VERIFIED), &bytes));
    Some(payload)
}

fn lock_path(entry: &Path) -> PathBuf {
    let parent = entry.parent().expect("entries live under a kind folder");
    let name = entry
        .file_name()
        .expect("entry has a name")
        .to_string_lossy();
    parent.join(format!(".{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_payload_is_not_hashed_again_until_it_changes() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let made = cache
            .get_or_make("thing", "k", |dir| {
                fs::write(dir.join("blob"), b"payload")?;
                Ok(PathBuf::from("blob"))
            })
            .unwrap();
        let dir = made.parent().unwrap();
        // The first lookup hashes and records the file's size and mtime.
        assert!(verified_payload(dir).is_some());
        let stamp = fs::read(dir.join(VERIFIED)).unwrap();
        // The manifest's checksum is not consulted while the stamp holds...
        let manifest = fs::read(dir.join(MANIFEST)).unwrap();
        let wrong = String::from_utf8(manifest.clone())
            .unwrap()
            .replace(&sha256_file(&made).unwrap(), &"0".repeat(64));
        fs::write(dir.join(MANIFEST), wrong).unwrap();
        assert!(verified_payload(dir).is_some(), "no second hash");
        fs::write(dir.join(MANIFEST), manifest).unwrap();
        // ...and a write of the same size (a new mtime) means hashing again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&made, b"PAYLOAD").unwrap();
        assert_ne!(fs::read(dir.join(VERIFIED)).unwrap(), b"");
        assert!(verified_payload(dir).is_none(), "tampering is still caught");
        assert_eq!(fs::read(dir.join(VERIFIED)).unwrap(), stamp);
    }

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
        assert_eq!(
            cache.stats(),
            CacheStats {
                reused: 1,
                made: 1,
                from_engine: 0
            }
        );

        fs::write(&first, b"tampered").unwrap();
        let third = cache.get_or_make("thing", "k1", make).unwrap();
        assert_eq!(fs::read(third).unwrap(), b"payload");
        assert_eq!(
            cache.stats(),
            CacheStats {
                reused: 1,
                made: 2,
                from_engine: 0
            }
        );
    }

    #[test]
    fn the_recorded_hash_is_the_payloads() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let payload = cache
            .get_or_make("thing", "k", |dir| {
                fs::create_dir_all(dir.join("root/usr/src"))?;
                fs::write(dir.join("root/usr/src/linux.tar.xz"), b"source")?;
                Ok(PathBuf::from("root/usr/src/linux.tar.xz"))
            })
            .unwrap();
        assert_eq!(
            cache.recorded_sha256(&payload),
            Some(crate::hashing::sha256_file(&payload).unwrap())
        );
        let elsewhere = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(cache.recorded_sha256(elsewhere.path()), None);
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
}
