//! Images from real sources: a reference registry (Debian's
//! `docker-registry`) on 127.0.0.1 filled with skopeo, a `docker save`
//! archive and an OCI layout made the same way — all pulled through the
//! code that pulls from Docker Hub. Layers are cached by digest, verified
//! by sha256, flattened into an ext4 file system; the manifest digest is
//! pinned in the lock; what is out of reach is `unavailable`, quickly.

mod common;

use common::{LocalRegistry, TempProject};
use kmatrix::events::Events;
use kmatrix::provision::Provisioner;
use kmatrix::sources::cache::Cache;
use kmatrix::sources::oci::build::{write_layout, ImageSpec};
use kmatrix::sources::oci::source::ImageError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn skopeo(args: &[&str]) {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("Debian's skopeo (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A small root filesystem and its OCI layout (tag `v1`).
fn layout(dir: &Path, architecture: Option<&str>) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("etc/hello"), "hello from the image\n").unwrap();
    fs::copy("/bin/true", root.join("usr/bin/true")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let layout = dir.join("layout");
    write_layout(
        &root,
        &ImageSpec {
            entrypoint: vec!["/usr/bin/true".into()],
            cmd: vec!["--version".into()],
            env: vec!["PATH=/usr/bin".into()],
            working_dir: Some("/".into()),
            architecture: architecture.map(str::to_string),
        },
        &layout,
        "v1",
    )
    .unwrap();
    layout
}

/// `cat PATH` inside an ext4 image, with debugfs (no mount needed).
fn read_in_ext4(image: &Path, path: &str) -> String {
    let output = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn provision(
    project: &TempProject,
    cache: &Path,
    reference: &str,
) -> (
    anyhow::Result<kmatrix::provision::ImageArtifact>,
    kmatrix_metadata::CacheStats,
) {
    let catalog = project.catalog();
    let cache = Cache::open(cache).unwrap();
    let provisioner = Provisioner::new(&cache, &catalog, false, Events::none()).unwrap();
    let image = provisioner.image(reference);
    (image, cache.stats())
}

fn unavailable(result: anyhow::Result<kmatrix::provision::ImageArtifact>) -> String {
    let error = result.expect_err("the image is out of reach");
    match error.downcast_ref::<ImageError>() {
        Some(ImageError::Unavailable(why)) => why.clone(),
        other => panic!("expected unavailable, got {other:?}: {error:#}"),
    }
}

#[test]
fn a_registry_image_is_pulled_pinned_cached_and_verified() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(dir.path(), None);
    let reference = registry.reference("kmatrix/hello:v1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
    ]);
    let project = TempProject::new();
    let cache = dir.path().join("cache");

    let (image, stats) = provision(&project, &cache, &reference);
    let image = image.unwrap();
    assert!(image.digest.starts_with("sha256:"));
    assert_eq!(image.entrypoint, ["/usr/bin/true"]);
    assert_eq!(
        read_in_ext4(&image.disk, "/etc/hello"),
        "hello from the image\n"
    );
    assert!(stats.made >= 2, "a layer and a file system: {stats:?}");
    let lock = fs::read_to_string(project.root().join("images/kmatrix.lock")).unwrap();
    assert!(
        lock.contains(&format!("image:{reference}")) && lock.contains(&image.digest),
        "{lock}"
    );

    // A second time nothing is downloaded: the registry is gone, the pin and
    // the cache answer.
    drop(registry);
    let (again, stats) = provision(&project, &cache, &reference);
    assert_eq!(again.unwrap().digest, image.digest);
    assert_eq!(stats.made, 0, "{stats:?}");
}

#[test]
fn a_corrupted_cached_layer_is_fetched_again() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(dir.path(), None);
    let reference = registry.reference("kmatrix/hello:v1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
    ]);
    let project = TempProject::new();
    let cache = dir.path().join("cache");
    provision(&project, &cache, &reference).0.unwrap();
    // Damage the cached layer and drop the file system made from it.
    let layers: Vec<PathBuf> = fs::read_dir(cache.join("layers"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("blob"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(layers.len(), 1);
    fs::write(&layers[0], b"not the layer any more").unwrap();
    fs::remove_dir_all(cache.join("images")).unwrap();
    let (image, stats) = provision(&project, &cache, &reference);
    let image = image.unwrap();
    assert_eq!(
        read_in_ext4(&image.disk, "/etc/hello"),
        "hello from the image\n"
    );
    assert_eq!(
        stats.made, 2,
        "the layer fetched again, the file system remade: {stats:?}"
    );
}

#[test]
fn archives_and_layouts_are_sources_too() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(dir.path(), None);
    let archive = dir.path().join("hello.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker-archive:{}:kmatrix/hello:v1", archive.display()),
    ]);
    let project = TempProject::new();
    let cache = dir.path().join("cache");
    for reference in [
        format!("docker-archive:{}", archive.display()),
        format!("oci:{}:v1", layout.display()),
    ] {
        let (image, _) = provision(&project, &cache, &reference);
        let image = image.unwrap_or_else(|e| panic!("{reference}: {e:#}"));
        assert_eq!(
            read_in_ext4(&image.disk, "/etc/hello"),
            "hello from the image\n",
            "{reference}"
        );
        assert_eq!(image.cmd, ["--version"], "{reference}");
    }
}

#[test]
fn out_of_reach_images_are_unavailable_within_seconds() {
    let registry = LocalRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let project = TempProject::new();
    let cache = dir.path().join("cache");

    // Nothing listens on port 1.
    let why = unavailable(provision(&project, &cache, "127.0.0.1:1/kmatrix/hello:v1").0);
    assert!(why.contains("unreachable"), "{why}");

    // A tag the registry never had.
    let why = unavailable(provision(&project, &cache, &registry.reference("kmatrix/hello:nope")).0);
    assert!(why.contains("no such tag"), "{why}");

    // An image for another architecture.
    let arm = layout(&dir.path().join("arm"), Some("arm64"));
    let reference = registry.reference("kmatrix/arm:v1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", arm.display()),
        &format!("docker://{reference}"),
    ]);
    let why = unavailable(provision(&project, &cache, &reference).0);
    assert!(why.contains("arm64") && why.contains("x86_64"), "{why}");
}
