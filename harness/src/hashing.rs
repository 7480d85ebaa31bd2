//! Content hashes: of bytes, of a file, of a folder tree. Cache keys, cell
//! ids and lock pins are all made of these.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_sees_content_and_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.go"), "package main").unwrap();
        let one = sha256_tree(dir.path()).unwrap();
        fs::write(dir.path().join("a.go"), "package main // changed").unwrap();
        let two = sha256_tree(dir.path()).unwrap();
        assert_ne!(one, two);
        fs::rename(dir.path().join("a.go"), dir.path().join("b.go")).unwrap();
        assert_ne!(two, sha256_tree(dir.path()).unwrap());
    }
}
