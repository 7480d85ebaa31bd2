//! The catalogs in `images/`: which kernels and toolchains exist and where
//! each comes from. Data only; fetching lives in `provision`.

use crate::diagnostic::{parse_toml, FileError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const KERNELS_FILE: &str = "kernels.toml";
pub const TOOLCHAINS_FILE: &str = "toolchains.toml";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelEntry {
    pub id: String,
    /// The upstream version line, e.g. "6.1".
    pub version: String,
    pub description: String,
    pub source: KernelSource,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KernelSource {
    /// A Debian package; `package` may be a metapackage, which is followed to
    /// the `linux-image-*` package it depends on.
    DebianPackage { suite: String, package: String },
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolchainEntry {
    pub id: String,
    pub kind: ToolchainKind,
    /// The release, e.g. "1.24", as the component's build used it.
    pub version: String,
    pub suite: String,
    /// Debian packages unpacked together into one root.
    pub packages: Vec<String>,
    /// GOROOT relative to the unpacked root.
    pub goroot: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ToolchainKind {
    Go,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelsFile {
    kernel: Vec<KernelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolchainsFile {
    toolchain: Vec<ToolchainEntry>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
    pub kernels: BTreeMap<String, KernelEntry>,
    pub toolchains: BTreeMap<String, ToolchainEntry>,
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Catalog, FileError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path)
                .map(|text| (path.clone(), text))
                .map_err(|e| {
                    FileError::whole_file(
                        &path,
                        format!("cannot read catalog: {e}"),
                        "run kmatrix from the project root, or pass --images DIR",
                    )
                })
        };
        let (kernels_path, text) = read(KERNELS_FILE)?;
        let kernels: KernelsFile = parse_toml(
            &kernels_path,
            &text,
            "each [[kernel]] needs id, version, description and source = { kind = \"debian-package\", suite, package }",
        )?;
        let (toolchains_path, text) = read(TOOLCHAINS_FILE)?;
        let toolchains: ToolchainsFile = parse_toml(
            &toolchains_path,
            &text,
            "each [[toolchain]] needs id, kind = \"go\", version, suite, packages and goroot",
        )?;
        Ok(Catalog {
            dir: dir.to_path_buf(),
            kernels: unique_by_id(&kernels_path, kernels.kernel, |k| &k.id)?,
            toolchains: unique_by_id(&toolchains_path, toolchains.toolchain, |t| &t.id)?,
        })
    }

    pub fn kernel_ids(&self) -> Vec<&str> {
        self.kernels.keys().map(String::as_str).collect()
    }
}

fn unique_by_id<T>(
    path: &Path,
    entries: Vec<T>,
    id: impl Fn(&T) -> &String,
) -> Result<BTreeMap<String, T>, FileError> {
    let mut map = BTreeMap::new();
    for entry in entries {
        let key = id(&entry).clone();
        if map.insert(key.clone(), entry).is_some() {
            return Err(FileError::whole_file(
                path,
                format!("id `{key}` appears twice"),
                "give every entry its own id",
            ));
        }
    }
    Ok(map)
}
