//! Container images as artifacts: resolved to their linux/amd64 manifest
//! (its digest pinned in the lock, so a moved tag changes nothing until the
//! lock says so), layers fetched once into the cache by digest and
//! re-verified by sha256 on every use, then flattened (whiteouts honoured)
//! into an ext4 file system the guest mounts from a virtio disk — so a
//! multi-gigabyte image never has to fit in guest memory — and kept as a
//! tree a container bind-mounts. Where the user's Docker engine holds the
//! image (or reaches it when kmatrix cannot), the engine is the source.

use super::Provisioner;
use crate::hashing::sha256_bytes;
use crate::ids::ArtifactKey;
use crate::inputs::LockedPackage;
use crate::sources::oci::engine::EngineImage;
use crate::sources::oci::layers;
use crate::sources::oci::reference::{self, ImageSourceRef};
use crate::sources::oci::source::{self, ImageError, ImageSource, ResolvedImage};
use anyhow::{bail, Context, Result};
use oci_spec::image::ImageConfiguration;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An image ready for a guest.
#[derive(Debug, Clone)]
pub struct ImageArtifact {
    /// As the scenario (or `--image`) wrote it.
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
    /// An ext4 file system holding the flattened root (what a guest mounts).
    pub disk: PathBuf,
    /// The flattened root itself (what a container bind-mounts).
    pub root: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// The main program's Go build info, when it is a Go program.
    pub build_info: Option<super::buildinfo::BuildInfo>,
}

/// Bumped when flattening changes, so cached file systems are remade.
/// 4: the flattened tree is kept beside the file system, for containers.
pub(super) const FLATTEN_VERSION: &str = "4";

impl Provisioner<'_> {
    /// The image `reference`, from the cache when its pinned digest is there
    /// (no network then), else from its source. An image out of reach is an
    /// [`ImageError::Unavailable`] inside the error.
    pub fn image(&self, reference_text: &str) -> Result<ImageArtifact> {
        let reference = reference::parse(reference_text).map_err(ImageError::Unavailable)?;
        let artifact = ArtifactKey::Image(reference_text.to_string());
        let pinned = self
            .lock
            .lock()
            .expect("lock file")
            .get(&artifact)
            .and_then(|l| l.packages.first())
            .map(|p| p.version.clone());
        if let Some(digest) = &pinned {
            if let Some(disk) = self.cache.lookup("images", &image_key(digest)) {
                return image_artifact(reference_text, digest, disk);
            }
        }
        if pinned.is_none() {
            self.may_add_pin(&artifact)?;
        }
        let source_ref = match (&reference, &pinned) {
            (ImageSourceRef::Registry(r), Some(digest)) => {
                ImageSourceRef::Registry(r.pinned(digest))
            }
            _ => reference.clone(),
        };
        let label = format!("image {reference_text}");
        let direct = source::open(&source_ref);
        // The user's engine, when it has the image or can pull it.
        let from_engine = match &reference {
            ImageSourceRef::Registry(r) => self
                .engine()
                .ok()
                .map(|e| EngineImage::new(e, &r.engine_name(), pinned.as_deref())),
            ImageSourceRef::Engine(name) => self
                .engine()
                .ok()
                .map(|e| EngineImage::new(e, name, pinned.as_deref())),
            _ => None,
        };
        let (source, resolved, by_engine): (&dyn ImageSource, _, _) = match &from_engine {
            Some(engine) if engine.is_present() => (
                engine,
                self.events
                    .step(&format!("{label}: from the Docker engine"), || {
                        engine.resolve()
                    })?,
                true,
            ),
            _ => match self
                .events
                .step(&format!("{label}: manifest"), || direct.resolve())
            {
                Ok(resolved) => (direct.as_ref(), resolved, false),
                // Out of reach directly: the engine may reach it (a mirror,
                // the user's credentials).
                Err(ImageError::Unavailable(why))
                    if matches!(reference, ImageSourceRef::Registry(_))
                        && from_engine.is_some() =>
                {
                    let engine = from_engine.as_ref().expect("checked");
                    let resolved = self
                        .events
                        .step(&format!("{label}: pulled by the Docker engine"), || {
                            engine.pull().and_then(|_| engine.resolve())
                        })
                        .map_err(|e| ImageError::Unavailable(format!("{why}; {e}")))?;
                    (engine, resolved, true)
                }
                Err(e) => return Err(e.into()),
            },
        };
        if by_engine {
            self.cache.count_from_engine();
        }
        let blobs = self.fetch_layers(&label, source, &resolved)?;
        let disk = self.events.step(&format!("{label}: file system"), || {
            self.cache
                .get_or_make("images", &image_key(&resolved.digest), |dir| {
                    flatten(&resolved, &blobs, dir)
                })
        })?;
        if pinned.is_none() {
            self.record_pin(
                &artifact,
                vec![LockedPackage {
                    name: reference_text.to_string(),
                    version: resolved.digest.clone(),
                    sha256: resolved.digest.trim_start_matches("sha256:").to_string(),
                    url: None,
                    h1: None,
                }],
                format!(
                    "trust-on-first-use {} from {reference_text}",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                ),
            )?;
        }
        image_artifact(reference_text, &resolved.digest, disk)
    }

    /// Each layer blob of `resolved`, fetched into the cache (or found
    /// there, its sha256 checked), base first.
    fn fetch_layers(
        &self,
        label: &str,
        source: &dyn ImageSource,
        resolved: &ResolvedImage,
    ) -> Result<Vec<PathBuf>> {
        let mut blobs = Vec::new();
        for (n, layer) in resolved.layers.iter().enumerate() {
            let hex = layer.digest.trim_start_matches("sha256:").to_string();
            let path = self.events.step(
                &format!("{label}: layer {}/{}", n + 1, resolved.layers.len()),
                || {
                    self.cache.get_or_make("layers", &hex, |dir| {
                        source.fetch_blob(layer, &dir.join("blob"))?;
                        Ok(PathBuf::from("blob"))
                    })
                },
            )?;
            blobs.push(path);
        }
        Ok(blobs)
    }
}

fn image_key(digest: &str) -> String {
    sha256_bytes(format!("image\0{digest}\0{FLATTEN_VERSION}").as_bytes())
}

fn image_artifact(reference: &str, digest: &str, disk: PathBuf) -> Result<ImageArtifact> {
    let config = ImageConfiguration::from_file(disk.with_file_name("config.json"))
        .context("the cached image lacks its config.json")?;
    let run = config.config().clone().unwrap_or_default();
    Ok(ImageArtifact {
        reference: reference.to_string(),
        digest: digest.to_string(),
        root: disk.with_file_name("root"),
        disk,
        entrypoint: run.entrypoint().clone().unwrap_or_default(),
        cmd: run.cmd().clone().unwrap_or_default(),
        env: run.env().clone().unwrap_or_default(),
        working_dir: run.working_dir().clone(),
        build_info: None,
    })
}

/// Applies the layers into `dir/root`, makes `dir/rootfs.ext4` of it, and
/// keeps both, with the image config beside them.
fn flatten(resolved: &ResolvedImage, blobs: &[PathBuf], dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    for blob in blobs {
        layers::apply(blob, &root)?;
    }
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&resolved.config)?,
    )?;
    make_ext4(&root, &dir.join("rootfs.ext4"))?;
    Ok(PathBuf::from("rootfs.ext4"))
}

/// What a pod's `/etc/hosts` says of itself.
pub const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// A Debian closure has no base-files: the merged-/usr links its loader needs.
pub(super) fn merged_usr_links(tree: &Path) -> Result<()> {
    for (link, target) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
    ] {
        if fs::symlink_metadata(tree.join(link)).is_err() && tree.join(target).is_dir() {
            std::os::unix::fs::symlink(target, tree.join(link))?;
        }
    }
    Ok(())
}

/// `mke2fs -d`: an ext4 image of a folder, without mounting anything. The
/// folders a container runtime mounts over are made first: the file system
/// is read-only in the guest, where the runtime could not create them.
pub fn make_ext4(root: &Path, image: &Path) -> Result<()> {
    for dir in ["proc", "sys", "dev", "tmp", "run", "etc"] {
        if fs::symlink_metadata(root.join(dir)).is_err() {
            fs::create_dir_all(root.join(dir))?;
        }
    }
    // The runtime bind-mounts the pod's /etc/hosts here, as a kubelet does.
    if fs::symlink_metadata(root.join("etc/hosts")).is_err() {
        fs::write(root.join("etc/hosts"), HOSTS)?;
    }
    let used = crate::files::tree_size(root);
    // Room for metadata and a little slack; the guest mounts it read-only.
    let megabytes = used / (1 << 20) * 5 / 4 + 32;
    let output = Command::new("mke2fs")
        .args([
            "-q",
            "-t",
            "ext4",
            "-O",
            "^has_journal",
            "-L",
            "kmatrix",
            "-d",
        ])
        .arg(root)
        .arg("-F")
        .arg(image)
        .arg(format!("{megabytes}M"))
        .output()
        .context("cannot run mke2fs (Debian's e2fsprogs)")?;
    if !output.status.success() {
        bail!(
            "mke2fs -d {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
