//! Debian packages through a private apt configuration: its own sources
//! list, package lists and download folder under the cache, so the host's
//! apt state is never touched. Packages are downloaded and unpacked with
//! `dpkg-deb -x`, never installed.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Suites kmatrix can take packages from.
pub const SUITES: &[&str] = &[
    "bullseye",
    "bookworm",
    "bookworm-backports",
    "trixie",
    "trixie-backports",
    "sid",
];
/// Package lists younger than this are not refreshed.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub struct Apt {
    root: PathBuf,
    mirror: String,
    /// Set once `apt-get update` succeeded or failed in this process.
    lists_state: Mutex<Option<Result<(), String>>>,
}

/// One concrete package version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageVersion {
    pub name: String,
    pub version: String,
}

impl Apt {
    /// Uses `$KMATRIX_DEBIAN_MIRROR`, else the Debian mirror the host's own
    /// apt sources name.
    pub fn new(cache_root: &Path) -> Apt {
        let mirror = std::env::var("KMATRIX_DEBIAN_MIRROR")
            .ok()
            .or_else(host_mirror)
            .unwrap_or_default();
        // The host's mirror keeps the original folder; another mirror
        // (KMATRIX_DEBIAN_MIRROR) gets its own sources and lists, so a run
        // against a mirror that does not answer never disturbs the others.
        let root = if std::env::var("KMATRIX_DEBIAN_MIRROR").is_ok()
            && host_mirror().as_deref() != Some(mirror.as_str())
        {
            let hash = crate::hashing::sha256_bytes(mirror.as_bytes());
            cache_root
                .join("apt")
                .join(format!("mirror-{}", &hash[..12]))
        } else {
            cache_root.join("apt")
        };
        Apt {
            root,
            mirror,
            lists_state: Mutex::new(None),
        }
    }

    pub fn mirror(&self) -> &str {
        &self.mirror
    }

    fn options(&self) -> Vec<String> {
        let r = |p: &str| self.root.join(p).to_string_lossy().into_owned();
        [
            format!("Dir::Etc::SourceList={}", r("sources.list")),
            format!("Dir::Etc::SourceParts={}", r("sources.list.d")),
            format!("Dir::Etc::Preferences={}", r("preferences")),
            format!("Dir::Etc::PreferencesParts={}", r("preferences.d")),
            format!("Dir::State::Lists={}", r("lists")),
            format!("Dir::State::status={}", r("status")),
            format!("Dir::Cache={}", r("cache")),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false".into(),
            "APT::Architectures=amd64".into(),
            // An unreachable mirror must answer quickly, not hang a run.
            "Acquire::http::Timeout=20".into(),
            "Acquire::Retries=1".into(),
            "Debug::NoLocking=1".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn write_config(&self) -> Result<()> {
        for dir in [
            "sources.list.d",
            "preferences.d",
            "lists/partial",
            "cache/archives/partial",
        ] {
            fs::create_dir_all(self.root.join(dir))?;
        }
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let sources: String = SUITES
            .iter()
            .map(|suite| format!("deb [signed-by={keyring}] {} {suite} main\n", self.mirror))
            .collect();
        fs::write(self.root.join("sources.list"), sources)?;
        // Backports are pinned low by their Release file; let explicit suites win.
        fs::write(self.root.join("preferences"), "")?;
        if !self.root.join("status").exists() {
            fs::write(self.root.join("status"), "")?;
        }
        Ok(())
    }

    /// Makes sure package lists exist, fetching them at most once per process
    /// and only when older than a day.
    pub fn ensure_lists(&self) -> Result<()> {
        let mut state = self.lists_state.lock().expect("lists lock");
        if let Some(outcome) = state.as_ref() {
            return outcome.clone().map_err(anyhow::Error::msg);
        }
        let outcome = self.refresh_lists_if_stale().map_err(|e| format!("{e:#}"));
        *state = Some(outcome.clone());
        outcome.map_err(anyhow::Error::msg)
    }

    fn refresh_lists_if_stale(&self) -> Result<()> {
        if self.mirror.is_empty() {
            bail!(
                "no Debian mirror known: the host's apt sources name none; set KMATRIX_DEBIAN_MIRROR to a Debian archive URL"
            );
        }
        let _lock = crate::files::FileLock::acquire(&self.root.join("lists.lock"))?;
        self.write_config()?;
        // The stamp names the mirror and suites its lists came from: lists
        // of another mirror say nothing of this one (a mirror that does not
        // answer must be said so, not taken for a package it lacks), and a
        // suite added to SUITES has no lists yet.
        let stamp = self.root.join("lists.stamp");
        let stamped = format!("{}\n{}", self.mirror, SUITES.join(" "));
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE)
            && fs::read_to_string(&stamp).is_ok_and(|m| m == stamped);
        if fresh {
            return Ok(());
        }
        let output = Command::new("apt-get")
            .args(self.options())
            .args(["-q", "update"])
            .output()
            .context("cannot run apt-get (kmatrix needs Debian's apt)")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = text.lines().collect();
        // apt says what failed on an `Err:` line and why on the next one
        // ("  Could not connect to …", "  Temporary failure resolving …").
        let failed = lines.iter().enumerate().find(|(_, l)| {
            l.starts_with("Err:") || l.starts_with("E:") || l.starts_with("W: Failed")
        });
        if !output.status.success() || failed.is_some() {
            let why = match failed {
                Some((i, line)) => match lines.get(i + 1).filter(|n| n.starts_with(' ')) {
                    Some(reason) => format!("{line} ({})", reason.trim()),
                    None => line.to_string(),
                },
                None => "unknown error".into(),
            };
            let host = crate::sources::fetch::host_of(&self.mirror);
            match crate::sources::fetch::FetchFailure::of_message(&host, &why) {
                Some(failure) if failure.is_network() => bail!(
                    "no network to {}: {failure} (apt-get update: {why})",
                    self.mirror
                ),
                Some(failure) => bail!("mirror {}: {failure} (apt-get update: {why})", self.mirror),
                None => bail!(
                    "no network to {}: apt-get update failed: {why}",
                    self.mirror
                ),
            }
        }
        fs::write(stamp, stamped)?;
        Ok(())
    }

    /// Downloads `packages` and everything they depend on, as one Debian
    /// suite would install them on an empty system (apt resolves
    /// alternatives and versions itself), into `dest`; returns the .debs.
    pub fn download_closure(
        &self,
        suite: &str,
        packages: &[String],
        dest: &Path,
    ) -> Result<Vec<PathBuf>> {
        self.ensure_lists()?;
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let sources = self.root.join(format!("sources-{suite}.list"));
        fs::write(
            &sources,
            format!("deb [signed-by={keyring}] {} {suite} main\n", self.mirror),
        )?;
        let empty_status = self.root.join("status-empty");
        fs::write(&empty_status, "")?;
        fs::create_dir_all(dest.join("partial"))?;
        let mut options = self.options();
        for option in options.iter_mut() {
            if option.starts_with("Dir::Etc::SourceList=") {
                *option = format!("Dir::Etc::SourceList={}", sources.display());
            } else if option.starts_with("Dir::State::status=") {
                *option = format!("Dir::State::status={}", empty_status.display());
            }
        }
        let output = Command::new("apt-get")
            .args(options)
            .arg("-o")
            .arg(format!("Dir::Cache::Archives={}", dest.display()))
            .args([
                "-o",
                "APT::Install-Recommends=false",
                "-q",
                "-y",
                "--download-only",
                "install",
            ])
            .args(packages)
            .output()
            .context("cannot run apt-get")?;
        if !output.status.success() {
            bail!(
                "apt-get could not resolve {} in Debian {suite}: {}",
                packages.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let mut debs: Vec<PathBuf> = fs::read_dir(dest)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        debs.sort();
        Ok(debs)
    }

    /// `apt-cache show` for `name` as published in `suite`: the first stanza.
    pub fn show(&self, name: &str, suite: &str) -> Result<String> {
        self.ensure_lists()?;
        let output = Command::new("apt-cache")
            .args(self.options())
            .args(["show", &format!("{name}/{suite}")])
            .output()
            .context("cannot run apt-cache")?;
        if !output.status.success() {
            bail!(
                "package {name} is not in Debian {suite}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.split("\n\n").next().unwrap_or_default().to_string())
    }

    /// The version of `name` that `suite` publishes.
    pub fn resolve(&self, name: &str, suite: &str) -> Result<PackageVersion> {
        let stanza = self.show(name, suite)?;
        let version = field(&stanza, "Version")
            .with_context(|| format!("apt-cache show {name}/{suite} gave no Version"))?;
        Ok(PackageVersion {
            name: name.to_string(),
            version,
        })
    }

    /// Downloads one exact package version into `dest` and returns the .deb.
    pub fn download(&self, package: &PackageVersion, dest: &Path) -> Result<PathBuf> {
        self.ensure_lists()?;
        fs::create_dir_all(dest)?;
        let output = Command::new("apt-get")
            .args(self.options())
            .args([
                "-q",
                "download",
                &format!("{}={}", package.name, package.version),
            ])
            .current_dir(dest)
            .output()
            .context("cannot run apt-get download")?;
        if !output.status.success() {
            bail!(
                "apt-get download {}={} failed: {}",
                package.name,
                package.version,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        fs::read_dir(dest)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "deb")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&package.name))
            })
            .with_context(|| format!("apt-get download left no .deb for {}", package.name))
    }
}

/// The first Debian archive (not the security archive) in the host's apt sources.
fn host_mirror() -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    texts.extend(fs::read_to_string("/etc/apt/sources.list").ok());
    texts.iter().find_map(|text| mirror_in(text))
}

/// Finds a Debian archive URI in a sources file (deb822 or one-line style).
pub fn mirror_in(sources: &str) -> Option<String> {
    sources
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| {
            let words: Vec<&str> = match line.strip_prefix("URIs:") {
                Some(rest) => rest.split_whitespace().collect(),
                None if line.starts_with("deb ") => line
                    .split_whitespace()
                    .filter(|w| w.contains("://"))
                    .collect(),
                None => Vec::new(),
            };
            words.into_iter().map(str::to_string).collect::<Vec<_>>()
        })
        .map(|uri| uri.trim_end_matches('/').to_string())
        .find(|uri| uri.ends_with("/debian"))
}

/// A field of the first deb822 stanza in `text` (folded lines joined).
pub fn field(text: &str, name: &str) -> Option<String> {
    let document: deb822_fast::Deb822 = text.parse().ok()?;
    let stanza = document.iter().next()?;
    stanza.get(name).map(|value| value.trim().to_string())
}

/// Package names in a Depends field, without version constraints or alternatives.
pub fn depends(stanza: &str) -> Vec<String> {
    field(stanza, "Depends")
        .unwrap_or_default()
        .split(',')
        .filter_map(|dep| dep.split('|').next())
        .map(str::trim)
        .filter_map(|dep| dep.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_debian_mirror_in_host_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let one_line = "# deb http://old.example/debian bookworm main\ndeb [arch=amd64] http://m.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            mirror_in("deb https://packages.example/apt stable main\n"),
            None
        );
    }

    #[test]
    fn stanza_fields_and_depends() {
        let stanza = "Package: linux-image-cloud-amd64\nVersion: 6.1.176-1\nDepends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1), a | b\n";
        assert_eq!(field(stanza, "Version").as_deref(), Some("6.1.176-1"));
        assert_eq!(
            depends(stanza),
            vec![
                "linux-image-6.1.0-50-cloud-amd64".to_string(),
                "a".to_string()
            ]
        );
        assert_eq!(field(stanza, "Missing"), None);
        // apt-cache show folds long fields onto continuation lines.
        let folded = "Package: p\nDepends: a (>= 1),\n b,\n c | d\nVersion: 2\n";
        assert_eq!(depends(folded), vec!["a", "b", "c"]);
        assert_eq!(field(folded, "Version").as_deref(), Some("2"));
    }
}
