//! `kmatrix kernels discover`: what the archives publish now. Ubuntu's
//! `dists/<suite>{,-updates,-security}/main/binary-amd64/Packages.gz` are read
//! for each series' GA and HWE metapackages; Debian's suites through the
//! private apt config. Per series: the newest build, and whether the catalog
//! has it. `--write` adds (or bumps) catalog entries with the archive's own
//! sha256 of each package pinned in the lock.

use crate::ids::{ArtifactKey, KernelId};
use crate::inputs::catalog::KERNELS_FILE;
use crate::inputs::{Catalog, KernelSource, LockedArtifact, LockedPackage, Source};
use crate::sources::apt::{self, Apt};
use crate::sources::ubuntu_index::{
    newest, newest_meta, ubuntu_index, version_greater, Index, IndexPackage,
};
use crate::Project;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

const UBUNTU: &str = "http://archive.ubuntu.com/ubuntu";

/// An Ubuntu release and the metapackages that track its kernels.
struct UbuntuSeries {
    release: &'static str,
    suite: &'static str,
    /// (flavour, metapackage): GA, then HWE.
    tracks: &'static [(&'static str, &'static str)],
}

const UBUNTU_SERIES: &[UbuntuSeries] = &[
    UbuntuSeries {
        release: "16.04",
        suite: "xenial",
        tracks: &[
            ("ga", "linux-image-generic"),
            ("hwe", "linux-image-generic-hwe-16.04"),
        ],
    },
    UbuntuSeries {
        release: "18.04",
        suite: "bionic",
        tracks: &[
            ("ga", "linux-image-generic"),
            ("hwe", "linux-image-generic-hwe-18.04"),
        ],
    },
    UbuntuSeries {
        release: "20.04",
        suite: "focal",
        tracks: &[
            ("ga", "linux-image-generic"),
            ("hwe", "linux-image-generic-hwe-20.04"),
        ],
    },
    UbuntuSeries {
        release: "22.04",
        suite: "jammy",
        tracks: &[
            ("ga", "linux-image-generic"),
            ("hwe", "linux-image-generic-hwe-22.04"),
        ],
    },
    UbuntuSeries {
        release: "24.04",
        suite: "noble",
        tracks: &[
            ("ga", "linux-image-generic"),
            ("hwe", "linux-image-generic-hwe-24.04"),
        ],
    },
];

const DEBIAN_SUITES: &[&str] = &[
    "bullseye",
    "bookworm",
    "bookworm-backports",
    "trixie",
    "sid",
];

/// The newest build a series track publishes.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// `ubuntu-22.04-hwe`, `debian-bookworm`.
    pub id: String,
    /// What the archive calls it: `6.8.0-149-generic (jammy-updates)`.
    pub build: String,
    /// `6.8`.
    pub version: String,
    /// The packages (Ubuntu: image and modules by URL, with sha256).
    pub packages: Vec<LockedPackage>,
    /// The catalog entry that already names exactly this build, if any.
    pub in_catalog: Option<String>,
    /// The catalog entry with this id (to bump), if any.
    pub same_id: bool,
}

pub fn discover(project: &Project, cache_root: &Path) -> Result<Vec<Discovered>> {
    discover_in(project, cache_root, &|_| true)
}

/// `discover`, reading only the series (Ubuntu codename or Debian suite)
/// `wanted` accepts.
fn discover_in(
    project: &Project,
    cache_root: &Path,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Discovered>> {
    let catalog = project.catalog()?;
    let mut found = Vec::new();
    let indexes: Vec<(&UbuntuSeries, Index)> = UBUNTU_SERIES
        .iter()
        .filter(|series| wanted(series.suite))
        .map(|series| Ok((series, ubuntu_index(UBUNTU, series.suite)?)))
        .collect::<Result<_>>()?;
    for (series, index) in &indexes {
        for (flavour, meta) in series.tracks {
            let Some((version, abi)) = newest_meta(index, meta) else {
                continue;
            };
            let image = format!("linux-image-unsigned-{abi}");
            let modules = format!("linux-modules-{abi}");
            let (Some(image), Some(modules)) = (newest(index, &image), newest(index, &modules))
            else {
                continue;
            };
            let packages = pins(&[image, modules]);
            let id = format!("ubuntu-{}-{flavour}", series.release);
            found.push(Discovered {
                in_catalog: catalog_with_urls(&catalog, &packages),
                same_id: catalog.kernels.contains_key(id.as_str()),
                id,
                build: format!("{abi} ({}, {meta} {version})", image.pocket),
                version: abi.split('.').take(2).collect::<Vec<_>>().join("."),
                packages,
            });
        }
    }
    let apt = Apt::new(cache_root);
    found.extend(ubuntu_lines(&catalog, &indexes, &found));
    for suite in DEBIAN_SUITES.iter().filter(|suite| wanted(suite)) {
        let Ok(stanza) = apt.show("linux-image-cloud-amd64", suite) else {
            continue;
        };
        let Some(image) = apt::depends(&stanza)
            .into_iter()
            .find(|d| d.starts_with("linux-image-"))
        else {
            continue;
        };
        let version = apt::field(&stanza, "Version").unwrap_or_default();
        let tracked = catalog.kernels.values().find(|k| {
            matches!(&k.source, Source::Kernel(KernelSource::DebianPackage { suite: s, package }) if s == suite && package == "linux-image-cloud-amd64")
        });
        found.push(Discovered {
            id: format!("debian-{suite}"),
            build: format!("{image} ({suite}, linux-image-cloud-amd64 {version})"),
            version: image
                .trim_start_matches("linux-image-")
                .split('.')
                .take(2)
                .collect::<Vec<_>>()
                .join("."),
            packages: Vec::new(),
            // A Debian entry names the metapackage: it always takes the newest.
            in_catalog: tracked.map(|k| format!("{} (follows the metapackage)", k.id)),
            same_id: false,
        });
    }
    Ok(found)
}

/// The kernel lines a series carried besides the ones its GA and HWE
/// metapackages track now: every `linux-image-unsigned-X.Y.*-generic` in
/// its indexes, newest build per X.Y (focal's HWE 5.8, 5.11 and 5.13;
/// jammy's 5.19, 6.2 and 6.5; noble's 6.11, 6.14 ...). Their ids are
/// `ubuntu-<release>-hwe-<X.Y>`.
fn ubuntu_lines(
    catalog: &Catalog,
    indexes: &[(&UbuntuSeries, Index)],
    tracked: &[Discovered],
) -> Vec<Discovered> {
    let mut found = Vec::new();
    for (series, index) in indexes {
        let prefix = format!("ubuntu-{}-", series.release);
        let tracked_lines: Vec<&str> = tracked
            .iter()
            .filter(|d| d.id.starts_with(&prefix))
            .map(|d| d.version.as_str())
            .collect();
        let mut newest_per_line: BTreeMap<String, (&IndexPackage, String)> = BTreeMap::new();
        for name in index.keys() {
            let Some(abi) = name
                .strip_prefix("linux-image-unsigned-")
                .filter(|abi| abi.ends_with("-generic"))
            else {
                continue;
            };
            let line = abi.split('.').take(2).collect::<Vec<_>>().join(".");
            if tracked_lines.contains(&line.as_str()) {
                continue;
            }
            let Some(image) = newest(index, name) else {
                continue;
            };
            let newer = newest_per_line
                .get(&line)
                .is_none_or(|(best, _)| version_greater(&image.version, &best.version));
            if newer {
                newest_per_line.insert(line, (image, abi.to_string()));
            }
        }
        let mut lines: Vec<_> = newest_per_line.into_iter().collect();
        lines.sort_by_key(|(line, _)| crate::report::model::kernel_version_key(line));
        for (line, (image, abi)) in lines {
            let Some(modules) = newest(index, &format!("linux-modules-{abi}")) else {
                continue;
            };
            let packages = pins(&[image, modules]);
            let id = format!("ubuntu-{}-hwe-{line}", series.release);
            found.push(Discovered {
                in_catalog: catalog_with_urls(catalog, &packages),
                same_id: catalog.kernels.contains_key(id.as_str()),
                id,
                build: format!("{abi} ({}, {})", image.pocket, image.version),
                version: line,
                packages,
            });
        }
    }
    found
}

/// By-URL pins of Ubuntu packages, named as by-URL pins name a package:
/// by file name.
fn pins(packages: &[&IndexPackage]) -> Vec<LockedPackage> {
    packages
        .iter()
        .map(|p| LockedPackage {
            name: p.filename.rsplit('/').next().unwrap_or(&p.name).to_string(),
            version: format!("{UBUNTU}/{}", p.filename),
            sha256: p.sha256.clone(),
            url: Some(format!("{UBUNTU}/{}", p.filename)),
            h1: None,
        })
        .collect()
}

/// The prefix of a kernel selector that means "the newest build of".
pub const LATEST: &str = "latest:";

/// Resolves `latest:<series>` selectors to catalog ids: the archive's newest
/// build of that series is looked up now, and where the catalog's entry
/// names an older one it is bumped (catalog and lock, as `--write` does), so
/// the run, its results and its reports name the exact build verified.
/// `<series>`: `ubuntu-jammy` (the GA kernel), `ubuntu-jammy-hwe`, any
/// id `kernels discover` lists (`ubuntu-22.04-hwe-6.5`), or `debian-<suite>`.
/// Returns the ids and one line per selector saying what it became.
pub fn resolve_latest(
    project: &Project,
    cache_root: &Path,
    kernels: &[String],
) -> Result<(Vec<String>, Vec<String>)> {
    let mut ids = Vec::new();
    let mut said = Vec::new();
    for given in kernels {
        let Some(series) = given.strip_prefix(LATEST) else {
            ids.push(given.clone());
            continue;
        };
        let (track, suite) = latest_track(series);
        let found = discover_in(project, cache_root, &|s| s == suite)?;
        let Some(newest) = found.iter().find(|d| d.id == track) else {
            let known: Vec<String> = UBUNTU_SERIES
                .iter()
                .flat_map(|s| {
                    [
                        format!("ubuntu-{}", s.suite),
                        format!("ubuntu-{}-hwe", s.suite),
                    ]
                })
                .chain(DEBIAN_SUITES.iter().map(|s| format!("debian-{s}")))
                .collect();
            bail!(
                "--kernel {given}: the archives publish no series `{series}` here (use latest: with one of {}, or an id `kmatrix kernels discover` lists)",
                known.join(", ")
            );
        };
        let id = match &newest.in_catalog {
            // "debian-6.1 (follows the metapackage)" names the entry first.
            Some(entry) => entry.split(' ').next().unwrap_or(entry).to_string(),
            None if newest.packages.is_empty() => bail!(
                "--kernel {given}: the catalog has no entry following {}; add one with `kmatrix kernels discover --write`",
                newest.id
            ),
            None => {
                write(project, std::slice::from_ref(newest))?;
                newest.id.clone()
            }
        };
        said.push(format!("{given} = {id}: {}", newest.build));
        ids.push(id);
    }
    Ok((ids, said))
}

/// The discover id and the series to read for a `latest:` selector.
fn latest_track(series: &str) -> (String, &'static str) {
    for s in UBUNTU_SERIES {
        let codename = format!("ubuntu-{}", s.suite);
        if series == codename {
            return (format!("ubuntu-{}-ga", s.release), s.suite);
        }
        if series == format!("{codename}-hwe") {
            return (format!("ubuntu-{}-hwe", s.release), s.suite);
        }
        if series.starts_with(&format!("ubuntu-{}-", s.release)) {
            return (series.to_string(), s.suite);
        }
    }
    for suite in DEBIAN_SUITES {
        if series == format!("debian-{suite}") {
            return (series.to_string(), suite);
        }
    }
    (series.to_string(), "")
}

/// Adds a catalog entry (or bumps the one with the same id) for each Ubuntu
/// build the catalog lacks, and pins its packages from the archive's index.
pub fn write(project: &Project, discovered: &[Discovered]) -> Result<Vec<String>> {
    let kernels_path = project.images_dir().join(KERNELS_FILE);
    let mut text = fs::read_to_string(&kernels_path)?;
    let mut lock = crate::inputs::Lock::load(&project.images_dir())?;
    let catalog = project.catalog()?;
    let mut written = Vec::new();
    for found in discovered
        .iter()
        .filter(|d| d.in_catalog.is_none() && d.packages.is_empty())
    {
        // A Debian suite the catalog lacks: an entry following its cloud
        // metapackage (pinned at its first fetch, like the other Debian kernels).
        let Some(suite) = found.id.strip_prefix("debian-") else {
            continue;
        };
        if catalog.kernels.contains_key(found.id.as_str()) {
            continue;
        }
        text.push_str(&format!(
            "\n[[kernel]]\nid = \"{}\"\nversion = \"{}\"\ndescription = \"Debian {suite} cloud kernel (added by kmatrix kernels discover)\"\nsource = {{ kind = \"debian-package\", suite = \"{suite}\", package = \"linux-image-cloud-amd64\" }}\n",
            found.id, found.version
        ));
        written.push(format!("added {}: {}", found.id, found.build));
    }
    for found in discovered
        .iter()
        .filter(|d| d.in_catalog.is_none() && !d.packages.is_empty())
    {
        let urls: Vec<String> = found
            .packages
            .iter()
            .filter_map(|p| p.url.clone())
            .collect();
        let id = KernelId::new(&found.id);
        if let Some(entry) = catalog.kernels.get(&id) {
            let Source::Kernel(KernelSource::PackageUrls { urls: old }) = &entry.source else {
                bail!(
                    "{} exists and is not a by-URL kernel; not bumping it",
                    found.id
                );
            };
            for (old, new) in old.iter().zip(&urls) {
                text = text.replace(old.url(), new);
            }
            written.push(format!("bumped {} to {}", found.id, found.build));
        } else {
            text.push_str(&format!(
                "\n[[kernel]]\nid = \"{}\"\nversion = \"{}\"\ndescription = \"Ubuntu {} kernel {} (added by kmatrix kernels discover)\"\nsource = {{ kind = \"package-urls\", urls = [\n{}] }}\n",
                found.id,
                found.version,
                found.id.trim_start_matches("ubuntu-"),
                found.build,
                urls.iter().map(|u| format!("  \"{u}\",\n")).collect::<String>()
            ));
            written.push(format!("added {}: {}", found.id, found.build));
        }
        lock.record(
            &ArtifactKey::Kernel(id),
            LockedArtifact {
                packages: found.packages.clone(),
                provenance: format!(
                    "sha256 from Ubuntu's Packages index, {}",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                ),
            },
        )?;
    }
    crate::files::write_atomically(&kernels_path, text.as_bytes())?;
    // What was written must load.
    Catalog::load(&project.images_dir())?;
    Ok(written)
}

fn catalog_with_urls(catalog: &Catalog, packages: &[LockedPackage]) -> Option<String> {
    catalog
        .kernels
        .values()
        .find_map(|entry| match &entry.source {
            Source::Kernel(KernelSource::PackageUrls { urls })
                if packages.iter().all(|p| {
                    p.url
                        .as_ref()
                        .is_some_and(|u| urls.iter().any(|x| x.url() == u))
                }) =>
            {
                Some(entry.id.to_string())
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metapackage_names_the_abi() {
        let index = BTreeMap::from([(
            "linux-image-generic-hwe-22.04".to_string(),
            vec![IndexPackage {
                name: "linux-image-generic-hwe-22.04".into(),
                version: "6.8.0-149.149~22.04.1".into(),
                filename: "pool/main/l/linux-meta-hwe-6.8/x.deb".into(),
                sha256: "00".into(),
                depends: apt::depends("Depends: linux-image-6.8.0-149-generic, linux-modules-extra-6.8.0-149-generic, linux-firmware\n"),
                pocket: "jammy-updates".into(),
            }],
        )]);
        assert_eq!(
            newest_meta(&index, "linux-image-generic-hwe-22.04"),
            Some(("6.8.0-149.149~22.04.1".into(), "6.8.0-149-generic".into()))
        );
        assert!(version_greater(
            "6.8.0-149.149~22.04.1",
            "6.8.0-40.40~22.04.3"
        ));
        assert!(!version_greater("5.15.0-25.25", "5.15.0-25.25"));
    }

    #[test]
    fn latest_selectors_name_a_track_and_the_series_to_read() {
        assert_eq!(
            latest_track("ubuntu-jammy"),
            ("ubuntu-22.04-ga".into(), "jammy")
        );
        assert_eq!(
            latest_track("ubuntu-noble-hwe"),
            ("ubuntu-24.04-hwe".into(), "noble")
        );
        assert_eq!(
            latest_track("ubuntu-22.04-hwe-6.5"),
            ("ubuntu-22.04-hwe-6.5".into(), "jammy")
        );
        assert_eq!(
            latest_track("debian-bookworm-backports"),
            ("debian-bookworm-backports".into(), "bookworm-backports")
        );
        assert_eq!(latest_track("fedora-40").1, "");
    }
}
