//! Go libraries from Debian's `golang-*-dev` packages, made into a `vendor/`
//! folder so a reproducer builds in module mode (its go.mod `go` line keeps
//! its meaning) with no module proxy.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Where Debian puts Go library sources inside a package.
pub const GOCODE: &str = "usr/share/gocode/src";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoModule {
    /// Module path, from its go.mod.
    pub path: String,
    /// The module's own `go` line, if it has one.
    pub go: Option<String>,
    /// Folder relative to the gocode root.
    pub dir: PathBuf,
}

impl GoModule {
    /// Debian packages carry no module version; a pseudo-version stands in,
    /// with the major version the module path demands.
    pub fn version(&self) -> String {
        let major = self
            .path
            .rsplit('/')
            .next()
            .and_then(|last| last.strip_prefix('v'))
            .filter(|n| n.parse::<u32>().is_ok_and(|n| n >= 2))
            .unwrap_or("0");
        format!("v{major}.0.0-00010101000000-000000000000")
    }
}

/// Every module (a folder with go.mod) under a gocode root.
pub fn discover(gocode: &Path) -> Result<Vec<GoModule>> {
    let mut found = Vec::new();
    walk(gocode, gocode, &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<GoModule>) -> Result<()> {
    let go_mod = dir.join("go.mod");
    if go_mod.is_file() {
        let text = fs::read_to_string(&go_mod)?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if let Some(path) = field("module ") {
            found.push(GoModule {
                path: path.trim_matches('"').to_string(),
                go: field("go "),
                dir: dir.strip_prefix(root).expect("under root").to_path_buf(),
            });
            return Ok(());
        }
    }
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, found)?;
        }
    }
    Ok(())
}

/// Copies `modules` into `src/vendor`, writes `vendor/modules.txt`, and adds
/// the matching `require` lines to `src/go.mod`.
pub fn vendor_into(src: &Path, gocode: &Path, modules: &[GoModule]) -> Result<()> {
    let vendor = src.join("vendor");
    let mut manifest = String::new();
    for module in modules {
        let from = gocode.join(&module.dir);
        let to = vendor.join(&module.path);
        crate::files::copy_tree(&from, &to, &is_go_source)?;
        manifest.push_str(&format!("# {} {}\n", module.path, module.version()));
        match &module.go {
            Some(go) => manifest.push_str(&format!("## explicit; go {go}\n")),
            None => manifest.push_str("## explicit\n"),
        }
        let mut packages = Vec::new();
        package_dirs(&to, &to, &mut packages)?;
        packages.sort();
        for package in packages {
            if package.is_empty() {
                manifest.push_str(&format!("{}\n", module.path));
            } else {
                manifest.push_str(&format!("{}/{package}\n", module.path));
            }
        }
    }
    fs::write(vendor.join("modules.txt"), manifest)?;
    let go_mod = src.join("go.mod");
    let mut text = fs::read_to_string(&go_mod)?;
    text.push_str("\nrequire (\n");
    for module in modules {
        text.push_str(&format!("\t{} {}\n", module.path, module.version()));
    }
    text.push_str(")\n");
    fs::write(go_mod, text)?;
    Ok(())
}

/// What of a module's tree is vendored: not its tests, test data, hidden
/// folders, or its own go.mod/go.sum.
fn is_go_source(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.is_dir() {
        name != "testdata" && !name.starts_with('.')
    } else {
        !name.ends_with("_test.go") && name != "go.mod" && name != "go.sum"
    }
}

/// Package folders (holding .go files) relative to the module root.
fn package_dirs(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let mut has_go = false;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            package_dirs(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "go") {
            has_go = true;
        }
    }
    if has_go {
        out.push(
            dir.strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_modules_with_manifest_and_requires() {
        let dir = tempfile::tempdir().unwrap();
        let gocode = dir.path().join("gocode");
        let lib = gocode.join("example.com/lib");
        fs::create_dir_all(lib.join("sub")).unwrap();
        fs::write(lib.join("go.mod"), "module example.com/lib\n\ngo 1.12\n").unwrap();
        fs::write(lib.join("lib.go"), "package lib\n").unwrap();
        fs::write(lib.join("lib_test.go"), "package lib\n").unwrap();
        fs::write(lib.join("sub/sub.go"), "package sub\n").unwrap();
        let v2 = gocode.join("example.com/two/v2");
        fs::create_dir_all(&v2).unwrap();
        fs::write(v2.join("go.mod"), "module example.com/two/v2\n").unwrap();
        fs::write(v2.join("two.go"), "package two\n").unwrap();

        let modules = discover(&gocode).unwrap();
        assert_eq!(modules.len(), 2);
        assert_eq!(modules[0].version(), "v0.0.0-00010101000000-000000000000");
        assert_eq!(modules[1].version(), "v2.0.0-00010101000000-000000000000");

        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("go.mod"), "module m\n\ngo 1.23\n").unwrap();
        vendor_into(&src, &gocode, &modules).unwrap();
        let manifest = fs::read_to_string(src.join("vendor/modules.txt")).unwrap();
        assert_eq!(
            manifest,
            "# example.com/lib v0.0.0-00010101000000-000000000000\n## explicit; go 1.12\nexample.com/lib\nexample.com/lib/sub\n\
             # example.com/two/v2 v2.0.0-00010101000000-000000000000\n## explicit\nexample.com/two/v2\n"
        );
        assert!(src.join("vendor/example.com/lib/sub/sub.go").is_file());
        assert!(!src.join("vendor/example.com/lib/lib_test.go").exists());
        let go_mod = fs::read_to_string(src.join("go.mod")).unwrap();
        assert!(go_mod.contains("\texample.com/lib v0.0.0-00010101000000-000000000000\n"));
    }
}
