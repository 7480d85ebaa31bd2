//! A component built from its own Go module at a tag: the module fetched
//! through the go command (the Go module proxy, `GOTOOLCHAIN=local`), its
//! `h1:` hash pinned in the lock and checked on every fetch, then built
//! inside the module as its own main module (its `replace` directives and
//! go.sum apply) with the Debian toolchain the scenario names and the flags
//! upstream's release build uses; the binary is packaged as upstream's
//! image is (FROM scratch, or on a Debian base for a cgo program). One build
//! per (module hash, toolchain, flags, base), kept in the cache: a second run
//! asks the network nothing.

use super::image::{make_ext4, merged_usr_links, ImageArtifact, FLATTEN_VERSION};
use super::Provisioner;
use crate::files;
use crate::hashing::sha256_bytes;
use crate::ids::ArtifactKey;
use crate::inputs::lock::LockedPackage;
use crate::inputs::scenario::GoModuleSpec;
use crate::sources::gotool;
use crate::sources::oci::source::ImageError;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Cache kind of module builds (the image tree and its ext4).
const MODULE_BUILDS: &str = "module-builds";
/// Bumped when the build or its packaging changes.
const MODULE_BUILD_VERSION: &str = "1";

/// What `go mod download -json` says of one module version.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Downloaded {
    #[serde(default)]
    pub(super) dir: String,
    #[serde(default)]
    pub(super) sum: String,
    /// When the version was published (the proxy's `.info`).
    #[serde(default)]
    pub(super) time: String,
    #[serde(default)]
    error: String,
}

impl Provisioner<'_> {
    /// The module's release binary as an image: from the cache when the
    /// lock's hash has been built, else fetched, verified and built.
    pub fn module_image(&self, spec: &GoModuleSpec) -> Result<ImageArtifact> {
        let toolchain = self.toolchain(&spec.toolchain)?;
        let pinned = self.module_pin(spec);
        let build_key = |h1: &str| -> Result<String> {
            Ok(sha256_bytes(
                format!(
                    "go-module\0{h1}\0{}\0{}\0{}\0{:?}\0{}\0{}\0{}\0{}\0{}",
                    toolchain.goroot.display(),
                    spec.package,
                    spec.cgo,
                    spec.flags,
                    spec.install_path(),
                    serde_json::to_string(&spec.base)?,
                    MODULE_BUILD_VERSION,
                    FLATTEN_VERSION,
                    serde_json::to_string(&spec.also)?
                )
                .as_bytes(),
            ))
        };
        if let Some(h1) = &pinned {
            if let Some(disk) = self.cache.lookup(MODULE_BUILDS, &build_key(h1)?) {
                return Ok(self.module_artifact(spec, h1, disk));
            }
        }
        let label = format!("module {}", spec.reference());
        let downloaded = self.verified_module(spec, pinned.as_deref())?;
        let root_spec = match &spec.base {
            Some(base) => Some(self.rootfs(base)?),
            None => None,
        };
        let disk = self.events.step(&format!("{label}: build"), || {
            self.cache
                .get_or_make(MODULE_BUILDS, &build_key(&downloaded.sum)?, |dir| {
                    let tree = dir.join("root");
                    if let Some(base) = &root_spec {
                        files::copy_tree(base, &tree, &files::all)?;
                        merged_usr_links(&tree)?;
                    }
                    let install = tree.join(spec.install_path().trim_start_matches('/'));
                    fs::create_dir_all(install.parent().expect("install path has a folder"))?;
                    self.build_module(
                        spec,
                        &toolchain.goroot,
                        Path::new(&downloaded.dir),
                        dir,
                        &install,
                    )?;
                    make_ext4(&tree, &dir.join("rootfs.ext4"))?;
                    Ok(PathBuf::from("rootfs.ext4"))
                })
        })?;
        Ok(self.module_artifact(spec, &downloaded.sum, disk))
    }

    /// Downloads the module and pins it (`kmatrix lock accept`); builds nothing.
    pub fn pin_module(&self, spec: &GoModuleSpec) -> Result<()> {
        self.verified_module(spec, None).map(|_| ())
    }

    /// The module's pin in the lock, if it has one.
    pub(super) fn module_pin(&self, spec: &GoModuleSpec) -> Option<String> {
        self.lock
            .lock()
            .expect("lock file")
            .get(&ArtifactKey::GoModule(spec.reference()))
            .and_then(|l| l.packages.first())
            .and_then(|p| p.h1.clone())
    }

    /// The module's files, checked against the lock's pin (a mismatch is
    /// an error and the lock is left alone); a module the lock does not
    /// have is pinned now, and the run says so.
    pub(super) fn verified_module(
        &self,
        spec: &GoModuleSpec,
        pinned: Option<&str>,
    ) -> Result<Downloaded> {
        let key = ArtifactKey::GoModule(spec.reference());
        if pinned.is_none() && self.locked_only {
            bail!(
                "{key} is not pinned in images/kmatrix.lock, and --locked adds no pin: run once without --locked to pin it"
            );
        }
        let downloaded = self
            .events
            .step(&format!("module {}: download", spec.reference()), || {
                self.download_module(spec)
            })?;
        match pinned {
            Some(h1) if h1 != downloaded.sum => bail!(
                "{key}: the lock pins {h1}, the module proxy ({}) served {}: refusing to build unpinned bytes; \
                 if the new bytes are right, remove the entry [artifact.\"{key}\"] from images/kmatrix.lock and run again",
                proxy(),
                downloaded.sum
            ),
            Some(_) => {}
            None => self.record_module_pin(&key, spec, &downloaded.sum)?,
        }
        Ok(downloaded)
    }

    /// A harness program built inside the module at the tag, static: the
    /// version's reproducer, importing the component's own package.
    pub fn module_harness(&self, spec: &GoModuleSpec, harness: &Path) -> Result<PathBuf> {
        let toolchain = self.toolchain(&spec.toolchain)?;
        let harness_hash = crate::hashing::sha256_tree(harness)?;
        let build_key = |h1: &str| {
            sha256_bytes(
                format!(
                    "go-module-harness\0{h1}\0{}\0{harness_hash}\0{MODULE_BUILD_VERSION}",
                    toolchain.goroot.display()
                )
                .as_bytes(),
            )
        };
        let pinned = self.module_pin(spec);
        if let Some(h1) = &pinned {
            if let Some(binary) = self.cache.lookup(MODULE_BUILDS, &build_key(h1)) {
                return Ok(binary);
            }
        }
        let downloaded = self.verified_module(spec, pinned.as_deref())?;
        self.events.step(
            &format!("module {}: harness build", spec.reference()),
            || {
                self.cache
                    .get_or_make(MODULE_BUILDS, &build_key(&downloaded.sum), |dir| {
                        let src = module_source(
                            Path::new(&downloaded.dir),
                            &toolchain.goroot,
                            spec,
                            dir,
                        )?;
                        files::copy_tree(harness, &src.join("kmatrix-harness"), &files::all)?;
                        let harness_spec = GoModuleSpec {
                            package: "./kmatrix-harness".into(),
                            cgo: false,
                            flags: vec!["-trimpath".into(), "-ldflags=-s -w".into()],
                            ..spec.clone()
                        };
                        self.go_build(
                            &harness_spec,
                            &toolchain.goroot,
                            &src,
                            dir,
                            &dir.join("reproducer"),
                        )?;
                        fs::remove_dir_all(&src)?;
                        Ok(PathBuf::from("reproducer"))
                    })
            },
        )
    }

    fn module_artifact(&self, spec: &GoModuleSpec, h1: &str, disk: PathBuf) -> ImageArtifact {
        ImageArtifact {
            reference: format!("module:{}", spec.reference()),
            digest: h1.to_string(),
            root: disk.with_file_name("root"),
            disk,
            entrypoint: vec![spec.install_path()],
            cmd: Vec::new(),
            env: std::iter::once(
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            )
            .chain(spec.env.iter().cloned())
            .collect(),
            working_dir: None,
            build_info: None,
        }
    }

    /// `go mod download -json PATH@VERSION`: the module's files and hash,
    /// or why the proxy would not give them (`unavailable`, with the go
    /// command's own words: the URL and the status).
    fn download_module(&self, spec: &GoModuleSpec) -> Result<Downloaded> {
        let toolchain = self.toolchain(&spec.toolchain)?;
        let scratch = tempfile::tempdir()?;
        let output = self
            .module_env(&mut gotool::go(&toolchain.goroot))
            .args(["mod", "download", "-json", &spec.reference()])
            .current_dir(scratch.path())
            .output()
            .context("cannot run go mod download")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let downloaded: Option<Downloaded> = serde_json::from_str(&stdout).ok();
        match downloaded {
            Some(d) if d.error.is_empty() && output.status.success() => Ok(d),
            Some(d) if !d.error.is_empty() => Err(ImageError::Unavailable(format!(
                "module {} cannot be had here: {}",
                spec.reference(),
                d.error.replace('\n', " ").replace('\t', "")
            ))
            .into()),
            _ => Err(ImageError::Unavailable(format!(
                "module {}: go mod download failed: {}",
                spec.reference(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
            .into()),
        }
    }

    /// Builds the module's package inside a writable copy of the module.
    fn build_module(
        &self,
        spec: &GoModuleSpec,
        goroot: &Path,
        module_dir: &Path,
        dir: &Path,
        install: &Path,
    ) -> Result<()> {
        let src = module_source(module_dir, goroot, spec, dir)?;
        self.go_build(spec, goroot, &src, dir, install)?;
        let tree = install
            .ancestors()
            .nth(spec.install_path().matches('/').count())
            .expect("the install path lies in the tree");
        for program in &spec.also {
            let extra = GoModuleSpec {
                package: program.package.clone(),
                flags: program.flags.clone(),
                ..spec.clone()
            };
            let target = tree.join(program.install.trim_start_matches('/'));
            fs::create_dir_all(target.parent().expect("install path has a folder"))?;
            self.go_build(&extra, goroot, &src, dir, &target)?;
        }
        fs::remove_dir_all(&src)?;
        Ok(())
    }

    /// `go build` of the spec's package inside `src` (the module's copy);
    /// the log is kept beside the result, and in `<cache>/logs` on failure.
    fn go_build(
        &self,
        spec: &GoModuleSpec,
        goroot: &Path,
        src: &Path,
        dir: &Path,
        install: &Path,
    ) -> Result<()> {
        let output = self
            .module_env(&mut gotool::go(goroot))
            .arg("build")
            .args(&spec.flags)
            .arg("-o")
            .arg(install)
            .arg(&spec.package)
            .current_dir(src)
            .env("CGO_ENABLED", if spec.cgo { "1" } else { "0" })
            .env("GOOS", "linux")
            .env("GOARCH", "amd64")
            .output()
            .context("cannot run go build")?;
        let log = [output.stdout, output.stderr].concat();
        let mut kept_log = fs::read(dir.join("build.log")).unwrap_or_default();
        kept_log.extend_from_slice(&log);
        fs::write(dir.join("build.log"), &kept_log)?;
        if !output.status.success() {
            let kept = self
                .cache
                .root()
                .join("logs")
                .join(format!("module-{}.log", spec.reference().replace('/', "_")));
            fs::create_dir_all(kept.parent().expect("logs folder"))?;
            fs::write(&kept, &log)?;
            bail!(
                "go build of {} ({}) failed (log: {}):\n{}",
                spec.reference(),
                spec.toolchain,
                kept.display(),
                files::last_lines(&String::from_utf8_lossy(&log), 20)
            );
        }
        Ok(())
    }

    /// Where modules and build results live: kmatrix's cache, never the
    /// user's; the proxy and checksum database are the user's settings.
    pub(super) fn module_env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.envs(self.module_caches()).env("GOPROXY", proxy())
    }

    /// The go command's caches inside kmatrix's cache.
    pub(super) fn module_caches(&self) -> Vec<(String, PathBuf)> {
        let root = self.cache.root();
        vec![
            ("GOMODCACHE".into(), root.join("gomod")),
            ("GOPATH".into(), root.join("gopath")),
            ("GOCACHE".into(), root.join("go-build")),
        ]
    }

    fn record_module_pin(&self, key: &ArtifactKey, spec: &GoModuleSpec, h1: &str) -> Result<()> {
        let provenance = format!(
            "trust-on-first-use {} from {} (checked against the checksum database by the go command)",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            proxy()
        );
        self.record_pin(
            key,
            vec![LockedPackage {
                name: spec.path.clone(),
                version: spec.version.clone(),
                sha256: String::new(),
                url: None,
                h1: Some(h1.to_string()),
            }],
            provenance,
        )
    }
}

/// The module proxy the go command is given: the user's `GOPROXY`, else Go's default.
pub(super) fn proxy() -> String {
    std::env::var("GOPROXY")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "https://proxy.golang.org,direct".into())
}

/// A writable copy of the module (the module cache is read-only) in
/// `dir/src`, whose go.mod the toolchain can build.
fn module_source(
    module_dir: &Path,
    goroot: &Path,
    spec: &GoModuleSpec,
    dir: &Path,
) -> Result<PathBuf> {
    let src = dir.join("src");
    files::copy_tree(module_dir, &src, &files::all)?;
    make_writable(&src)?;
    require_go_line(&src.join("go.mod"), goroot, spec)?;
    Ok(src)
}

/// A go.mod that asks for a newer Go than the toolchain is an error that
/// says so (with `GOTOOLCHAIN=local` the go command would refuse too, less
/// plainly): kmatrix never downloads a toolchain.
fn require_go_line(go_mod: &Path, goroot: &Path, spec: &GoModuleSpec) -> Result<()> {
    let text = fs::read_to_string(go_mod).context("the module has no go.mod")?;
    let Some(wanted) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("go ").map(str::trim))
    else {
        return Ok(());
    };
    let have = fs::read_to_string(goroot.join("VERSION")).unwrap_or_default();
    let have = have
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("go");
    if version_parts(wanted) > version_parts(have) {
        return Err(ImageError::Unavailable(format!(
            "{}'s go.mod says go {wanted}, newer than {} (go{have}); kmatrix never downloads a toolchain (GOTOOLCHAIN=local): name a newer toolchain of images/toolchains.toml",
            spec.reference(),
            spec.toolchain
        ))
        .into());
    }
    Ok(())
}

fn version_parts(version: &str) -> Vec<u32> {
    version
        .split(['.', '-', 'r', 'c'])
        .map_while(|p| p.parse().ok())
        .collect()
}

/// The module cache is read-only; the build writes beside its sources.
fn make_writable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::symlink_metadata(dir)?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mut permissions = metadata.permissions();
    permissions.set_mode(permissions.mode() | 0o200);
    fs::set_permissions(dir, permissions)?;
    if metadata.is_dir() {
        for entry in fs::read_dir(dir)? {
            make_writable(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lines_compare_as_versions() {
        assert!(version_parts("1.24.0") <= version_parts("1.24.4"));
        assert!(version_parts("1.25.0") > version_parts("1.24.4"));
        assert!(version_parts("1.23.10") > version_parts("1.23.5"));
        assert!(version_parts("1.22") <= version_parts("1.22.12"));
    }

    #[test]
    fn the_binary_lands_where_the_spec_says() {
        let mut spec = GoModuleSpec {
            path: "github.com/ollama/ollama".into(),
            version: "v0.5.13".into(),
            package: ".".into(),
            toolchain: "go-1.24".into(),
            cgo: false,
            flags: vec![],
            install: None,
            env: vec![],
            harness: None,
            also: vec![],
            base: None,
        };
        assert_eq!(spec.install_path(), "/usr/local/bin/ollama");
        spec.package = "./cmd/kube-vip".into();
        assert_eq!(spec.install_path(), "/usr/local/bin/kube-vip");
        spec.install = Some("/usr/bin/ollama".into());
        assert_eq!(spec.install_path(), "/usr/bin/ollama");
        assert_eq!(spec.reference(), "github.com/ollama/ollama@v0.5.13");
    }
}
