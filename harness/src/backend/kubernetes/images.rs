//! The images a cluster's node runs, as OCI archives it imports without a
//! registry: a version's real image (flattened root and config as kmatrix
//! resolved and pinned it, plus the probe pods' driver), a stand-in's one
//! static binary, and the pause program.

use crate::backend::Workload;
use crate::plan::IMAGE_REPRODUCER;
use crate::sources::oci::build::{write_layout, ImageSpec};
use anyhow::{Context, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The workload's image as an OCI archive in `dir`, named after its
/// namespace: the version's real image, else its reproducer alone.
pub fn workload_image(work: &Workload, dir: &Path) -> Result<std::path::PathBuf> {
    let archive = dir.join(format!("{}.tar", work.kube.namespace));
    if let Some(real) = &work.real_image {
        real_image_archive(real, work.reproducer.as_deref(), &work.kube.image, &archive)?;
        return Ok(archive);
    }
    let binary = work
        .reproducer
        .as_ref()
        .context("this version has no reproducer binary to make its image from")?;
    one_binary_image(binary, IMAGE_REPRODUCER, &work.kube.image, &archive)?;
    Ok(archive)
}

/// The version's real image as an OCI archive tagged `reference`: its
/// flattened root, entrypoint, command, environment and working folder as
/// kmatrix resolved (and pinned) it, plus the probe pods' driver at
/// [`IMAGE_REPRODUCER`] (a file the component never looks at).
fn real_image_archive(
    real: &crate::provision::ImageArtifact,
    driver: Option<&Path>,
    reference: &str,
    archive: &Path,
) -> Result<()> {
    let work = tempfile::tempdir_in(archive.parent().unwrap_or(Path::new(".")))?;
    let root = work.path().join("root");
    fs::create_dir_all(&root)?;
    crate::files::copy_preserving(&real.root, &root)?;
    if let Some(driver) = driver {
        place(driver, &root, IMAGE_REPRODUCER)?;
    }
    let spec = ImageSpec {
        entrypoint: real.entrypoint.clone(),
        cmd: real.cmd.clone(),
        env: real.env.clone(),
        working_dir: real.working_dir.clone(),
        uncompressed: true,
        ..Default::default()
    };
    archive_of(&root, &spec, reference, archive, work.path())
}

/// `root` as a one-layer OCI layout (in `scratch`), tarred into `archive`.
fn archive_of(
    root: &Path,
    spec: &ImageSpec,
    reference: &str,
    archive: &Path,
    scratch: &Path,
) -> Result<()> {
    let layout = scratch.join("layout");
    write_layout(root, spec, &layout, reference)?;
    let mut builder = tar::Builder::new(File::create(archive)?);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(".", &layout)?;
    builder.into_inner()?.flush()?;
    Ok(())
}

/// An OCI image archive of one static binary at `path_in_image` (and an
/// empty /tmp), tagged `reference`: what a node imports without a registry.
pub fn one_binary_image(
    binary: &Path,
    path_in_image: &str,
    reference: &str,
    archive: &Path,
) -> Result<()> {
    let work = tempfile::tempdir_in(archive.parent().unwrap_or(Path::new(".")))?;
    let root = work.path().join("root");
    place(binary, &root, path_in_image)?;
    fs::create_dir_all(root.join("tmp"))?;
    let spec = ImageSpec {
        entrypoint: vec![path_in_image.to_string()],
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        uncompressed: true,
        ..Default::default()
    };
    archive_of(&root, &spec, reference, archive, work.path())
}

/// Copies `file` into the image's `root` at `path_in_image`.
fn place(file: &Path, root: &Path, path_in_image: &str) -> Result<()> {
    let target = root.join(path_in_image.trim_start_matches('/'));
    fs::create_dir_all(target.parent().expect("a path with a folder"))?;
    fs::copy(file, &target)
        .with_context(|| format!("cannot copy {} into the image", file.display()))?;
    Ok(())
}
