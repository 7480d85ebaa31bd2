//! Provisioning: turns catalog entries and scenario versions into files on
//! disk (kernels, Go toolchains, reproducer binaries, the guest agent), each
//! cached by the hash of its inputs and pinned in the lock file.

use crate::apt::{self, Apt, PackageVersion};
use crate::cache::{sha256_bytes, sha256_file, sha256_tree, Cache};
use crate::catalog::{Catalog, KernelSource, ToolchainEntry};
use crate::lock::{Lock, LockedArtifact, LockedPackage};
use crate::scenario::{Scenario, Version};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct KernelArtifact {
    pub id: String,
    pub image: PathBuf,
    /// `name=version` of the package(s) it came from.
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct GoToolchain {
    pub id: String,
    pub goroot: PathBuf,
}

pub struct Provisioner<'a> {
    pub cache: &'a Cache,
    catalog: &'a Catalog,
    apt: Apt,
    lock: Mutex<Lock>,
    /// Refuse to re-resolve a locked version that vanished (like `cargo --locked`).
    locked_only: bool,
}

impl<'a> Provisioner<'a> {
    pub fn new(cache: &'a Cache, catalog: &'a Catalog, locked_only: bool) -> Result<Self> {
        Ok(Provisioner {
            cache,
            catalog,
            apt: Apt::new(cache.root()),
            lock: Mutex::new(Lock::load(&catalog.dir)?),
            locked_only,
        })
    }

    /// The lock file as it stands now (provisioning may have added pins).
    pub fn lock_snapshot(&self) -> Lock {
        self.lock.lock().expect("lock file").clone()
    }

    pub fn kernel(&self, id: &str) -> Result<KernelArtifact> {
        let entry = self
            .catalog
            .kernels
            .get(id)
            .with_context(|| format!("unknown kernel `{id}`"))?;
        match &entry.source {
            KernelSource::DebianPackage { suite, package } => {
                let resolve = || -> Result<Vec<PackageVersion>> {
                    let stanza = self.apt.show(package, suite)?;
                    // A metapackage depends on the real image package; an
                    // image package itself depends on no other linux-image.
                    let name = apt::depends(&stanza)
                        .into_iter()
                        .find(|d| d.starts_with("linux-image-"))
                        .unwrap_or_else(|| package.clone());
                    Ok(vec![self.apt.resolve(&name, suite)?])
                };
                let (image, origin) =
                    self.debian_artifact(&format!("kernel:{id}"), "kernels", resolve, |root| {
                        find_kernel_image(root)
                    })?;
                Ok(KernelArtifact {
                    id: id.to_string(),
                    image,
                    origin,
                })
            }
        }
    }

    pub fn toolchain(&self, id: &str) -> Result<GoToolchain> {
        let entry: &ToolchainEntry = self
            .catalog
            .toolchains
            .get(id)
            .with_context(|| format!("unknown toolchain `{id}`"))?;
        let resolve = || -> Result<Vec<PackageVersion>> {
            entry
                .packages
                .iter()
                .map(|p| self.apt.resolve(p, &entry.suite))
                .collect()
        };
        let goroot_rel = PathBuf::from(&entry.goroot);
        let (go, _) =
            self.debian_artifact(&format!("toolchain:{id}"), "toolchains", resolve, |root| {
                let go = root.join(&goroot_rel).join("bin/go");
                let output = Command::new(&go)
                    .arg("version")
                    .env("GOROOT", root.join(&goroot_rel))
                    .env("GOTOOLCHAIN", "local")
                    .output()
                    .with_context(|| format!("cannot run {}", go.display()))?;
                if !output.status.success() {
                    bail!(
                        "unpacked Go does not run: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                Ok(go.strip_prefix(root).expect("under root").to_path_buf())
            })?;
        let goroot = go
            .parent()
            .and_then(Path::parent)
            .expect("go lives in GOROOT/bin")
            .to_path_buf();
        Ok(GoToolchain {
            id: id.to_string(),
            goroot,
        })
    }

    /// Builds the scenario's reproducer for one component version: its Go
    /// toolchain, and a go.mod whose `go` line is the release's.
    pub fn reproducer(&self, scenario: &Scenario, version: &Version) -> Result<PathBuf> {
        let toolchain = self.toolchain(&version.toolchain)?;
        let source_hash = sha256_tree(&scenario.reproducer_dir)?;
        let key = sha256_bytes(
            format!(
                "go-reproducer\0{}\0{source_hash}\0{}",
                toolchain.goroot.display(),
                version.go_directive
            )
            .as_bytes(),
        );
        let go_cache = self.cache.root().join("go-build");
        let gopath = self.cache.root().join("gopath");
        self.cache.get_or_make("reproducers", &key, |dir| {
            let src = dir.join("src");
            copy_tree(&scenario.reproducer_dir, &src)?;
            write_go_mod(&src.join("go.mod"), &scenario.id, &version.go_directive)?;
            let output = Command::new(toolchain.goroot.join("bin/go"))
                .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
                .arg(dir.join("reproducer"))
                .arg(".")
                .current_dir(&src)
                .env("GOROOT", &toolchain.goroot)
                .env("GOTOOLCHAIN", "local")
                .env("GOPROXY", "off")
                .env("GOSUMDB", "off")
                .env("GOFLAGS", "-mod=mod")
                .env("GOENV", "off")
                .env("CGO_ENABLED", "0")
                .env("GOOS", "linux")
                .env("GOARCH", "amd64")
                .env("GOCACHE", &go_cache)
                .env("GOPATH", &gopath)
                .output()
                .context("cannot run go build")?;
            let log = [output.stdout, output.stderr].concat();
            fs::write(dir.join("build.log"), &log)?;
            if !output.status.success() {
                let kept = self.cache.root().join("logs").join(format!("{key}.log"));
                fs::create_dir_all(kept.parent().expect("logs folder"))?;
                fs::write(&kept, &log)?;
                bail!(
                    "go build of {} {} with {} failed (log: {}):\n{}",
                    scenario.id,
                    version.id,
                    toolchain.id,
                    kept.display(),
                    String::from_utf8_lossy(&log).trim()
                );
            }
            Ok(PathBuf::from("reproducer"))
        })
    }

    /// The static guest agent: `$KMATRIX_AGENT` if set, else built from the
    /// `vm/` crate of the workspace this harness was built from.
    pub fn agent(&self) -> Result<PathBuf> {
        if let Some(path) = std::env::var_os("KMATRIX_AGENT") {
            return Ok(PathBuf::from(path));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the harness crate lives in the workspace");
        let vm = workspace.join("vm");
        let key = sha256_bytes(
            format!(
                "agent\0{}\0{}\0{}",
                sha256_tree(&vm.join("src"))?,
                sha256_file(&vm.join("Cargo.toml"))?,
                sha256_file(&workspace.join("Cargo.lock")).unwrap_or_default()
            )
            .as_bytes(),
        );
        let target_dir = self.cache.root().join("agent-target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        self.cache.get_or_make("agent", &key, |dir| {
            let output = Command::new(&cargo)
                .args([
                    "build",
                    "--release",
                    "-p",
                    "kmatrix-agent",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                    "--target-dir",
                ])
                .arg(&target_dir)
                .current_dir(workspace)
                .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
                .output()
                .context("cannot run cargo to build the guest agent")?;
            if !output.status.success() {
                bail!(
                    "building the guest agent failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let built = target_dir.join("x86_64-unknown-linux-gnu/release/kmatrix-agent");
            fs::copy(&built, dir.join("kmatrix-agent"))?;
            Ok(PathBuf::from("kmatrix-agent"))
        })
    }

    /// Fetches Debian packages for a catalog artifact, pinned by the lock file,
    /// unpacks them into one root, and lets `finish` name the payload.
    fn debian_artifact(
        &self,
        artifact: &str,
        kind: &str,
        resolve: impl Fn() -> Result<Vec<PackageVersion>>,
        finish: impl Fn(&Path) -> Result<PathBuf>,
    ) -> Result<(PathBuf, String)> {
        let locked = self.lock.lock().expect("lock file").get(artifact).cloned();
        let attempt = |packages: &[PackageVersion], pins: Option<&[LockedPackage]>| {
            self.fetch_unpacked(kind, packages, pins, &finish)
        };
        let (payload, fetched) = match &locked {
            Some(pinned) => {
                let packages: Vec<PackageVersion> = pinned
                    .packages
                    .iter()
                    .map(|p| PackageVersion {
                        name: p.name.clone(),
                        version: p.version.clone(),
                    })
                    .collect();
                match attempt(&packages, Some(&pinned.packages)) {
                    Ok(done) => done,
                    Err(e) if self.locked_only || is_checksum_error(&e) => return Err(e),
                    Err(e) => {
                        let fresh = resolve()?;
                        if fresh == packages {
                            return Err(e);
                        }
                        eprintln!(
                            "note: {artifact}: locked {} is no longer published ({e:#}); using {} and updating the lock",
                            describe(&packages),
                            describe(&fresh)
                        );
                        attempt(&fresh, None)?
                    }
                }
            }
            None => attempt(&resolve()?, None)?,
        };
        let origin = describe_locked(&fetched);
        if locked.as_ref().map(|l| &l.packages) != Some(&fetched) {
            let provenance = format!(
                "trust-on-first-use {} from {}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                self.apt.mirror()
            );
            self.lock.lock().expect("lock file").record(
                artifact,
                LockedArtifact {
                    packages: fetched,
                    provenance,
                },
            )?;
        }
        Ok((payload, origin))
    }

    fn fetch_unpacked(
        &self,
        kind: &str,
        packages: &[PackageVersion],
        pins: Option<&[LockedPackage]>,
        finish: &impl Fn(&Path) -> Result<PathBuf>,
    ) -> Result<(PathBuf, Vec<LockedPackage>)> {
        let key = sha256_bytes(format!("debian\0{}", describe(packages)).as_bytes());
        let payload = self.cache.get_or_make(kind, &key, |dir| {
            let root = dir.join("root");
            let mut fetched = Vec::new();
            for package in packages {
                let deb = self.apt.download(package, &dir.join("debs"))?;
                let sha256 = sha256_file(&deb)?;
                if let Some(pin) = pins.and_then(|p| p.iter().find(|p| p.name == package.name)) {
                    if pin.sha256 != sha256 {
                        bail!(
                            "checksum mismatch for {}={}: the lock file says {}, the archive gave {}; \
                             refusing to use it (if the archive really changed, delete the entry from images/kmatrix.lock)",
                            package.name, package.version, pin.sha256, sha256
                        );
                    }
                }
                apt::unpack_deb(&deb, &root)?;
                fetched.push(LockedPackage {
                    name: package.name.clone(),
                    version: package.version.clone(),
                    sha256,
                });
            }
            fs::remove_dir_all(dir.join("debs"))?;
            fs::write(dir.join("packages.json"), serde_json::to_vec_pretty(&fetched)?)?;
            Ok(Path::new("root").join(finish(&root)?))
        })?;
        let entry = self.cache.entry_dir(kind, &key);
        let fetched: Vec<LockedPackage> =
            serde_json::from_slice(&fs::read(entry.join("packages.json"))?)
                .context("cache entry lacks packages.json")?;
        Ok((payload, fetched))
    }
}

fn is_checksum_error(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("checksum mismatch")
}

fn describe(packages: &[PackageVersion]) -> String {
    packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_locked(packages: &[LockedPackage]) -> String {
    packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect::<Vec<_>>()
        .join(" ")
}

fn find_kernel_image(root: &Path) -> Result<PathBuf> {
    let boot = root.join("boot");
    let image = fs::read_dir(&boot)
        .with_context(|| format!("package has no /boot ({})", boot.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("package has no /boot/vmlinuz-*")?;
    Ok(image.strip_prefix(root).expect("under root").to_path_buf())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        let target = to.join(path.file_name().expect("entry has a name"));
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// Writes go.mod with the release's `go` line: Go >= 1.24 opens listeners as
/// MPTCP only when the main module says `go 1.24` or later.
fn write_go_mod(path: &Path, scenario: &str, directive: &str) -> Result<()> {
    let existing = fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = existing
        .lines()
        .filter(|l| !l.starts_with("go ") && !l.starts_with("toolchain "))
        .map(str::to_string)
        .collect();
    if !lines.iter().any(|l| l.starts_with("module ")) {
        lines.insert(0, format!("module kmatrix.invalid/{scenario}"));
    }
    let module_at = lines
        .iter()
        .position(|l| l.starts_with("module "))
        .expect("module line present");
    lines.insert(module_at + 1, format!("\ngo {directive}"));
    fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_gets_the_release_go_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("go.mod");
        fs::write(
            &path,
            "module example.com/x\n\ngo 1.21\ntoolchain go1.21.3\n",
        )
        .unwrap();
        write_go_mod(&path, "s", "1.24").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("go 1.24\n"), "{text}");
        assert!(!text.contains("1.21"), "{text}");
        assert!(text.starts_with("module example.com/x"), "{text}");

        fs::remove_file(&path).unwrap();
        write_go_mod(&path, "s", "1.23").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("module kmatrix.invalid/s\n\ngo 1.23"),
            "{text}"
        );
    }
}
