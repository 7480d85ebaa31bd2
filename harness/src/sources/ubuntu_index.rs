//! Ubuntu's archive indexes: a series' kernel packages over its pockets
//! (`dists/<suite>{,-updates,-security}/main/binary-amd64/Packages.gz`),
//! every published version with its sha256, and the newest by dpkg's own
//! ordering. What `kmatrix kernels discover` and `latest:<series>` read.

use super::apt;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

/// One binary package of an Ubuntu index.
#[derive(Debug, Clone)]
pub struct IndexPackage {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub depends: Vec<String>,
    pub pocket: String,
}

/// Kernel packages by name, every published version.
pub type Index = BTreeMap<String, Vec<IndexPackage>>;

/// A series' main/binary-amd64 kernel packages over its pockets, every
/// published version (`newest` picks among them).
pub fn ubuntu_index(archive: &str, suite: &str) -> Result<Index> {
    let mut index: BTreeMap<String, Vec<IndexPackage>> = BTreeMap::new();
    for pocket in [
        suite.to_string(),
        format!("{suite}-updates"),
        format!("{suite}-security"),
    ] {
        let url = format!("{archive}/dists/{pocket}/main/binary-amd64/Packages.gz");
        let text = fetch_gz(&url)?;
        let document: deb822_fast::Deb822 = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{url}: not a Packages index: {e:?}"))?;
        for stanza in document.iter() {
            let (Some(name), Some(version), Some(filename), Some(sha256)) = (
                stanza.get("Package"),
                stanza.get("Version"),
                stanza.get("Filename"),
                stanza.get("SHA256"),
            ) else {
                continue;
            };
            if !name.starts_with("linux-image") && !name.starts_with("linux-modules-") {
                continue;
            }
            index
                .entry(name.to_string())
                .or_default()
                .push(IndexPackage {
                    name: name.to_string(),
                    version: version.to_string(),
                    filename: filename.to_string(),
                    sha256: sha256.to_string(),
                    depends: apt::depends(&format!(
                        "Depends: {}\n",
                        stanza.get("Depends").unwrap_or_default()
                    )),
                    pocket: pocket.clone(),
                });
        }
    }
    Ok(index)
}

/// The newest published version of `name` (dpkg's ordering).
pub fn newest<'a>(
    index: &'a BTreeMap<String, Vec<IndexPackage>>,
    name: &str,
) -> Option<&'a IndexPackage> {
    index.get(name)?.iter().reduce(|best, candidate| {
        if version_greater(&candidate.version, &best.version) {
            candidate
        } else {
            best
        }
    })
}

/// The metapackage's newest version and the kernel ABI it depends on
/// (`6.8.0-149-generic`).
pub fn newest_meta(
    index: &BTreeMap<String, Vec<IndexPackage>>,
    meta: &str,
) -> Option<(String, String)> {
    let package = newest(index, meta)?;
    let abi = package
        .depends
        .iter()
        .find_map(|d| {
            d.strip_prefix("linux-image-")
                .filter(|rest| rest.starts_with(char::is_numeric))
        })?
        .to_string();
    Some((package.version.clone(), abi))
}

/// Debian's version ordering, as dpkg itself decides it.
pub fn version_greater(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

fn fetch_gz(url: &str) -> Result<String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    );
    let response = agent
        .get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("no network to {url}: {e}"))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(response.into_body().into_reader())
        .read_to_string(&mut text)
        .with_context(|| format!("{url} is not a gzip'd index"))?;
    Ok(text)
}
