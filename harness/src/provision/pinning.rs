//! Pinning: an artifact made of packages (Debian's, or by URL) is fetched
//! as the lock file pins it, checked byte for byte, unpacked into one root
//! in the cache, and the lock file records what it resolved to the first
//! time (trust on first use, marked so).

use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_file};
use crate::ids::ArtifactKey;
use crate::inputs::{LockedArtifact, LockedPackage};
use crate::sources::apt::PackageVersion;
use crate::sources::{archive, fetch};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// One package of an artifact: from Debian through apt, or by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Package {
    Debian(PackageVersion),
    Url(String),
}

impl Package {
    pub(super) fn from_locked(locked: &LockedPackage) -> Package {
        match &locked.url {
            Some(url) => Package::Url(url.clone()),
            None => Package::Debian(PackageVersion {
                name: locked.name.clone(),
                version: locked.version.clone(),
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Package::Debian(p) => format!("{}={}", p.name, p.version),
            Package::Url(url) => url.clone(),
        }
    }
}

/// The cache kind holding an artifact's unpacked packages (what
/// [`Provisioner::pinned_artifact`] makes, keyed by the packages); `None`
/// for artifacts cached some other way (images, modules, guest roots).
fn unpacked_kind(artifact: &ArtifactKey) -> Option<&'static str> {
    Some(match artifact {
        ArtifactKey::Kernel(_) => super::kernel::PACKAGED,
        ArtifactKey::KernelSource(_) => super::kernel::SOURCES,
        ArtifactKey::Toolchain(_) => "toolchains",
        ArtifactKey::Emulator(_) => "emulators",
        ArtifactKey::GoPackages(_) => "go-packages",
        _ => return None,
    })
}

impl Provisioner<'_> {
    /// The versions `suite` publishes of `names`, as packages to pin.
    pub(super) fn resolve_in(&self, names: &[String], suite: &str) -> Result<Vec<Package>> {
        names
            .iter()
            .map(|name| Ok(Package::Debian(self.apt.resolve(name, suite)?)))
            .collect()
    }

    /// Fetches the packages of a catalog artifact, pinned by the lock file,
    /// unpacks them into one root, and lets `finish` name the payload.
    pub(super) fn pinned_artifact(
        &self,
        artifact: &ArtifactKey,
        resolve: &dyn Fn() -> Result<Vec<Package>>,
        finish: &dyn Fn(&Path) -> Result<PathBuf>,
    ) -> Result<(PathBuf, String)> {
        self.pinned_artifact_with(artifact, resolve, finish, &[])
    }

    /// [`Self::pinned_artifact`], with digests the catalog gives for some
    /// packages (`published`): they pin the first fetch, and a lock entry
    /// that disagrees with them is refused rather than believed.
    pub(super) fn pinned_artifact_with(
        &self,
        artifact: &ArtifactKey,
        resolve: &dyn Fn() -> Result<Vec<Package>>,
        finish: &dyn Fn(&Path) -> Result<PathBuf>,
        published: &[LockedPackage],
    ) -> Result<(PathBuf, String)> {
        let kind = unpacked_kind(artifact)
            .with_context(|| format!("{artifact} is not an unpacked package artifact"))?;
        let locked = self.lock.lock().expect("lock file").get(artifact).cloned();
        if let Some(pinned) = &locked {
            for want in published {
                let conflict = pinned
                    .packages
                    .iter()
                    .find(|p| p.url == want.url && p.sha256 != want.sha256);
                if let Some(got) = conflict {
                    bail!(
                        "checksum mismatch for {}: images/kernels.toml gives sha256 {}, images/kmatrix.lock \
                         pins {}; refusing both (restore the one edited by mistake, e.g. \
                         `git checkout images/kmatrix.lock`)",
                        want.version,
                        want.sha256,
                        got.sha256
                    );
                }
            }
        }
        let (payload, fetched) = match &locked {
            Some(pinned) => {
                let packages: Vec<Package> =
                    pinned.packages.iter().map(Package::from_locked).collect();
                // A pin is never replaced here: bytes that do not match it,
                // or a version the archive stopped publishing, are errors
                // that name the one command that moves the pin.
                self.fetch_unpacked(kind, &packages, Some(&pinned.packages), finish)
                    .map_err(|e| {
                        e.context(format!(
                            "{artifact} (images/kmatrix.lock); to take what the source serves now: \
                             `kmatrix lock accept {artifact}`"
                        ))
                    })?
            }
            None => {
                self.may_add_pin(artifact)?;
                let pins = (!published.is_empty()).then_some(published);
                self.fetch_unpacked(kind, &resolve()?, pins, finish)?
            }
        };
        let origin = fetched
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(" ");
        if locked.as_ref().map(|l| &l.packages) != Some(&fetched) {
            let source = match fetched.first().and_then(|p| p.url.as_deref()) {
                Some(url) => url.to_string(),
                None => self.apt.mirror().to_string(),
            };
            if published.is_empty() {
                self.record_tofu(artifact, fetched, &source)?;
            } else {
                self.record_pin(
                    artifact,
                    fetched,
                    format!(
                        "sha256 given by images/kernels.toml, checked on fetch {} from {source}",
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    ),
                )?;
            }
        }
        Ok((payload, origin))
    }

    /// Drops the cache entry that holds `old`'s bytes of `artifact`, so
    /// that the next fetch takes what the source serves now (`kmatrix lock
    /// accept`). Kinds whose entries are keyed by their digest (images,
    /// modules) need nothing dropped: new bytes get a new entry.
    pub fn forget_cached(&self, artifact: &ArtifactKey, old: &LockedArtifact) -> Result<()> {
        let Some(kind) = unpacked_kind(artifact) else {
            return Ok(());
        };
        let packages: Vec<Package> = old.packages.iter().map(Package::from_locked).collect();
        self.cache.forget(kind, &packages_key(&packages))
    }

    /// Whether a pin may be added for `artifact`: not under `--locked`.
    pub(super) fn may_add_pin(&self, artifact: &ArtifactKey) -> Result<()> {
        if self.locked_only {
            bail!(
                "{artifact} is not pinned in images/kmatrix.lock, and --locked adds no pin: \
                 run once without --locked to pin it (the run prints each new pin)"
            );
        }
        Ok(())
    }

    pub(super) fn record_tofu(
        &self,
        artifact: &ArtifactKey,
        packages: Vec<LockedPackage>,
        source: &str,
    ) -> Result<()> {
        let provenance = format!(
            "trust-on-first-use {} from {source}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        self.record_pin(artifact, packages, provenance)
    }

    /// Records a new pin, and says so in the run's output.
    pub(super) fn record_pin(
        &self,
        artifact: &ArtifactKey,
        packages: Vec<LockedPackage>,
        provenance: String,
    ) -> Result<()> {
        self.may_add_pin(artifact)?;
        self.events.note(format!(
            "note: {artifact}: pinned on first use (new entry in images/kmatrix.lock): {}",
            summary(&packages)
        ));
        self.lock.lock().expect("lock file").record(
            artifact,
            LockedArtifact {
                packages,
                provenance,
            },
        )
    }

    fn fetch_unpacked(
        &self,
        kind: &str,
        packages: &[Package],
        pins: Option<&[LockedPackage]>,
        finish: &dyn Fn(&Path) -> Result<PathBuf>,
    ) -> Result<(PathBuf, Vec<LockedPackage>)> {
        let key = packages_key(packages);
        let payload = self.cache.get_or_make(kind, &key, |dir| {
            let root = dir.join("root");
            let downloads = dir.join("downloads");
            fs::create_dir_all(&downloads)?;
            let mut fetched = Vec::new();
            for package in packages {
                let (file, name, version, url) = match package {
                    Package::Debian(p) => (
                        self.apt.download(p, &downloads)?,
                        p.name.clone(),
                        p.version.clone(),
                        None,
                    ),
                    Package::Url(url) => {
                        let name = url.rsplit('/').next().unwrap_or("package").to_string();
                        let file = downloads.join(&name);
                        fetch::download(url, &file, None, &self.events)?;
                        (file, name, url.clone(), Some(url.clone()))
                    }
                };
                let sha256 = sha256_file(&file)?;
                let pin = pins.and_then(|p| p.iter().find(|p| p.name == name));
                if let Some(pin) = pin.filter(|p| !p.sha256.is_empty()) {
                    if pin.sha256 != sha256 {
                        bail!(
                            "checksum mismatch for {}: the lock file says {}, the download gave {}; \
                             refusing to use it (if upstream really changed, delete the entry from images/kmatrix.lock)",
                            package.describe(), pin.sha256, sha256
                        );
                    }
                }
                archive::unpack(&file, &root)?;
                fetched.push(LockedPackage {
                    name,
                    version,
                    sha256,
                    url,
                    h1: None,
                });
            }
            fs::remove_dir_all(&downloads)?;
            fs::write(dir.join("packages.json"), serde_json::to_vec_pretty(&fetched)?)?;
            Ok(Path::new("root").join(finish(&root)?))
        })?;
        let entry = self.cache.entry_dir(kind, &key);
        let fetched: Vec<LockedPackage> =
            serde_json::from_slice(&fs::read(entry.join("packages.json"))?)
                .context("cache entry lacks packages.json")?;
        // A cached entry is held to the lock too: bytes fetched before the
        // pin changed (a lock edited by hand, a tampered cache) are refused,
        // never re-pinned.
        for got in &fetched {
            let pin = pins
                .unwrap_or_default()
                .iter()
                .find(|p| p.name == got.name && !p.sha256.is_empty());
            if let Some(pin) = pin.filter(|pin| pin.sha256 != got.sha256) {
                bail!(
                    "checksum mismatch for {}={}: the lock file says {}, the cached bytes ({}) are {}; \
                     refusing to use them (if the pin is wrong, restore it with `git checkout images/kmatrix.lock`; \
                     if upstream really changed, delete the entry from images/kmatrix.lock to pin the new bytes)",
                    got.name,
                    got.version,
                    pin.sha256,
                    entry.display(),
                    got.sha256
                );
            }
        }
        Ok((payload, fetched))
    }
}

/// `name=version sha256:abcdef123456…` of each package, for one line.
pub(super) fn summary(packages: &[LockedPackage]) -> String {
    packages
        .iter()
        .map(|p| {
            let digest = p
                .h1
                .clone()
                .unwrap_or_else(|| format!("sha256:{}", p.sha256.get(..12).unwrap_or(&p.sha256)));
            match &p.url {
                Some(_) => format!("{} {digest}", p.name),
                None => format!("{}={} {digest}", p.name, p.version),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn packages_key(packages: &[Package]) -> String {
    sha256_bytes(format!("packages\0{}", describe(packages)).as_bytes())
}
fn describe(packages: &[Package]) -> String {
    packages
        .iter()
        .map(Package::describe)
        .collect::<Vec<_>>()
        .join(" ")
}
