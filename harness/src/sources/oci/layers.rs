//! Applying image layers to a directory, base first, as a container
//! runtime's snapshotter would: files replace files, `.wh.NAME` deletes
//! NAME from the layers below, `.wh..wh..opq` empties its directory of
//! what the layers below put there. Layers may be plain, gzip or zstd tar;
//! the magic bytes say which.

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Opens a layer blob, decompressing gzip or zstd when its magic says so.
pub fn open_layer(path: &Path) -> Result<Box<dyn Read>> {
    let mut magic = [0u8; 4];
    let read = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .with_context(|| format!("cannot read layer {}", path.display()))?;
    let file = BufReader::new(File::open(path)?);
    Ok(match &magic[..read] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::new(file)?),
        _ => Box::new(file),
    })
}

/// Applies one layer on top of `root`.
pub fn apply(layer: &Path, root: &Path) -> Result<()> {
    fs::create_dir_all(root)?;
    let mut archive = tar::Archive::new(open_layer(layer)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Directories this layer made opaque keep what the layer itself adds.
    let mut added_here: BTreeSet<PathBuf> = BTreeSet::new();
    for entry in archive
        .entries()
        .with_context(|| format!("layer {} is not a tar archive", layer.display()))?
    {
        let mut entry = entry.with_context(|| format!("layer {} is damaged", layer.display()))?;
        let path = clean(&entry.path()?)
            .with_context(|| format!("layer {}: an entry escapes the root", layer.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE {
            let dir = root.join(&parent);
            for child in fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
            {
                let relative = parent.join(child.file_name());
                if !added_here.contains(&relative) {
                    remove(&child.path())?;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            remove(&root.join(&parent).join(hidden))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            // Device nodes come from the runtime's /dev; nothing needs them here.
            continue;
        }
        let target = root.join(&path);
        // A file replaces whatever was there; a directory merges with one.
        if !kind.is_dir() {
            if let Ok(meta) = fs::symlink_metadata(&target) {
                if meta.is_dir() {
                    fs::remove_dir_all(&target)?;
                }
            }
        } else if fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&target)?;
        }
        entry.unpack_in(root).with_context(|| {
            format!(
                "layer {}: cannot unpack {}",
                layer.display(),
                path.display()
            )
        })?;
        added_here.insert(path);
    }
    Ok(())
}

/// `path` without `.`, a leading `/`, or any `..` (an error).
fn clean(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                anyhow::bail!("{} leaves the image root", path.display())
            }
        }
    }
    Ok(out)
}

fn remove(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tarball (gzip when asked) holding `files` (path, content;
    /// a path ending in `/` is a directory).
    fn layer(dir: &Path, name: &str, files: &[(&str, &str)], gzip: bool) -> PathBuf {
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        let writer: Box<dyn std::io::Write> = if gzip {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(file)
        };
        let mut builder = tar::Builder::new(writer);
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            if let Some(dir) = name.strip_suffix('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, dir, std::io::empty())
                    .unwrap();
            } else {
                header.set_mode(0o644);
                header.set_size(content.len() as u64);
                builder
                    .append_data(&mut header, name, content.as_bytes())
                    .unwrap();
            }
        }
        builder.into_inner().unwrap().flush().unwrap();
        path
    }

    #[test]
    fn whiteouts_and_opaque_directories_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let base = layer(
            dir.path(),
            "base.tar.gz",
            &[
                ("etc/", ""),
                ("etc/keep", "keep"),
                ("etc/gone", "gone"),
                ("var/", ""),
                ("var/cache/", ""),
                ("var/cache/old", "old"),
                ("bin/", ""),
                ("bin/tool", "v1"),
            ],
            true,
        );
        let top = layer(
            dir.path(),
            "top.tar",
            &[
                ("etc/.wh.gone", ""),
                ("var/cache/", ""),
                ("var/cache/.wh..wh..opq", ""),
                ("var/cache/new", "new"),
                ("bin/tool", "v2"),
            ],
            false,
        );
        apply(&base, &root).unwrap();
        apply(&top, &root).unwrap();
        let read = |p: &str| fs::read_to_string(root.join(p)).ok();
        assert_eq!(read("etc/keep").as_deref(), Some("keep"));
        assert_eq!(read("etc/gone"), None, "whiteout removed it");
        assert_eq!(
            read("var/cache/old"),
            None,
            "opaque directory hid the lower layer"
        );
        assert_eq!(read("var/cache/new").as_deref(), Some("new"));
        assert_eq!(read("bin/tool").as_deref(), Some("v2"));
        assert!(!root.join("etc/.wh.gone").exists());
    }

    #[test]
    fn entries_that_escape_the_root_are_refused() {
        assert!(clean(Path::new("../etc/passwd")).is_err());
        assert_eq!(clean(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }
}
