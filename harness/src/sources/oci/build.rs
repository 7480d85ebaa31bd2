//! Making an image from files here: a root filesystem folder becomes a
//! one-layer OCI image layout (gzip layer, config with entrypoint, cmd and
//! env), which skopeo copies to a registry or a `docker save` archive, and
//! which kmatrix reads like any other image. Used for images of Debian
//! packages and local binaries, and by the tests to fill a real registry.

use anyhow::{Context, Result};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder, SCHEMA_VERSION,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// What the image runs by default.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `amd64` unless given (tests make images for other architectures).
    pub architecture: Option<String>,
    /// The layer as a plain tar, not gzip'd: for images a TCG guest's
    /// containerd imports (decompressing there costs more than reading).
    pub uncompressed: bool,
}

/// Writes an OCI image layout at `layout` holding `rootfs` as one layer,
/// tagged `tag`; returns the manifest's digest.
pub fn write_layout(rootfs: &Path, spec: &ImageSpec, layout: &Path, tag: &str) -> Result<String> {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    // The layer: a tar of the root, gzip'd; its diff id is the tar's digest.
    let tar_path = layout.join("layer.tar");
    {
        let mut builder = tar::Builder::new(File::create(&tar_path)?);
        builder.follow_symlinks(false);
        // Same files, same digest: no mtimes or owners of this machine in
        // the layer, so an image rebuilt from the same files is the one the
        // cache already holds.
        builder.mode(tar::HeaderMode::Deterministic);
        builder
            .append_dir_all(".", rootfs)
            .with_context(|| format!("cannot archive {}", rootfs.display()))?;
        builder.into_inner()?.flush()?;
    }
    let diff_id = file_digest(&tar_path)?;
    let (layer_path, layer_type) = if spec.uncompressed {
        (tar_path, MediaType::ImageLayer)
    } else {
        let gz_path = layout.join("layer.tar.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz_path)?, flate2::Compression::fast());
        std::io::copy(&mut File::open(&tar_path)?, &mut encoder)?;
        encoder.finish()?.flush()?;
        fs::remove_file(&tar_path)?;
        (gz_path, MediaType::ImageLayerGzip)
    };
    let layer_digest = file_digest(&layer_path)?;
    let layer_size = fs::metadata(&layer_path)?.len();
    fs::rename(&layer_path, blobs.join(hex_of(&layer_digest)))?;

    let mut config = ConfigBuilder::default().env(spec.env.clone());
    if !spec.entrypoint.is_empty() {
        config = config.entrypoint(spec.entrypoint.clone());
    }
    if !spec.cmd.is_empty() {
        config = config.cmd(spec.cmd.clone());
    }
    if let Some(dir) = &spec.working_dir {
        config = config.working_dir(dir.clone());
    }
    let image_config = ImageConfigurationBuilder::default()
        .architecture(match spec.architecture.as_deref() {
            None | Some("amd64") => Arch::Amd64,
            Some(other) => Arch::from(other),
        })
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(RootFsBuilder::default().diff_ids(vec![diff_id]).build()?)
        .build()?;
    let config_bytes = serde_json::to_vec(&image_config)?;
    let config_digest = put_blob(&blobs, &config_bytes)?;

    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            config_digest.parse::<oci_spec::image::Digest>()?,
        ))
        .layers(vec![Descriptor::new(
            layer_type,
            layer_size,
            layer_digest.parse::<oci_spec::image::Digest>()?,
        )])
        .build()?;
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = put_blob(&blobs, &manifest_bytes)?;
    let mut entry = Descriptor::new(
        MediaType::ImageManifest,
        manifest_bytes.len() as u64,
        manifest_digest.parse::<oci_spec::image::Digest>()?,
    );
    entry.set_annotations(Some(HashMap::from([(
        "org.opencontainers.image.ref.name".to_string(),
        tag.to_string(),
    )])));
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .manifests(vec![entry])
        .build()?;
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(manifest_digest)
}

fn put_blob(blobs: &Path, bytes: &[u8]) -> Result<String> {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    fs::write(blobs.join(hex_of(&digest)), bytes)?;
    Ok(digest)
}

fn file_digest(path: &Path) -> Result<String> {
    Ok(format!("sha256:{}", crate::hashing::sha256_file(path)?))
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layer's blob and media type, gzip'd or not as the spec asks.
    fn layer_of(uncompressed: bool) -> (Vec<u8>, String) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hello"), "hello\n").unwrap();
        let layout = dir.path().join("layout");
        let spec = ImageSpec {
            uncompressed,
            ..Default::default()
        };
        let manifest = write_layout(&root, &spec, &layout, "v1").unwrap();
        let blobs = layout.join("blobs/sha256");
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(blobs.join(hex_of(&manifest))).unwrap()).unwrap();
        let layer = &manifest["layers"][0];
        let digest = layer["digest"].as_str().unwrap();
        (
            fs::read(blobs.join(hex_of(digest))).unwrap(),
            layer["mediaType"].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn a_layer_is_gzipd_unless_asked_not_to_be() {
        let (gz, gz_type) = layer_of(false);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(gz_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        let (tar, tar_type) = layer_of(true);
        // A tar's first header names the first entry; ustar magic at 257.
        assert_eq!(&tar[257..262], b"ustar");
        assert_eq!(tar_type, "application/vnd.oci.image.layer.v1.tar");
    }
}
