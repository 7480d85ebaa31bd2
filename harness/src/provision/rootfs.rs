//! Guest root filesystems: Debian packages and their dependency closure as
//! the suite installs them, unpacked, minus what the scenario excludes.

use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_file};
use crate::ids::ArtifactKey;
use crate::inputs::scenario::GuestSpec;
use crate::inputs::LockedPackage;
use crate::sources::apt::PackageVersion;
use crate::sources::archive;
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};

impl Provisioner<'_> {
    /// A guest root filesystem: the packages and their dependency closure as
    /// Debian `suite` installs them, unpacked, minus `exclude`. Returns the
    /// root. Once pinned, exactly the pinned closure is fetched (each
    /// package at its version, checked by sha256), and a cached root that
    /// differs from the pin is refused, never re-pinned.
    pub fn rootfs(&self, spec: &GuestSpec) -> Result<PathBuf> {
        let key = spec_hash(spec)?;
        let artifact = Self::rootfs_key(spec)?;
        let pinned = self
            .lock
            .lock()
            .expect("lock file")
            .get(&artifact)
            .map(|l| l.packages.clone());
        if pinned.is_none() {
            self.may_add_pin(&artifact)?;
        }
        let manifest = self.cache.get_or_make("rootfs", &key, |dir| {
            let debs = match &pinned {
                Some(packages) => self.download_pinned(packages, &dir.join("debs"))?,
                None => self
                    .apt
                    .download_closure(&spec.suite, &spec.packages, &dir.join("debs"))?,
            };
            let root = dir.join("root");
            let mut packages = Vec::new();
            for deb in &debs {
                let file = deb
                    .file_name()
                    .expect("named")
                    .to_string_lossy()
                    .into_owned();
                let mut parts = file.trim_end_matches(".deb").splitn(3, '_');
                let package = LockedPackage {
                    name: parts.next().unwrap_or_default().to_string(),
                    version: parts.next().unwrap_or_default().replace("%3a", ":"),
                    sha256: sha256_file(deb)?,
                    url: None,
                    h1: None,
                };
                if let Some(pin) = pinned.iter().flatten().find(|p| p.name == package.name) {
                    if pin.sha256 != package.sha256 {
                        bail!(
                            "checksum mismatch for {}={}: the lock file says {}, the mirror {} served {}; \
                             refusing to use it",
                            package.name,
                            package.version,
                            pin.sha256,
                            self.apt.mirror(),
                            package.sha256
                        );
                    }
                }
                archive::unpack(deb, &root)?;
                packages.push(package);
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
        });
        let manifest = manifest.map_err(|e| {
            e.context(format!(
                "{artifact} (images/kmatrix.lock); to take what the mirror serves now: \
                 `kmatrix lock accept {artifact}`"
            ))
        })?;
        let packages: Vec<LockedPackage> = serde_json::from_slice(&fs::read(&manifest)?)?;
        match pinned {
            Some(pinned) => {
                let differ = closure_difference(&pinned, &packages);
                if !differ.is_empty() {
                    bail!(
                        "checksum mismatch for {artifact}: the cached root ({}) differs from images/kmatrix.lock: {}; \
                         refusing to use it (delete that cache folder to fetch the pinned packages again, \
                         or `kmatrix lock accept {artifact}` to pin what the mirror serves now)",
                        manifest.parent().unwrap_or(&manifest).display(),
                        differ.join("; ")
                    );
                }
            }
            None => self.record_tofu(&artifact, packages, self.apt.mirror())?,
        }
        Ok(manifest.with_file_name("root"))
    }

    /// Drops the cached root of `spec` (`kmatrix lock accept`).
    pub fn forget_rootfs(&self, spec: &GuestSpec) -> Result<()> {
        self.cache.forget("rootfs", &spec_hash(spec)?)
    }

    /// The lock key of `spec`'s root.
    pub fn rootfs_key(spec: &GuestSpec) -> Result<ArtifactKey> {
        Ok(ArtifactKey::Rootfs(spec_hash(spec)?[..16].to_string()))
    }

    /// Each pinned package at its pinned version, one folder each (names
    /// may prefix one another).
    fn download_pinned(&self, packages: &[LockedPackage], dest: &Path) -> Result<Vec<PathBuf>> {
        packages
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let version = PackageVersion {
                    name: p.name.clone(),
                    version: p.version.clone(),
                };
                self.apt.download(&version, &dest.join(n.to_string()))
            })
            .collect()
    }
}

/// `name: pinned V sha256 A, cached W sha256 B` for each package that is
/// not the same in both, and the ones only one side has.
fn closure_difference(pinned: &[LockedPackage], cached: &[LockedPackage]) -> Vec<String> {
    let short = |p: &LockedPackage| {
        format!(
            "{} sha256 {}",
            p.version,
            p.sha256.get(..12).unwrap_or(&p.sha256)
        )
    };
    let mut differ = Vec::new();
    for pin in pinned {
        match cached.iter().find(|c| c.name == pin.name) {
            Some(got) if got.version == pin.version && got.sha256 == pin.sha256 => {}
            Some(got) => differ.push(format!(
                "{}: pinned {}, cached {}",
                pin.name,
                short(pin),
                short(got)
            )),
            None => differ.push(format!(
                "{}: pinned {}, not in the cached root",
                pin.name,
                short(pin)
            )),
        }
    }
    for got in cached
        .iter()
        .filter(|c| !pinned.iter().any(|p| p.name == c.name))
    {
        differ.push(format!("{}: cached {}, not pinned", got.name, short(got)));
    }
    differ
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

/// What a guest root is keyed by: its cache entry (whole) and its lock entry
/// (the first 16 hex digits).
fn spec_hash(spec: &GuestSpec) -> Result<String> {
    Ok(sha256_bytes(serde_json::to_string(spec)?.as_bytes()))
}
