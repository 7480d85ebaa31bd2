//! Guest root filesystems: Debian packages and their dependency closure as
//! the suite installs them, unpacked, minus what the scenario excludes.

use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_file};
use crate::ids::ArtifactKey;
use crate::inputs::scenario::GuestSpec;
use crate::inputs::LockedPackage;
use crate::sources::archive;
use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};

impl Provisioner<'_> {
    /// A guest root filesystem: the packages and their dependency closure as
    /// Debian `suite` installs them, unpacked, minus `exclude`. Returns the root.
    pub fn rootfs(&self, spec: &GuestSpec) -> Result<PathBuf> {
        let key = sha256_bytes(serde_json::to_string(spec)?.as_bytes());
        let artifact = ArtifactKey::Rootfs(key[..16].to_string());
        let manifest = self.cache.get_or_make("rootfs", &key, |dir| {
            let debs = self
                .apt
                .download_closure(&spec.suite, &spec.packages, &dir.join("debs"))?;
            let root = dir.join("root");
            let mut packages = Vec::new();
            for deb in &debs {
                archive::unpack(deb, &root)?;
                let file = deb
                    .file_name()
                    .expect("named")
                    .to_string_lossy()
                    .into_owned();
                let mut parts = file.trim_end_matches(".deb").splitn(3, '_');
                packages.push(LockedPackage {
                    name: parts.next().unwrap_or_default().to_string(),
                    version: parts.next().unwrap_or_default().replace("%3a", ":"),
                    sha256: sha256_file(deb)?,
                    url: None,
                    h1: None,
                });
            }
            for pattern in &spec.exclude {
                remove_matching(&root, pattern)?;
            }
            fs::remove_dir_all(dir.join("debs"))?;
            fs::write(
                dir.join("packages.json"),
                serde_json::to_vec_pretty(&packages)?,
            )?;
            Ok(PathBuf::from("packages.json"))
        })?;
        let packages: Vec<LockedPackage> = serde_json::from_slice(&fs::read(&manifest)?)?;
        if self
            .lock
            .lock()
            .expect("lock file")
            .get(&artifact)
            .map(|l| &l.packages)
            != Some(&packages)
        {
            self.record_tofu(&artifact, packages, self.apt.mirror())?;
        }
        Ok(manifest.with_file_name("root"))
    }
}

/// Removes `pattern` (a path under `root`; a trailing `*` matches a prefix).
fn remove_matching(root: &Path, pattern: &str) -> Result<()> {
    let pattern = pattern.trim_start_matches('/');
    let Some(prefix) = pattern.strip_suffix('*') else {
        let path = root.join(pattern);
        if path.is_dir() {
            fs::remove_dir_all(&path)?;
        } else if path.exists() {
            fs::remove_file(&path)?;
        }
        return Ok(());
    };
    let (parent, stem) = match prefix.rsplit_once('/') {
        Some((parent, stem)) => (root.join(parent), stem.to_string()),
        None => (root.to_path_buf(), prefix.to_string()),
    };
    for entry in fs::read_dir(&parent)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        if entry.file_name().to_string_lossy().starts_with(&stem) {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}
