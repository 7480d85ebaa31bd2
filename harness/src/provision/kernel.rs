//! Kernels: packaged ones (Debian through apt, others by URL) unpacked and
//! pinned, and source builds (a tarball + a base config + fragments). The
//! cache slot of each kind is derived in one place, which both fetching and
//! `kernels list`'s "is it cached?" use.

use super::pinning::{packages_key, Package};
use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_file};
use crate::ids::{ArtifactKey, KernelId};
use crate::inputs::catalog::{EnvironmentSource, KernelEntry, KernelSource, KernelTree, Source};
use crate::inputs::LockedPackage;
use crate::sources::{apt, fetch, kbuild};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct KernelArtifact {
    pub id: KernelId,
    pub image: PathBuf,
    /// `/lib/modules/<release>` of a packaged kernel; `None` for a source
    /// build (whatever it needs is built in).
    pub modules: Option<PathBuf>,
    /// `name=version` of the package(s) it came from, or the build's inputs.
    pub origin: String,
    /// What QEMU boots, and how.
    pub boot: BootImage,
}

/// The file QEMU is given as `-kernel`.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub path: PathBuf,
    /// For the boot's log: `vmlinux through its PVH entry`, or why the
    /// compressed image is booted instead.
    pub how: String,
}

impl BootImage {
    /// The kernel image itself (the kernel decompresses itself).
    pub fn compressed(image: &Path, why: &str) -> BootImage {
        BootImage {
            path: image.to_path_buf(),
            how: format!("the compressed image ({why})"),
        }
    }
}

/// The sha256 a catalog entry gives for its by-URL packages (where no index
/// publishes one), as pins of the same shape as the lock file's.
fn publisher_pins(source: &KernelSource) -> Vec<LockedPackage> {
    let KernelSource::PackageUrls { urls } = source else {
        return Vec::new();
    };
    urls.iter()
        .filter_map(|u| {
            Some(LockedPackage {
                name: u.file_name().to_string(),
                version: u.url().to_string(),
                sha256: u.sha256()?.to_string(),
                url: Some(u.url().to_string()),
                h1: None,
            })
        })
        .collect()
}

/// Cache kinds of kernel artifacts.
pub(super) const PACKAGED: &str = "kernels";
pub(super) const SOURCES: &str = "kernel-sources";
const BUILT: &str = "kernels-built";
/// Uncompressed kernels, keyed by the compressed image's sha256.
const PVH: &str = "kernels-pvh";
/// Bumped when the extraction changes, so old results are not reused.
const PVH_VERSION: &str = "1";

impl Provisioner<'_> {
    /// The uncompressed `vmlinux` where it has a PVH entry (extracted once,
    /// kept in the cache), else the compressed image, saying why.
    pub fn boot_image(&self, image: &Path) -> BootImage {
        let made = crate::hashing::sha256_file(image).and_then(|sha| {
            self.cache
                .get_or_make(PVH, &format!("{sha}-{PVH_VERSION}"), |dir| {
                    crate::sources::vmlinux::extract_pvh(image, dir)
                })
        });
        match made {
            Ok(path) if path.file_name().is_some_and(|n| n == "vmlinux") => BootImage {
                path,
                how: "vmlinux through its PVH entry".into(),
            },
            Ok(note) => {
                BootImage::compressed(image, fs::read_to_string(&note).unwrap_or_default().trim())
            }
            Err(e) => BootImage::compressed(image, &format!("extraction failed: {e:#}")),
        }
    }

    /// The kernel `id`, fetched or built (or found in the cache); what QEMU
    /// boots of it is decided when it has cells to run (`add_boot_images`).
    pub fn kernel(&self, id: &KernelId) -> Result<KernelArtifact> {
        let entry = self.catalog.kernel(id);
        let source = match &entry.source {
            Source::Kernel(source) => source,
            // The cluster inside a kernel's guest boots that kernel.
            Source::Environment(EnvironmentSource::GuestKubernetes { kernel }) => {
                return self.kernel(kernel)
            }
            Source::Environment(other) => {
                anyhow::bail!("{id} is {}: no kernel to fetch or build", other.describe())
            }
        };
        let artifact = ArtifactKey::Kernel(id.clone());
        let published = publisher_pins(source);
        let packaged = |resolve: &dyn Fn() -> Result<Vec<Package>>| -> Result<KernelArtifact> {
            let (image, origin) =
                self.pinned_artifact_with(&artifact, resolve, &find_kernel_image, &published)?;
            let root = image
                .ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "root"))
                .expect("kernel payloads live under root/")
                .to_path_buf();
            Ok(KernelArtifact {
                id: id.clone(),
                modules: find_modules_dir(&root, &image),
                boot: BootImage::compressed(&image, "not yet examined"),
                image,
                origin,
            })
        };
        match source {
            KernelSource::DebianPackage { suite, package } => packaged(&|| {
                let stanza = self.apt.show(package, suite)?;
                // A metapackage depends on the real image package; an
                // image package itself depends on no other linux-image.
                let name = apt::depends(&stanza)
                    .into_iter()
                    .find(|d| d.starts_with("linux-image-"))
                    .unwrap_or_else(|| package.clone());
                // Newer Debian splits the image package: the kernel itself is
                // in linux-binary-*, the modules in linux-modules-*.
                let parts = apt::depends(&self.apt.show(&name, suite)?)
                    .into_iter()
                    .filter(|d| d.starts_with("linux-binary-") || d.starts_with("linux-modules-"));
                std::iter::once(name.clone())
                    .chain(parts)
                    .map(|p| Ok(Package::Debian(self.apt.resolve(&p, suite)?)))
                    .collect()
            }),
            KernelSource::PackageUrls { urls } => {
                packaged(&|| Ok(urls.iter().map(|u| Package::Url(u.url().into())).collect()))
            }
            KernelSource::SourceBuild {
                source,
                base_config,
                fragments,
            } => {
                let (tarball, source_origin) = self.kernel_source(source)?;
                let key = self.build_key(entry, &tarball)?;
                let spec = kbuild::BuildSpec {
                    label: entry.id.as_str(),
                    tarball: &tarball,
                    base_config,
                    fragments: self.wanted_config(entry)?,
                };
                let image = self
                    .cache
                    .get_or_make(BUILT, &key, |dir| kbuild::build(&spec, dir, &self.events))?;
                Ok(KernelArtifact {
                    id: id.clone(),
                    boot: BootImage::compressed(&image, "not yet examined"),
                    image,
                    modules: None,
                    origin: format!(
                        "built from {source_origin} ({base_config} + {})",
                        fragments.join(" + ")
                    ),
                })
            }
            KernelSource::LocalImage {
                image,
                modules,
                sha256,
            } => your_image(id, image, modules.as_ref(), sha256),
        }
    }

    /// The source tarball of a kernel source build.
    fn kernel_source(&self, tree: &KernelTree) -> Result<(PathBuf, String)> {
        match tree {
            KernelTree::DebianPackage { suite, package } => self.pinned_artifact(
                &source_key(tree),
                &|| Ok(vec![Package::Debian(self.apt.resolve(package, suite)?)]),
                &|root| {
                    let src = root.join("usr/src");
                    fs::read_dir(&src)
                        .with_context(|| format!("{package} has no /usr/src"))?
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
                        .map(|p| p.strip_prefix(root).expect("under root").to_path_buf())
                        .with_context(|| format!("{package} has no /usr/src/*.tar.xz"))
                },
            ),
            KernelTree::Url { url } => {
                let artifact = source_key(tree);
                let pinned = self.lock.lock().expect("lock file").get(&artifact).cloned();
                let expected = pinned
                    .as_ref()
                    .and_then(|l| l.packages.first())
                    .map(|p| p.sha256.clone())
                    .filter(|s| !s.is_empty());
                let name = url
                    .rsplit('/')
                    .next()
                    .unwrap_or("source.tar.xz")
                    .to_string();
                let tarball = self
                    .cache
                    .get_or_make(SOURCES, &url_source_key(url), |dir| {
                        fetch::download(url, &dir.join(&name), expected.as_deref(), &self.events)?;
                        Ok(PathBuf::from(&name))
                    })?;
                if expected.is_none() {
                    self.record_tofu(
                        &artifact,
                        vec![LockedPackage {
                            name,
                            version: url.clone(),
                            sha256: sha256_file(&tarball)?,
                            url: Some(url.clone()),
                            h1: None,
                        }],
                        url,
                    )?;
                }
                Ok((tarball, url.clone()))
            }
        }
    }

    /// Whether a kernel is in the cache, intact, as the lock file pins it;
    /// fetches and builds nothing. Its cache slots are derived by the same
    /// functions [`Provisioner::kernel`] uses.
    pub fn kernel_is_cached(&self, id: &KernelId) -> Result<bool> {
        let entry = self.catalog.kernel(id);
        let lock = self.lock_snapshot();
        let locked_slot = |artifact: &ArtifactKey| {
            lock.get(artifact).map(|l| {
                packages_key(
                    &l.packages
                        .iter()
                        .map(Package::from_locked)
                        .collect::<Vec<_>>(),
                )
            })
        };
        let source = match &entry.source {
            Source::Kernel(source) => source,
            Source::Environment(environment) => return self.environment_is_cached(environment),
        };
        Ok(match source {
            KernelSource::DebianPackage { .. } | KernelSource::PackageUrls { .. } => {
                locked_slot(&ArtifactKey::Kernel(id.clone()))
                    .and_then(|key| self.cache.lookup(PACKAGED, &key))
                    .is_some()
            }
            // The user's own file: nothing to fetch.
            KernelSource::LocalImage { image, .. } => image.is_file(),
            KernelSource::SourceBuild { source, .. } => {
                let tarball = match source {
                    KernelTree::DebianPackage { .. } => locked_slot(&source_key(source))
                        .and_then(|key| self.cache.lookup(SOURCES, &key)),
                    KernelTree::Url { url } => self.cache.lookup(SOURCES, &url_source_key(url)),
                };
                match tarball {
                    Some(tarball) => self
                        .cache
                        .lookup(BUILT, &self.build_key(entry, &tarball)?)
                        .is_some(),
                    None => false,
                }
            }
        })
    }

    /// Whether a kernel could be had here now, without fetching it:
    /// `Ok(how)` or `Err(why not)`.
    pub fn kernel_availability(&self, id: &KernelId) -> Result<String, String> {
        if self.kernel_is_cached(id).unwrap_or(false) {
            return Ok("cached".into());
        }
        let source = match &self.catalog.kernel(id).source {
            Source::Kernel(source) => source,
            Source::Environment(environment) => return self.environment_availability(environment),
        };
        match source {
            KernelSource::DebianPackage { suite, .. } => self
                .apt
                .ensure_lists()
                .map(|_| format!("fetchable from Debian {suite}"))
                .map_err(|e| format!("{e:#}")),
            KernelSource::PackageUrls { urls } => urls
                .iter()
                .try_for_each(|url| fetch::reachable(url.url()))
                .map(|_| "fetchable by URL".to_string())
                .map_err(|e| format!("{e:#}")),
            KernelSource::SourceBuild { .. } => kbuild::check_build_tools()
                .and_then(|_| self.apt.ensure_lists())
                .map(|_| "to be built from source (about 6 minutes on 2 cores)".to_string())
                .map_err(|e| format!("{e:#}")),
            KernelSource::LocalImage { image, .. } => Err(format!("{} is gone", image.display())),
        }
    }

    /// The config options a source build's fragments ask for, merged.
    fn wanted_config(&self, entry: &KernelEntry) -> Result<kbuild::ConfigOptions> {
        let Source::Kernel(KernelSource::SourceBuild { fragments, .. }) = &entry.source else {
            return Ok(Default::default());
        };
        let texts = fragments
            .iter()
            .map(|name| {
                let path = self.catalog.dir.join(name);
                fs::read_to_string(&path).with_context(|| {
                    format!(
                        "kernel {}: cannot read fragment {} (paths are relative to images/)",
                        entry.id,
                        path.display()
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(kbuild::merge_fragments(&texts))
    }

    /// The cache key of a source-built kernel from `tarball`.
    fn build_key(&self, entry: &KernelEntry, tarball: &Path) -> Result<String> {
        let Source::Kernel(KernelSource::SourceBuild { base_config, .. }) = &entry.source else {
            anyhow::bail!("kernel {} is not built from source", entry.id);
        };
        // The cache checked the tarball's sha256 when it handed it out: its
        // manifest's record is that hash, so the tarball is read once, not twice.
        let source_sha = match self.cache.recorded_sha256(tarball) {
            Some(sha) => sha,
            None => sha256_file(tarball)?,
        };
        Ok(build_key(
            &source_sha,
            base_config,
            &self.wanted_config(entry)?,
        ))
    }
}

/// A kernel image the user gave, checked to be the one the run planned
/// (the file may have been rebuilt since: its cells' ids name the image
/// that was planned).
fn your_image(
    id: &KernelId,
    image: &Path,
    modules: Option<&PathBuf>,
    sha256: &str,
) -> Result<KernelArtifact> {
    let now = sha256_file(image)?;
    anyhow::ensure!(
        now == sha256,
        "{} changed since the run was planned (sha256 {sha256}, now {now}); run again to plan it anew",
        image.display()
    );
    Ok(KernelArtifact {
        id: id.clone(),
        boot: BootImage::compressed(image, "not yet examined"),
        image: image.to_path_buf(),
        modules: modules.cloned(),
        origin: format!("your image {} (sha256 {})", image.display(), &sha256[..16]),
    })
}

/// The lock file's key of a kernel source tarball.
fn source_key(tree: &KernelTree) -> ArtifactKey {
    match tree {
        KernelTree::DebianPackage { package, .. } => ArtifactKey::KernelSource(package.clone()),
        KernelTree::Url { url } => ArtifactKey::KernelSource(url.clone()),
    }
}

/// The cache key of a tarball fetched by URL.
fn url_source_key(url: &str) -> String {
    sha256_bytes(format!("url\0{url}").as_bytes())
}

/// A built kernel is keyed by its source, base config, merged fragments and compiler.
fn build_key(source_sha256: &str, base_config: &str, wanted: &kbuild::ConfigOptions) -> String {
    sha256_bytes(
        format!(
            "kernel-build\0{source_sha256}\0{base_config}\0{}\0{}",
            kbuild::render(wanted),
            kbuild::compiler_identity()
        )
        .as_bytes(),
    )
}

/// `lib/modules/<release>` (or `usr/lib/modules`) matching the image's release.
fn find_modules_dir(root: &Path, image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_string_lossy().into_owned();
    let release = match name.strip_prefix("vmlinuz-") {
        Some(release) => release.to_string(),
        // usr/lib/modules/<release>/vmlinuz
        None => image.parent()?.file_name()?.to_string_lossy().into_owned(),
    };
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|base| root.join(base).join(&release))
        .find(|dir| dir.join("modules.dep").is_file() || dir.join("kernel").is_dir())
}

/// The kernel image in an unpacked package: /boot/vmlinuz-<release>, or
/// (newer Debian) /usr/lib/modules/<release>/vmlinuz.
fn find_kernel_image(root: &Path) -> Result<PathBuf> {
    let in_boot = fs::read_dir(root.join("boot"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        });
    let in_modules = || {
        ["usr/lib/modules", "lib/modules"].iter().find_map(|base| {
            fs::read_dir(root.join(base))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path().join("vmlinuz"))
                .find(|p| p.is_file())
        })
    };
    let image = in_boot.or_else(in_modules).context(
        "the package has no kernel image (/boot/vmlinuz-* or /usr/lib/modules/*/vmlinuz)",
    )?;
    Ok(image.strip_prefix(root).expect("under root").to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_kernel_is_keyed_by_what_its_fragments_ask_for() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("linux.tar.xz");
        fs::write(&tarball, b"source").unwrap();
        let key = |fragments: &[&str]| {
            let texts: Vec<String> = fragments.iter().map(|f| f.to_string()).collect();
            let sha = sha256_file(&tarball).unwrap();
            build_key(&sha, "tinyconfig", &kbuild::merge_fragments(&texts))
        };
        let base = key(&["CONFIG_NET=y\n", "CONFIG_MPTCP=y\n"]);
        assert_eq!(
            base,
            key(&["# a comment\nCONFIG_NET=y\n", "CONFIG_MPTCP=y\n"])
        );
        assert_ne!(
            base,
            key(&["CONFIG_NET=y\n", "# CONFIG_MPTCP is not set\n"])
        );
        fs::write(&tarball, b"other source").unwrap();
        assert_ne!(base, key(&["CONFIG_NET=y\n", "CONFIG_MPTCP=y\n"]));
    }
}
