//! Downloads by URL (Ubuntu kernel .debs, CentOS RPMs, kernel.org tarballs):
//! streamed to disk while hashed, with connect and overall deadlines so an
//! unreachable host answers in seconds instead of hanging a run.

use crate::events::Events;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the first byte of a response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence in the middle of a body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a fetch failed, one sentence per cause, so that a user looks for the
/// right thing: a host name that does not resolve, a port nothing listens
/// on, a server that stays silent, a file the server does not have, a full
/// disk. apt's messages and HTTP clients' errors map onto the same words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    Dns { host: String },
    Refused { host: String },
    Timeout { host: String },
    Http { host: String, status: u16 },
    DiskFull { path: String },
    Other(String),
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchFailure::Dns { host } => {
                write!(f, "DNS failure: the name {host} does not resolve")
            }
            FetchFailure::Refused { host } => {
                write!(f, "{host} refused the connection (nothing listens there)")
            }
            FetchFailure::Timeout { host } => write!(f, "{host} did not answer in time"),
            FetchFailure::Http { host, status: 404 } => {
                write!(f, "HTTP 404 from {host}: it has no such file")
            }
            FetchFailure::Http { host, status } => write!(f, "HTTP {status} from {host}"),
            FetchFailure::DiskFull { path } => write!(f, "disk full writing {path}"),
            FetchFailure::Other(what) => f.write_str(what),
        }
    }
}

impl FetchFailure {
    /// The cause in an HTTP client's error.
    pub fn of_http(url: &str, error: &ureq::Error) -> FetchFailure {
        let host = host_of(url);
        match error {
            ureq::Error::StatusCode(status) => FetchFailure::Http {
                host,
                status: *status,
            },
            ureq::Error::HostNotFound => FetchFailure::Dns { host },
            ureq::Error::Timeout(_) => FetchFailure::Timeout { host },
            ureq::Error::ConnectionFailed => FetchFailure::Refused { host },
            ureq::Error::Io(e) => FetchFailure::of_message(&host, &e.to_string())
                .unwrap_or_else(|| FetchFailure::Other(e.to_string())),
            other => FetchFailure::Other(other.to_string()),
        }
    }

    /// The cause named in a tool's message (apt's `Err:` lines, an I/O
    /// error's text), if it names one.
    pub fn of_message(host: &str, message: &str) -> Option<FetchFailure> {
        let host = host.to_string();
        let lower = message.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        Some(
            if has(&[
                "could not resolve",
                "temporary failure resolving",
                "failed to lookup address",
                "name or service not known",
            ]) {
                FetchFailure::Dns { host }
            } else if has(&["connection refused"]) {
                FetchFailure::Refused { host }
            } else if has(&["timed out", "timeout"]) {
                FetchFailure::Timeout { host }
            } else if has(&[" 404 ", "(404 ", "http 404"]) {
                FetchFailure::Http { host, status: 404 }
            } else if has(&["no space left on device"]) {
                FetchFailure::DiskFull { path: host }
            } else {
                return None;
            },
        )
    }

    /// A cause of the network (no answer), as opposed to an answer that
    /// was an error.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            FetchFailure::Dns { .. } | FetchFailure::Refused { .. } | FetchFailure::Timeout { .. }
        )
    }
}

/// `host[:port]` of a URL, for messages.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The error for a failed request: "no network to URL: CAUSE" when nothing
/// answered, "URL: CAUSE" when the server answered with an error.
fn request_error(url: &str, error: &ureq::Error) -> anyhow::Error {
    let failure = FetchFailure::of_http(url, error);
    if failure.is_network() {
        anyhow::anyhow!("no network to {url}: {failure}")
    } else {
        anyhow::anyhow!("{url}: {failure}")
    }
}

/// Whether `url` answers (a HEAD request), without downloading it.
pub fn reachable(url: &str) -> Result<()> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .build(),
    );
    agent
        .head(url)
        .call()
        .map(|_| ())
        .map_err(|e| request_error(url, &e))
}

/// Downloads `url` to `dest` and returns the sha256 of what arrived. When
/// `expected_sha256` is given, a mismatch is an error and `dest` is removed.
/// Headway goes to `events` as progress of the step named by the file name.
pub fn download(
    url: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
    events: &Events,
) -> Result<String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_recv_body(Some(BODY_TIMEOUT))
            .build(),
    );
    let response = agent.get(url).call().map_err(|e| request_error(url, &e))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let label = format!(
        "download {}",
        url.rsplit('/')
            .next()
            .unwrap_or(url)
            .chars()
            .take(60)
            .collect::<String>()
    );
    let mut reader = response.into_body().into_reader();
    let mut file =
        File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("download of {url} broke off"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC) => anyhow::anyhow!(
                    "{url}: {}",
                    FetchFailure::DiskFull {
                        path: dest.display().to_string()
                    }
                ),
                _ => anyhow::anyhow!("cannot write {}: {e}", dest.display()),
            })?;
        received += n as u64;
        events.progress(&label, received, length, "downloading");
    }
    file.sync_all()?;
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected_sha256 {
        if !expected.eq_ignore_ascii_case(&actual) {
            let _ = std::fs::remove_file(dest);
            bail!("checksum mismatch for {url}: expected {expected}, got {actual}");
        }
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// Serves one canned HTTP response on a loopback port.
    fn serve_once(body: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
        });
        format!("http://{addr}/pkg.deb")
    }

    #[test]
    fn downloads_and_checks_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pkg.deb");
        let sha = download(&serve_once(b"package bytes"), &dest, None, &Events::none()).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"package bytes");
        assert_eq!(sha, crate::hashing::sha256_bytes(b"package bytes"));

        let wrong = download(
            &serve_once(b"package bytes"),
            &dest,
            Some("00ff"),
            &Events::none(),
        );
        assert!(format!("{:#}", wrong.unwrap_err()).contains("checksum mismatch"));
        assert!(!dest.exists(), "a mismatching download is not left behind");
    }

    #[test]
    fn an_unreachable_host_fails_fast_naming_the_url() {
        // A port nothing listens on: bind, learn the port, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/linux-image.deb");
        let dir = tempfile::tempdir().unwrap();
        let error = download(&url, &dir.path().join("x"), None, &Events::none()).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains(&format!("no network to {url}")), "{text}");

        let unresolvable = "http://kernel-archive.invalid/linux.deb";
        let error =
            download(unresolvable, &dir.path().join("y"), None, &Events::none()).unwrap_err();
        assert!(format!("{error:#}").contains("no network to http://kernel-archive.invalid"));
    }
}
