//! The local Docker engine as an image source: an image it has (or pulls,
//! with its own registry mirrors and the user's credentials) is exported
//! through its API as a `docker save` archive and read like one. So a user
//! behind a mirror, or with an image built only locally, gets the very same
//! image into every guest.

use super::source::{DockerArchive, ImageError, ImageSource, ResolvedImage};
use crate::sources::engine::Engine;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

/// An image by the name the engine knows it by.
pub struct EngineImage<'a> {
    engine: &'a Engine,
    name: String,
    /// The registry digest the caller expects (the lock's pin), if any.
    pinned: Option<String>,
    exported: OnceLock<Result<(tempfile::TempPath, DockerArchive), ImageError>>,
}

impl<'a> EngineImage<'a> {
    pub fn new(engine: &'a Engine, name: &str, pinned: Option<&str>) -> Self {
        EngineImage {
            engine,
            name: name.to_string(),
            pinned: pinned.map(str::to_string),
            exported: OnceLock::new(),
        }
    }

    /// Whether the engine holds the image already (the pinned build of it,
    /// when a digest is pinned): no network is needed then.
    pub fn is_present(&self) -> bool {
        self.identity().is_some()
    }

    /// Asks the engine to pull the image, with the user's credentials for
    /// its registry; its own mirror configuration applies.
    pub fn pull(&self) -> Result<(), ImageError> {
        let (registry, _) = split_registry(&self.name);
        let options = CreateImageOptionsBuilder::default()
            .from_image(&self.name)
            .build();
        let credentials = user_credentials(registry);
        let docker = self.engine.docker();
        self.engine
            .block_on(async {
                let mut progress = docker.create_image(Some(options), None, credentials);
                while let Some(step) = progress.next().await {
                    step?;
                }
                Ok::<_, bollard::errors::Error>(())
            })
            .map_err(|e| {
                ImageError::Unavailable(format!(
                    "the Docker engine could not pull {}: {e}",
                    self.name
                ))
            })
    }

    /// The digest the image is known by: the pinned registry digest when
    /// the engine's copy has it, else the first registry digest it has, else
    /// its image id (an image built locally has no registry digest).
    fn identity(&self) -> Option<String> {
        let docker = self.engine.docker();
        let inspected = self
            .engine
            .block_on(docker.inspect_image(&self.name))
            .ok()?;
        let repo_digests: Vec<String> = inspected
            .repo_digests
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.split_once('@').map(|(_, digest)| digest.to_string()))
            .collect();
        let id = inspected.id.unwrap_or_default();
        match &self.pinned {
            Some(pin) if repo_digests.contains(pin) || *pin == id => Some(pin.clone()),
            Some(_) => None,
            None => repo_digests.into_iter().next().or(Some(id)),
        }
    }

    fn exported(&self) -> Result<&DockerArchive, ImageError> {
        self.exported
            .get_or_init(|| {
                let file = tempfile::Builder::new()
                    .prefix("kmatrix-engine-export-")
                    .suffix(".tar")
                    .tempfile()
                    .map_err(|e| {
                        ImageError::Unavailable(format!("cannot make a temporary file: {e}"))
                    })?;
                let (mut writer, path) = file.into_parts();
                let docker = self.engine.docker();
                self.engine
                    .block_on(async {
                        let mut stream = docker.export_image(&self.name);
                        while let Some(chunk) = stream.next().await {
                            let chunk = chunk.map_err(|e| e.to_string())?;
                            writer.write_all(&chunk).map_err(|e| e.to_string())?;
                        }
                        writer.flush().map_err(|e| e.to_string())
                    })
                    .map_err(|e| {
                        ImageError::Unavailable(format!(
                            "the Docker engine could not export {}: {e}",
                            self.name
                        ))
                    })?;
                let archive = DockerArchive::new(&path);
                Ok((path, archive))
            })
            .as_ref()
            .map(|(_, archive)| archive)
            .map_err(Clone::clone)
    }
}

impl ImageSource for EngineImage<'_> {
    fn resolve(&self) -> Result<ResolvedImage, ImageError> {
        let identity = self.identity().ok_or_else(|| {
            ImageError::Unavailable(match &self.pinned {
                Some(pin) => format!(
                    "the Docker engine has no {} built as {pin} (the lock's pin)",
                    self.name
                ),
                None => format!("the Docker engine has no image {}", self.name),
            })
        })?;
        let mut resolved = self.exported()?.resolve()?;
        // The registry's digest when the engine knows it, so the lock pins
        // the same image whichever source delivered it.
        resolved.digest = identity;
        Ok(resolved)
    }

    fn fetch_blob(&self, blob: &super::source::Blob, dest: &Path) -> Result<(), ImageError> {
        self.exported()?.fetch_blob(blob, dest)
    }
}

/// `registry/rest` → (`registry`, `rest`), Docker Hub for a bare name.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("docker.io", name),
    }
}

/// The user's saved login for `registry`, as the engine takes it.
fn user_credentials(registry: &str) -> Option<DockerCredentials> {
    let login = super::auth::login_for(registry)?;
    Some(DockerCredentials {
        username: Some(login.username),
        password: Some(login.password),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}
