//! The user's registry logins, read where `docker login` and `podman login`
//! save them (never written anywhere by kmatrix, never in results):
//! `$REGISTRY_AUTH_FILE`, Podman's `$XDG_RUNTIME_DIR/containers/auth.json`,
//! then Docker's `$DOCKER_CONFIG/config.json` (default `~/.docker`). Only
//! the `auths` entries with an `auth` field (base64 `user:password`) are
//! read; a credential helper's logins are the engine's to use.

use std::path::PathBuf;

/// A login for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log or an error message.
        write!(f, "Login({}, ****)", self.username)
    }
}

impl Login {
    /// The `Authorization` header value of HTTP basic authentication.
    pub fn basic(&self) -> String {
        use base64::Engine as _;
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// The files looked in, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(runtime).join("containers/auth.json"));
    }
    let docker = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")));
    if let Some(docker) = docker {
        files.push(docker.join("config.json"));
    }
    files
}

/// The user's login for `registry` (`host[:port]`, or `docker.io`).
pub fn login_for(registry: &str) -> Option<Login> {
    auth_files()
        .iter()
        .filter_map(|file| std::fs::read(file).ok())
        .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .find_map(|config| login_in(&config, registry))
}

/// The login `config`'s `auths` holds for `registry`.
fn login_in(config: &serde_json::Value, registry: &str) -> Option<Login> {
    let auths = config.get("auths")?.as_object()?;
    let hub = [
        "https://index.docker.io/v1/",
        "docker.io",
        "index.docker.io",
    ];
    let entry = auths.iter().find_map(|(key, entry)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let host = host.split('/').next().unwrap_or(host);
        let matches = host == registry
            || (registry == "docker.io" && hub.iter().any(|h| key == h || host == *h));
        matches.then_some(entry)
    })?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.get("auth")?.as_str()?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Login {
        username: username.to_string(),
        password: password.to_string(),
    })
    .filter(|l| !l.username.is_empty())
}

/// `Bearer realm="…",service="…"` → its parameters.
pub(super) fn parse_challenge(
    challenge: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let rest = challenge.trim().strip_prefix("Bearer ")?;
    let mut params = std::collections::BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        params.insert(key.trim().to_string(), value.to_string());
        rest = tail.trim_start_matches([',', ' ']);
    }
    params.contains_key("realm").then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_found_by_host_and_port_and_hidden_in_debug_output() {
        let config = serde_json::json!({"auths": {
            "127.0.0.1:5000": {"auth": "a214OnMzY3JldA=="},
            "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
            "ghcr.io": {"identitytoken": "x"},
        }});
        let login = login_in(&config, "127.0.0.1:5000").unwrap();
        assert_eq!(login.username, "kmx");
        assert_eq!(login.password, "s3cret");
        assert_eq!(login.basic(), "Basic a214OnMzY3JldA==");
        assert!(!format!("{login:?}").contains("s3cret"));
        assert_eq!(login_in(&config, "docker.io").unwrap().username, "hub");
        // A helper's entry (no `auth`) is not a login kmatrix can use.
        assert!(login_in(&config, "ghcr.io").is_none());
        assert!(login_in(&config, "127.0.0.1:5001").is_none());
    }
}
