//! Image references as users write them: `REGISTRY/NAME:TAG`,
//! `NAME@sha256:…`, Docker Hub's short forms (`caddy` is
//! `docker.io/library/caddy:latest`), and the two file transports skopeo
//! spells `docker-archive:PATH` and `oci:DIR[:TAG]`.

use std::fmt;
use std::path::PathBuf;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSourceRef {
    Registry(RegistryRef),
    /// A `docker save` tarball.
    DockerArchive(PathBuf),
    /// An OCI image layout directory, optionally naming one image by its
    /// `org.opencontainers.image.ref.name` annotation.
    OciLayout(PathBuf, Option<String>),
    /// An image in the local Docker engine's store, by the name it knows
    /// (`docker-daemon:NAME[:TAG]`, as skopeo spells it).
    Engine(String),
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `registry-1.docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/caddy`, `kube-vip/kube-vip`.
    pub repository: String,
    /// A tag, when given (`latest` when neither tag nor digest is).
    pub tag: Option<String>,
    /// `sha256:…`, when given.
    pub digest: Option<String>,
}

impl RegistryRef {
    /// The tag or digest to ask the registry for.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same image pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> RegistryRef {
        RegistryRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// Plain HTTP for loopback registries (the reference registry serves
    /// HTTP there); HTTPS everywhere else.
    pub fn base_url(&self) -> String {
        let host = self.registry.split(':').next().unwrap_or_default();
        let scheme = if host == "127.0.0.1" || host == "localhost" || host == "[::1]" {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.registry)
    }
}

impl RegistryRef {
    /// The name a Docker engine knows this image by.
    pub fn engine_name(&self) -> String {
        let registry = if self.registry == "registry-1.docker.io" {
            "docker.io"
        } else {
            &self.registry
        };
        let mut name = format!("{registry}/{}", self.repository);
        if let Some(tag) = &self.tag {
            name = format!("{name}:{tag}");
        }
        if let Some(digest) = &self.digest {
            name = format!("{name}@{digest}");
        }
        name
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses a reference; the error says what a reference looks like.
pub fn parse(text: &str) -> Result<ImageSourceRef, String> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("docker-archive:") {
        return Ok(ImageSourceRef::DockerArchive(PathBuf::from(path)));
    }
    if let Some(name) = text.strip_prefix("docker-daemon:") {
        return Ok(ImageSourceRef::Engine(name.to_string()));
    }
    if let Some(rest) = text.strip_prefix("oci:") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag.to_string())),
            _ => (rest, None),
        };
        return Ok(ImageSourceRef::OciLayout(PathBuf::from(dir), tag));
    }
    let bad = || {
        format!(
            "`{text}` is not an image reference: write REGISTRY/NAME:TAG, NAME@sha256:DIGEST, docker-archive:PATH, oci:DIR[:TAG] or docker-daemon:NAME[:TAG]"
        )
    };
    if text.is_empty() || text.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => {
            let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            (rest, Some(digest.to_string()))
        }
        None => (text, None),
    };
    // A tag follows the last colon after the last slash.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag.to_string())),
        _ => (rest, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let (registry, repository) = if registry == "docker.io" {
        let repository = if repository.contains('/') {
            repository
        } else {
            format!("library/{repository}")
        };
        ("registry-1.docker.io".to_string(), repository)
    } else {
        (registry, repository)
    };
    if repository.is_empty() || repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad());
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(ImageSourceRef::Registry(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> RegistryRef {
        match parse(text).unwrap() {
            ImageSourceRef::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_short_forms_expand() {
        let r = registry("caddy");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.reference()),
            ("registry-1.docker.io", "library/caddy", "latest")
        );
        let r = registry("docker.io/ollama/ollama:0.6.0");
        assert_eq!(
            (r.repository.as_str(), r.reference()),
            ("ollama/ollama", "0.6.0")
        );
    }

    #[test]
    fn registries_ports_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = registry(&format!("127.0.0.1:5000/kmatrix/caddy:2.6.2@{digest}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kmatrix/caddy");
        assert_eq!(r.tag.as_deref(), Some("2.6.2"));
        assert_eq!(r.reference(), digest);
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        assert_eq!(
            registry("ghcr.io/kube-vip/kube-vip:v0.8.5").base_url(),
            "https://ghcr.io"
        );
        assert!(parse("ghcr.io/x@sha256:short").is_err());
        assert!(parse("Upper/Case").is_err());
    }

    #[test]
    fn file_transports() {
        assert_eq!(
            parse("docker-archive:/tmp/x.tar").unwrap(),
            ImageSourceRef::DockerArchive("/tmp/x.tar".into())
        );
        assert_eq!(
            parse("oci:/tmp/layout:v1").unwrap(),
            ImageSourceRef::OciLayout("/tmp/layout".into(), Some("v1".into()))
        );
    }
}
