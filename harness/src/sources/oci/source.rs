//! Where an image's bytes come from: a registry (Docker Hub, GHCR, a
//! mirror, a local reference registry), a `docker save` archive, or an OCI
//! layout directory. Each resolves the linux/amd64 image to its config and
//! ordered layer digests, and hands out blobs; the caller checks every
//! blob's sha256 against its digest.

use super::reference::{ImageSourceRef, RegistryRef};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why an image could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Out of reach here (no network to the registry, no such tag, no
    /// linux/amd64 image): its cells are `unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// The bytes are wrong (a digest mismatch, an unreadable archive): its
    /// cells are `infra-error`.
    #[error("{0}")]
    Damaged(String),
}

/// An image resolved to what kmatrix needs of it.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest's digest (`sha256:…`): what the lock file pins. For a
    /// `docker save` archive, which has no manifest blob, the config's.
    pub digest: String,
    pub config: ImageConfiguration,
    /// Layer blobs, base first.
    pub layers: Vec<Blob>,
}

/// A blob: its digest, and where its source keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:…`: what the bytes must hash to, and the cache key.
    pub digest: String,
    /// The digest again for registries and layouts; the path inside the
    /// tarball for a `docker save` archive.
    locator: String,
}

impl Blob {
    fn by_digest(digest: impl Into<String>) -> Blob {
        let digest = digest.into();
        Blob {
            locator: digest.clone(),
            digest,
        }
    }
}

pub trait ImageSource {
    /// The linux/amd64 image this source names.
    fn resolve(&self) -> Result<ResolvedImage, ImageError>;
    /// Writes `blob` to `dest` and checks its sha256.
    fn fetch_blob(&self, blob: &Blob, dest: &Path) -> Result<(), ImageError>;
}

/// The source a reference names.
pub fn open(reference: &ImageSourceRef) -> Box<dyn ImageSource> {
    match reference {
        ImageSourceRef::Registry(r) => Box::new(Registry::new(r.clone())),
        ImageSourceRef::DockerArchive(path) => Box::new(DockerArchive { path: path.clone() }),
        ImageSourceRef::OciLayout(dir, tag) => Box::new(OciLayout {
            dir: dir.clone(),
            tag: tag.clone(),
        }),
        ImageSourceRef::Engine(name) => Box::new(NoEngine(name.clone())),
    }
}

/// What a `docker-daemon:` reference is where no engine answers (the
/// provisioner uses [`super::engine::EngineImage`] where one does).
struct NoEngine(String);

impl ImageSource for NoEngine {
    fn resolve(&self) -> Result<ResolvedImage, ImageError> {
        Err(ImageError::Unavailable(format!(
            "docker-daemon:{} needs a Docker engine, and none is reachable at {}",
            self.0,
            crate::sources::engine::endpoint()
        )))
    }

    fn fetch_blob(&self, _: &Blob, _: &Path) -> Result<(), ImageError> {
        self.resolve().map(|_| ())
    }
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A registry speaking the OCI distribution API: bearer tokens where it
/// asks for them (Docker Hub, GHCR; with the user's login if there is one,
/// else anonymous), HTTP basic authentication with the user's login where
/// it asks for that (a registry behind htpasswd).
pub struct Registry {
    image: RegistryRef,
    agent: ureq::Agent,
    /// The `Authorization` header once the registry asked for one.
    authorization: std::sync::Mutex<Option<String>>,
}

impl Registry {
    pub fn new(image: RegistryRef) -> Registry {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(5)))
                .timeout_recv_response(Some(Duration::from_secs(20)))
                .timeout_recv_body(Some(Duration::from_secs(60)))
                .build(),
        );
        Registry {
            image,
            agent,
            authorization: std::sync::Mutex::new(None),
        }
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{reference}",
            self.image.base_url(),
            self.image.repository
        )
    }

    /// GETs `url`, answering the registry's challenge once when it asks.
    fn get(&self, url: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, ImageError> {
        for attempt in 0..2 {
            let mut request = self.agent.get(url).header("Accept", accept);
            if let Some(value) = self.authorization.lock().expect("auth").as_ref() {
                request = request.header("Authorization", value);
            }
            let response = request.call().map_err(|e| {
                ImageError::Unavailable(format!(
                    "registry {} unreachable: {e}",
                    self.image.registry
                ))
            })?;
            if response.status() == 401 && attempt == 0 {
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                *self.authorization.lock().expect("auth") = Some(self.answer(&challenge)?);
                continue;
            }
            return Ok(response);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// The `Authorization` value answering a `WWW-Authenticate` challenge:
    /// the user's login for `Basic`, a token for `Bearer`.
    fn answer(&self, challenge: &str) -> Result<String, ImageError> {
        let login = super::auth::login_for(&self.image.registry);
        if challenge.trim_start().starts_with("Basic") {
            return login.map(|l| l.basic()).ok_or_else(|| {
                ImageError::Unavailable(format!(
                    "registry {} wants a login and none is saved for it in {}: `docker login {0}` or `podman login {0}`",
                    self.image.registry,
                    super::auth::auth_files()
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            });
        }
        self.token(challenge, login.as_ref())
            .map(|token| format!("Bearer {token}"))
    }

    /// Answers a `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
    /// challenge: a token, asked for with the login if there is one.
    fn token(
        &self,
        challenge: &str,
        login: Option<&super::auth::Login>,
    ) -> Result<String, ImageError> {
        let params = super::auth::parse_challenge(challenge).ok_or_else(|| {
            ImageError::Unavailable(format!(
                "registry {} wants credentials kmatrix does not have (challenge: {challenge:?}); pull through a Docker engine with your login, or a mirror",
                self.image.registry
            ))
        })?;
        let realm = params.get("realm").cloned().unwrap_or_default();
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(value) = params.get(key) {
                query.push(format!("{key}={}", percent_encode(value)));
            }
        }
        if !params.contains_key("scope") {
            query.push(format!(
                "scope={}",
                percent_encode(&format!("repository:{}:pull", self.image.repository))
            ));
        }
        let url = format!("{realm}?{}", query.join("&"));
        let mut request = self.agent.get(&url);
        if let Some(login) = login {
            request = request.header("Authorization", login.basic());
        }
        let mut response = request.call().map_err(|e| {
            ImageError::Unavailable(format!("token service {realm} unreachable: {e}"))
        })?;
        if response.status() != 200 {
            return Err(ImageError::Unavailable(format!(
                "token service {realm} refused {} token (HTTP {})",
                if login.is_some() {
                    "the saved login a"
                } else {
                    "an anonymous"
                },
                response.status()
            )));
        }
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ImageError::Unavailable(format!("token service {realm}: {e}")))?;
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ImageError::Unavailable(format!("token service {realm}: {e}")))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| ImageError::Unavailable(format!("token service {realm} sent no token")))
    }

    fn manifest_bytes(&self, reference: &str) -> Result<(Vec<u8>, String), ImageError> {
        let mut response = self.get(&self.url("manifests", reference), ACCEPT)?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                return Err(ImageError::Unavailable(format!(
                    "{}: no such tag or image in {} (HTTP 404)",
                    self.image, self.image.registry
                )))
            }
            code => {
                return Err(ImageError::Unavailable(format!(
                    "{}: the registry answered HTTP {code}",
                    self.image
                )))
            }
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|e| ImageError::Unavailable(format!("{}: {e}", self.image)))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(ImageError::Damaged(format!(
                "{}: the registry sent a manifest whose digest is {digest}",
                self.image
            )));
        }
        Ok((bytes, digest))
    }
}

impl ImageSource for Registry {
    fn resolve(&self) -> Result<ResolvedImage, ImageError> {
        let (bytes, digest) = self.manifest_bytes(self.image.reference())?;
        let (bytes, digest) = match pick_amd64(&bytes, &self.image.to_string())? {
            Some(child) => self.manifest_bytes(&child)?,
            None => (bytes, digest),
        };
        let manifest = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| {
            ImageError::Damaged(format!("{}: not an image manifest: {e}", self.image))
        })?;
        let config_digest = manifest.config().digest().to_string();
        let scratch = tempfile::NamedTempFile::new()
            .map_err(|e| ImageError::Damaged(format!("cannot make a temporary file: {e}")))?;
        self.fetch_blob(&Blob::by_digest(config_digest), scratch.path())?;
        let config = read_config(scratch.path(), &self.image.to_string())?;
        Ok(ResolvedImage {
            digest,
            config,
            layers: layer_blobs(&manifest),
        })
    }

    fn fetch_blob(&self, blob: &Blob, dest: &Path) -> Result<(), ImageError> {
        let digest = &blob.digest;
        let mut response = self.get(&self.url("blobs", digest), "*/*")?;
        if response.status() != 200 {
            return Err(ImageError::Unavailable(format!(
                "{}: blob {digest}: HTTP {}",
                self.image,
                response.status()
            )));
        }
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        copy_verified(&mut reader, dest, digest)
    }
}

/// A manifest's layers, base first.
fn layer_blobs(manifest: &ImageManifest) -> Vec<Blob> {
    manifest
        .layers()
        .iter()
        .map(|l| Blob::by_digest(l.digest().to_string()))
        .collect()
}

/// Reads an index (or manifest list): the digest of its linux/amd64 image;
/// `None` when the bytes are a manifest already.
fn pick_amd64(bytes: &[u8], what: &str) -> Result<Option<String>, ImageError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Damaged(format!("{what}: not JSON: {e}")))?;
    if value.get("manifests").is_none() {
        return Ok(None);
    }
    let index = ImageIndex::from_reader(bytes)
        .map_err(|e| ImageError::Damaged(format!("{what}: not an image index: {e}")))?;
    let mut seen = Vec::new();
    for entry in index.manifests() {
        let Some(platform) = entry.platform() else {
            continue;
        };
        let (os, arch) = (
            platform.os().to_string(),
            platform.architecture().to_string(),
        );
        if os == "linux" && arch == "amd64" {
            return Ok(Some(entry.digest().to_string()));
        }
        seen.push(format!("{os}/{arch}"));
    }
    Err(ImageError::Unavailable(format!(
        "{what} has no linux/amd64 image (it has {}); kmatrix boots x86_64 guests",
        if seen.is_empty() {
            "no platform-tagged manifests".to_string()
        } else {
            seen.join(", ")
        }
    )))
}

fn read_config(path: &Path, what: &str) -> Result<ImageConfiguration, ImageError> {
    let config = ImageConfiguration::from_file(path)
        .map_err(|e| ImageError::Damaged(format!("{what}: not an image config: {e}")))?;
    let arch = config.architecture().to_string();
    if arch != "amd64" {
        return Err(ImageError::Unavailable(format!(
            "{what} is a {}/{arch} image; kmatrix boots x86_64 guests",
            config.os()
        )));
    }
    Ok(config)
}

/// Copies `reader` to `dest`, failing (and removing `dest`) unless its
/// sha256 is `digest`.
fn copy_verified(reader: &mut dyn Read, dest: &Path, digest: &str) -> Result<(), ImageError> {
    let expected = digest.strip_prefix("sha256:").ok_or_else(|| {
        ImageError::Damaged(format!("blob {digest}: only sha256 digests are supported"))
    })?;
    let damaged = |e: io::Error| ImageError::Damaged(format!("blob {digest}: {e}"));
    let mut file = File::create(dest).map_err(damaged)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            ImageError::Unavailable(format!("blob {digest}: the download broke off: {e}"))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        io::Write::write_all(&mut file, &buf[..n]).map_err(damaged)?;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        let _ = fs::remove_file(dest);
        return Err(ImageError::Damaged(format!(
            "blob {digest} arrived with sha256 {actual}: refusing it"
        )));
    }
    Ok(())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `docker save` tarball: `manifest.json` names the config and the layers.
pub struct DockerArchive {
    path: PathBuf,
}

impl DockerArchive {
    pub fn new(path: &Path) -> DockerArchive {
        DockerArchive {
            path: path.to_path_buf(),
        }
    }

    fn what(&self) -> String {
        format!("docker-archive:{}", self.path.display())
    }

    /// Calls `found` with the entry named `name` (a path inside the tarball).
    fn with_entry<T>(
        &self,
        name: &str,
        found: impl FnOnce(&mut dyn Read) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let file = File::open(&self.path)
            .map_err(|e| ImageError::Unavailable(format!("{}: cannot open: {e}", self.what())))?;
        let mut archive = tar::Archive::new(file);
        let entries = archive
            .entries()
            .map_err(|e| ImageError::Damaged(format!("{}: {e}", self.what())))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| ImageError::Damaged(format!("{}: {e}", self.what())))?;
            let path = entry
                .path()
                .map_err(|e| ImageError::Damaged(format!("{}: {e}", self.what())))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if path == name {
                return found(&mut entry);
            }
        }
        Err(ImageError::Damaged(format!(
            "{} holds no {name}",
            self.what()
        )))
    }

    /// The archive's manifest: config path and layer paths.
    fn manifest(&self) -> Result<(String, Vec<String>), ImageError> {
        let value: serde_json::Value = self.with_entry("manifest.json", |r| {
            serde_json::from_reader(r)
                .map_err(|e| ImageError::Damaged(format!("{}: manifest.json: {e}", self.what())))
        })?;
        let first = value.get(0).ok_or_else(|| {
            ImageError::Damaged(format!("{}: manifest.json names no image", self.what()))
        })?;
        let config = first["Config"].as_str().unwrap_or_default().to_string();
        let layers = first["Layers"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok((config, layers))
    }

    /// The sha256 of an entry, as a digest.
    fn digest_of(&self, name: &str) -> Result<String, ImageError> {
        self.with_entry(name, |r| {
            let mut hasher = Sha256::new();
            io::copy(r, &mut hasher)
                .map_err(|e| ImageError::Damaged(format!("{}: {name}: {e}", self.what())))?;
            Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
        })
    }
}

impl ImageSource for DockerArchive {
    fn resolve(&self) -> Result<ResolvedImage, ImageError> {
        let (config_path, layer_paths) = self.manifest()?;
        let scratch = tempfile::NamedTempFile::new()
            .map_err(|e| ImageError::Damaged(format!("cannot make a temporary file: {e}")))?;
        let config_blob = Blob {
            digest: self.digest_of(&config_path)?,
            locator: config_path,
        };
        self.fetch_blob(&config_blob, scratch.path())?;
        let config = read_config(scratch.path(), &self.what())?;
        let digest = config_blob.digest;
        let layers = layer_paths
            .into_iter()
            .map(|path| {
                Ok(Blob {
                    digest: self.digest_of(&path)?,
                    locator: path,
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(ResolvedImage {
            digest,
            config,
            layers,
        })
    }

    fn fetch_blob(&self, blob: &Blob, dest: &Path) -> Result<(), ImageError> {
        self.with_entry(&blob.locator, |r| copy_verified(r, dest, &blob.digest))
    }
}

/// An OCI image layout: `index.json` and `blobs/sha256/…`.
pub struct OciLayout {
    dir: PathBuf,
    tag: Option<String>,
}

impl OciLayout {
    fn what(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        self.dir.join("blobs").join(algorithm).join(hex)
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        fs::read(self.blob_path(digest))
            .map_err(|e| ImageError::Damaged(format!("{}: blob {digest}: {e}", self.what())))
    }
}

impl ImageSource for OciLayout {
    fn resolve(&self) -> Result<ResolvedImage, ImageError> {
        let index_path = self.dir.join("index.json");
        let index = ImageIndex::from_file(&index_path).map_err(|e| {
            ImageError::Unavailable(format!("{}: no readable index.json: {e}", self.what()))
        })?;
        let named = |d: &&oci_spec::image::Descriptor| match &self.tag {
            None => true,
            Some(tag) => d
                .annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|name| name == tag),
        };
        let entry = index.manifests().iter().find(named).ok_or_else(|| {
            ImageError::Unavailable(format!(
                "{}: no image tagged {}",
                self.what(),
                self.tag.as_deref().unwrap_or("(any)")
            ))
        })?;
        let mut digest = entry.digest().to_string();
        let mut bytes = self.read_blob(&digest)?;
        if let Some(child) = pick_amd64(&bytes, &self.what())? {
            digest = child;
            bytes = self.read_blob(&digest)?;
        }
        let manifest = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| {
            ImageError::Damaged(format!("{}: not an image manifest: {e}", self.what()))
        })?;
        let config = read_config(
            &self.blob_path(manifest.config().digest().as_ref()),
            &self.what(),
        )?;
        Ok(ResolvedImage {
            digest,
            config,
            layers: layer_blobs(&manifest),
        })
    }

    fn fetch_blob(&self, blob: &Blob, dest: &Path) -> Result<(), ImageError> {
        let digest = &blob.digest;
        let mut file = File::open(self.blob_path(digest))
            .map_err(|e| ImageError::Damaged(format!("{}: blob {digest}: {e}", self.what())))?;
        copy_verified(&mut file, dest, digest)
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
