//! Provisioning: turns catalog entries and scenario versions into files on
//! disk (kernels, Go toolchains, reproducer binaries, the guest agent), each
//! cached by the hash of its inputs and pinned in the lock file.

use crate::apt::{self, Apt, PackageVersion};
use crate::cache::{sha256_bytes, sha256_file, sha256_tree, Cache};
use crate::catalog::{Catalog, KernelEntry, KernelSource, KernelTree, ToolchainEntry};
use crate::govendor;
use crate::lock::{Lock, LockedArtifact, LockedPackage};
use crate::scenario::{GoPackages, GuestSpec, Scenario, Version};
use crate::{archive, fetch, files, kbuild};
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
    /// `/lib/modules/<release>` of a packaged kernel; `None` for a source
    /// build (whatever it needs is built in).
    pub modules: Option<PathBuf>,
    /// `name=version` of the package(s) it came from, or the build's inputs.
    pub origin: String,
}

/// One package of an artifact: from Debian through apt, or by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Package {
    Debian(PackageVersion),
    Url(String),
}

impl Package {
    fn from_locked(locked: &LockedPackage) -> Package {
        match &locked.url {
            Some(url) => Package::Url(url.clone()),
            None => Package::Debian(PackageVersion {
                name: locked.name.clone(),
                version: locked.version.clone(),
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Package::Debian(p) => format!("{}={}", p.name, p.version),
            Package::Url(url) => url.clone(),
        }
    }
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
        let entry: &KernelEntry = self
            .catalog
            .kernels
            .get(id)
            .with_context(|| format!("unknown kernel `{id}`"))?;
        let artifact = format!("kernel:{id}");
        let packaged = |resolve: &dyn Fn() -> Result<Vec<Package>>| -> Result<KernelArtifact> {
            let (image, origin) =
                self.pinned_artifact(&artifact, "kernels", resolve, &find_kernel_image)?;
            let root = image
                .ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "root"))
                .expect("kernel payloads live under root/")
                .to_path_buf();
            Ok(KernelArtifact {
                id: id.to_string(),
                modules: find_modules_dir(&root, &image),
                image,
                origin,
            })
        };
        match &entry.source {
            KernelSource::DebianPackage { suite, package } => packaged(&|| {
                let stanza = self.apt.show(package, suite)?;
                // A metapackage depends on the real image package; an
                // image package itself depends on no other linux-image.
                let name = apt::depends(&stanza)
                    .into_iter()
                    .find(|d| d.starts_with("linux-image-"))
                    .unwrap_or_else(|| package.clone());
                // Newer Debian splits the image package: the kernel itself is
                // in linux-binary-*, the modules in linux-modules-*.
                let parts = apt::depends(&self.apt.show(&name, suite)?)
                    .into_iter()
                    .filter(|d| d.starts_with("linux-binary-") || d.starts_with("linux-modules-"));
                std::iter::once(name.clone())
                    .chain(parts)
                    .map(|p| Ok(Package::Debian(self.apt.resolve(&p, suite)?)))
                    .collect()
            }),
            KernelSource::PackageUrls { urls } => {
                packaged(&|| Ok(urls.iter().cloned().map(Package::Url).collect()))
            }
            KernelSource::SourceBuild {
                source,
                base_config,
                fragments,
            } => self.built_kernel(entry, source, base_config, fragments),
        }
    }

    fn built_kernel(
        &self,
        entry: &KernelEntry,
        source: &KernelTree,
        base_config: &str,
        fragment_files: &[String],
    ) -> Result<KernelArtifact> {
        let fragments = fragment_files
            .iter()
            .map(|name| {
                let path = self.catalog.dir.join(name);
                fs::read_to_string(&path).with_context(|| {
                    format!(
                        "kernel {}: cannot read fragment {} (paths are relative to images/)",
                        entry.id,
                        path.display()
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wanted = kbuild::merge_fragments(&fragments);
        let (tarball, source_origin) = self.kernel_source(source)?;
        let key = build_key(&tarball, base_config, &wanted)?;
        let image = self.cache.get_or_make("kernels-built", &key, |dir| {
            kbuild::build(
                &kbuild::BuildSpec {
                    label: &entry.id,
                    tarball: &tarball,
                    base_config,
                    fragments: wanted.clone(),
                },
                dir,
            )
        })?;
        Ok(KernelArtifact {
            id: entry.id.clone(),
            image,
            modules: None,
            origin: format!(
                "built from {source_origin} ({base_config} + {})",
                fragment_files.join(" + ")
            ),
        })
    }

    /// The source tarball of a kernel source build.
    fn kernel_source(&self, tree: &KernelTree) -> Result<(PathBuf, String)> {
        match tree {
            KernelTree::DebianPackage { suite, package } => self.pinned_artifact(
                &format!("kernel-source:{package}"),
                "kernel-sources",
                &|| Ok(vec![Package::Debian(self.apt.resolve(package, suite)?)]),
                &|root| {
                    let src = root.join("usr/src");
                    fs::read_dir(&src)
                        .with_context(|| format!("{package} has no /usr/src"))?
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
                        .map(|p| p.strip_prefix(root).expect("under root").to_path_buf())
                        .with_context(|| format!("{package} has no /usr/src/*.tar.xz"))
                },
            ),
            KernelTree::Url { url } => {
                let artifact = format!("kernel-source:{url}");
                let pinned = self.lock.lock().expect("lock file").get(&artifact).cloned();
                let expected = pinned
                    .as_ref()
                    .and_then(|l| l.packages.first())
                    .map(|p| p.sha256.clone())
                    .filter(|s| !s.is_empty());
                let key = sha256_bytes(format!("url\0{url}").as_bytes());
                let name = url
                    .rsplit('/')
                    .next()
                    .unwrap_or("source.tar.xz")
                    .to_string();
                let tarball = self.cache.get_or_make("kernel-sources", &key, |dir| {
                    fetch::download(url, &dir.join(&name), expected.as_deref())?;
                    Ok(PathBuf::from(&name))
                })?;
                if expected.is_none() {
                    self.record_tofu(
                        &artifact,
                        vec![LockedPackage {
                            name,
                            version: url.clone(),
                            sha256: sha256_file(&tarball)?,
                            url: Some(url.clone()),
                        }],
                        url,
                    )?;
                }
                Ok((tarball, url.clone()))
            }
        }
    }

    /// Whether a kernel is in the cache, intact, as the lock file pins it;
    /// fetches and builds nothing.
    pub fn kernel_is_cached(&self, id: &str) -> Result<bool> {
        let entry = self
            .catalog
            .kernels
            .get(id)
            .with_context(|| format!("unknown kernel `{id}`"))?;
        let lock = self.lock_snapshot();
        let locked_key = |artifact: &str| {
            lock.get(artifact).map(|l| {
                packages_key(
                    &l.packages
                        .iter()
                        .map(Package::from_locked)
                        .collect::<Vec<_>>(),
                )
            })
        };
        Ok(match &entry.source {
            KernelSource::DebianPackage { .. } | KernelSource::PackageUrls { .. } => {
                locked_key(&format!("kernel:{id}"))
                    .and_then(|key| self.cache.lookup("kernels", &key))
                    .is_some()
            }
            KernelSource::SourceBuild {
                source,
                base_config,
                fragments,
            } => {
                let tarball = match source {
                    KernelTree::DebianPackage { package, .. } => {
                        locked_key(&format!("kernel-source:{package}"))
                            .and_then(|key| self.cache.lookup("kernel-sources", &key))
                    }
                    KernelTree::Url { url } => self.cache.lookup(
                        "kernel-sources",
                        &sha256_bytes(format!("url\0{url}").as_bytes()),
                    ),
                };
                let Some(tarball) = tarball else {
                    return Ok(false);
                };
                let texts = fragments
                    .iter()
                    .map(|f| fs::read_to_string(self.catalog.dir.join(f)))
                    .collect::<std::io::Result<Vec<_>>>()?;
                let key = build_key(&tarball, base_config, &kbuild::merge_fragments(&texts))?;
                self.cache.lookup("kernels-built", &key).is_some()
            }
        })
    }

    /// Whether a kernel could be had here now, without fetching it:
    /// `Ok(how)` or `Err(why not)`.
    pub fn kernel_availability(&self, id: &str) -> Result<String, String> {
        if self.kernel_is_cached(id).unwrap_or(false) {
            return Ok("cached".into());
        }
        let entry = self.catalog.kernels.get(id).ok_or("unknown kernel")?;
        match &entry.source {
            KernelSource::DebianPackage { suite, .. } => self
                .apt
                .ensure_lists()
                .map(|_| format!("fetchable from Debian {suite}"))
                .map_err(|e| format!("{e:#}")),
            KernelSource::PackageUrls { urls } => urls
                .iter()
                .try_for_each(|url| fetch::reachable(url))
                .map(|_| "fetchable by URL".to_string())
                .map_err(|e| format!("{e:#}")),
            KernelSource::SourceBuild { .. } => kbuild::check_build_tools()
                .and_then(|_| self.apt.ensure_lists())
                .map(|_| "to be built from source (about 6 minutes on 2 cores)".to_string())
                .map_err(|e| format!("{e:#}")),
        }
    }

    pub fn toolchain(&self, id: &str) -> Result<GoToolchain> {
        let entry: &ToolchainEntry = self
            .catalog
            .toolchains
            .get(id)
            .with_context(|| format!("unknown toolchain `{id}`"))?;
        let resolve = || -> Result<Vec<Package>> {
            entry
                .packages
                .iter()
                .map(|p| Ok(Package::Debian(self.apt.resolve(p, &entry.suite)?)))
                .collect()
        };
        let goroot_rel = PathBuf::from(&entry.goroot);
        let (go, _) = self.pinned_artifact(
            &format!("toolchain:{id}"),
            "toolchains",
            &resolve,
            &|root| {
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
            },
        )?;
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

    /// Debian Go library packages unpacked together; returns the gocode root.
    pub fn go_packages(&self, wanted: &GoPackages) -> Result<PathBuf> {
        let mut names = wanted.packages.clone();
        names.sort();
        let resolve = || -> Result<Vec<Package>> {
            names
                .iter()
                .map(|p| Ok(Package::Debian(self.apt.resolve(p, &wanted.suite)?)))
                .collect()
        };
        let (manifest, _) = self.pinned_artifact(
            &format!("go-packages:{}", names.join("+")),
            "go-packages",
            &resolve,
            &|root| {
                let modules = govendor::discover(&root.join(govendor::GOCODE))?;
                let manifest = Path::new(govendor::GOCODE).join("kmatrix-modules.json");
                fs::write(root.join(&manifest), serde_json::to_vec_pretty(&modules)?)?;
                Ok(manifest)
            },
        )?;
        Ok(manifest
            .parent()
            .expect("manifest sits in the gocode root")
            .to_path_buf())
    }

    /// Builds the scenario's reproducer for one component version: its Go
    /// toolchain, a go.mod whose `go` line is the release's, the release's
    /// build tags, and any Debian Go libraries vendored in.
    pub fn reproducer(&self, scenario: &Scenario, version: &Version) -> Result<PathBuf> {
        let toolchain = self.toolchain(&version.toolchain)?;
        let gocode = scenario
            .go_packages
            .as_ref()
            .map(|wanted| self.go_packages(wanted))
            .transpose()?;
        let source_hash = sha256_tree(&scenario.reproducer_dir)?;
        let key = sha256_bytes(
            format!(
                "go-reproducer\0{}\0{source_hash}\0{}\0{}\0{}",
                toolchain.goroot.display(),
                version.go_directive,
                version.build_tags.join(","),
                gocode
                    .as_ref()
                    .map(|g| g.display().to_string())
                    .unwrap_or_default()
            )
            .as_bytes(),
        );
        let go_cache = self.cache.root().join("go-build");
        let gopath = self.cache.root().join("gopath");
        self.cache.get_or_make("reproducers", &key, |dir| {
            let src = dir.join("src");
            files::copy_tree(&scenario.reproducer_dir, &src, &files::all)?;
            write_go_mod(&src.join("go.mod"), &scenario.id, &version.go_directive)?;
            let mod_flag = match &gocode {
                Some(gocode) => {
                    let modules: Vec<govendor::GoModule> =
                        serde_json::from_slice(&fs::read(gocode.join("kmatrix-modules.json"))?)?;
                    govendor::vendor_into(&src, gocode, &modules)?;
                    "-mod=vendor"
                }
                None => "-mod=mod",
            };
            let output = Command::new(toolchain.goroot.join("bin/go"))
                .args(["build", "-trimpath", "-ldflags=-s -w"])
                .arg(format!("-tags={}", version.build_tags.join(",")))
                .arg("-o")
                .arg(dir.join("reproducer"))
                .arg(".")
                .current_dir(&src)
                .env("GOROOT", &toolchain.goroot)
                .env("GOTOOLCHAIN", "local")
                .env("GOPROXY", "off")
                .env("GOSUMDB", "off")
                .env("GOFLAGS", mod_flag)
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

    /// A guest root filesystem: the packages and their dependency closure as
    /// Debian `suite` installs them, unpacked, minus `exclude`. Returns the root.
    pub fn rootfs(&self, spec: &GuestSpec) -> Result<PathBuf> {
        let key = sha256_bytes(serde_json::to_string(spec)?.as_bytes());
        let artifact = format!("rootfs:{}", &key[..16]);
        let manifest = self.cache.get_or_make("rootfs", &key, |dir| {
            let debs = self
                .apt
                .download_closure(&spec.suite, &spec.packages, &dir.join("debs"))?;
            let root = dir.join("root");
            let mut packages = Vec::new();
            for deb in &debs {
                archive::unpack(deb, &root)?;
                let file = deb
                    .file_name()
                    .expect("named")
                    .to_string_lossy()
                    .into_owned();
                let mut parts = file.trim_end_matches(".deb").splitn(3, '_');
                packages.push(LockedPackage {
                    name: parts.next().unwrap_or_default().to_string(),
                    version: parts.next().unwrap_or_default().replace("%3a", ":"),
                    sha256: sha256_file(deb)?,
                    url: None,
                });
            }
            for pattern in &spec.exclude {
                remove_matching(&root, pattern)?;
            }
            fs::remove_dir_all(dir.join("debs"))?;
            fs::write(
                dir.join("packages.json"),
                serde_json::to_vec_pretty(&packages)?,
            )?;
            Ok(PathBuf::from("packages.json"))
        })?;
        let packages: Vec<LockedPackage> = serde_json::from_slice(&fs::read(&manifest)?)?;
        if self
            .lock
            .lock()
            .expect("lock file")
            .get(&artifact)
            .map(|l| &l.packages)
            != Some(&packages)
        {
            self.record_tofu(&artifact, packages, self.apt.mirror())?;
        }
        Ok(manifest.with_file_name("root"))
    }

    /// Builds a BPF object from C with Debian's clang (`-target bpf`), keyed
    /// by the sources beside it and the compiler.
    pub fn bpf_object(&self, source: &Path) -> Result<PathBuf> {
        let clang_version = Command::new("clang")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string())
            .context("building BPF objects needs clang: apt-get install clang libbpf-dev (scripts/setup.sh does)")?;
        let folder = source.parent().unwrap_or(Path::new("."));
        let key = sha256_bytes(
            format!(
                "bpf\0{}\0{}\0{clang_version}",
                source.display(),
                sha256_tree(folder)?
            )
            .as_bytes(),
        );
        self.cache.get_or_make("bpf-objects", &key, |dir| {
            let output = Command::new("clang")
                .args([
                    "-O2",
                    "-g",
                    "-target",
                    "bpf",
                    "-I/usr/include/x86_64-linux-gnu",
                    "-c",
                ])
                .arg(source)
                .arg("-o")
                .arg(dir.join("object.o"))
                .output()
                .context("cannot run clang")?;
            if !output.status.success() {
                bail!(
                    "clang -target bpf {} failed:\n{}",
                    source.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(PathBuf::from("object.o"))
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

    /// Fetches the packages of a catalog artifact, pinned by the lock file,
    /// unpacks them into one root, and lets `finish` name the payload.
    fn pinned_artifact(
        &self,
        artifact: &str,
        kind: &str,
        resolve: &dyn Fn() -> Result<Vec<Package>>,
        finish: &dyn Fn(&Path) -> Result<PathBuf>,
    ) -> Result<(PathBuf, String)> {
        let locked = self.lock.lock().expect("lock file").get(artifact).cloned();
        let (payload, fetched) = match &locked {
            Some(pinned) => {
                let packages: Vec<Package> =
                    pinned.packages.iter().map(Package::from_locked).collect();
                match self.fetch_unpacked(kind, &packages, Some(&pinned.packages), finish) {
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
                        self.fetch_unpacked(kind, &fresh, None, finish)?
                    }
                }
            }
            None => self.fetch_unpacked(kind, &resolve()?, None, finish)?,
        };
        let origin = fetched
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(" ");
        if locked.as_ref().map(|l| &l.packages) != Some(&fetched) {
            let source = match fetched.first().and_then(|p| p.url.as_deref()) {
                Some(url) => url.to_string(),
                None => self.apt.mirror().to_string(),
            };
            self.record_tofu(artifact, fetched, &source)?;
        }
        Ok((payload, origin))
    }

    fn record_tofu(
        &self,
        artifact: &str,
        packages: Vec<LockedPackage>,
        source: &str,
    ) -> Result<()> {
        let provenance = format!(
            "trust-on-first-use {} from {source}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        self.lock.lock().expect("lock file").record(
            artifact,
            LockedArtifact {
                packages,
                provenance,
            },
        )
    }

    fn fetch_unpacked(
        &self,
        kind: &str,
        packages: &[Package],
        pins: Option<&[LockedPackage]>,
        finish: &dyn Fn(&Path) -> Result<PathBuf>,
    ) -> Result<(PathBuf, Vec<LockedPackage>)> {
        let key = packages_key(packages);
        let payload = self.cache.get_or_make(kind, &key, |dir| {
            let root = dir.join("root");
            let downloads = dir.join("downloads");
            fs::create_dir_all(&downloads)?;
            let mut fetched = Vec::new();
            for package in packages {
                let (file, name, version, url) = match package {
                    Package::Debian(p) => (
                        self.apt.download(p, &downloads)?,
                        p.name.clone(),
                        p.version.clone(),
                        None,
                    ),
                    Package::Url(url) => {
                        let name = url.rsplit('/').next().unwrap_or("package").to_string();
                        let file = downloads.join(&name);
                        fetch::download(url, &file, None)?;
                        (file, name, url.clone(), Some(url.clone()))
                    }
                };
                let sha256 = sha256_file(&file)?;
                let pin = pins.and_then(|p| p.iter().find(|p| p.name == name));
                if let Some(pin) = pin.filter(|p| !p.sha256.is_empty()) {
                    if pin.sha256 != sha256 {
                        bail!(
                            "checksum mismatch for {}: the lock file says {}, the download gave {}; \
                             refusing to use it (if upstream really changed, delete the entry from images/kmatrix.lock)",
                            package.describe(), pin.sha256, sha256
                        );
                    }
                }
                archive::unpack(&file, &root)?;
                fetched.push(LockedPackage {
                    name,
                    version,
                    sha256,
                    url,
                });
            }
            fs::remove_dir_all(&downloads)?;
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

fn packages_key(packages: &[Package]) -> String {
    sha256_bytes(format!("packages\0{}", describe(packages)).as_bytes())
}

/// A built kernel is keyed by its source, base config, merged fragments and compiler.
fn build_key(tarball: &Path, base_config: &str, wanted: &kbuild::ConfigOptions) -> Result<String> {
    Ok(sha256_bytes(
        format!(
            "kernel-build\0{}\0{base_config}\0{}\0{}",
            sha256_file(tarball)?,
            kbuild::render(wanted),
            kbuild::compiler_identity()
        )
        .as_bytes(),
    ))
}

fn describe(packages: &[Package]) -> String {
    packages
        .iter()
        .map(Package::describe)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `lib/modules/<release>` (or `usr/lib/modules`) matching the image's release.
fn find_modules_dir(root: &Path, image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_string_lossy().into_owned();
    let release = match name.strip_prefix("vmlinuz-") {
        Some(release) => release.to_string(),
        // usr/lib/modules/<release>/vmlinuz
        None => image.parent()?.file_name()?.to_string_lossy().into_owned(),
    };
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|base| root.join(base).join(&release))
        .find(|dir| dir.join("modules.dep").is_file() || dir.join("kernel").is_dir())
}

/// The kernel image in an unpacked package: /boot/vmlinuz-<release>, or
/// (newer Debian) /usr/lib/modules/<release>/vmlinuz.
fn find_kernel_image(root: &Path) -> Result<PathBuf> {
    let in_boot = fs::read_dir(root.join("boot"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        });
    let in_modules = || {
        ["usr/lib/modules", "lib/modules"].iter().find_map(|base| {
            fs::read_dir(root.join(base))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path().join("vmlinuz"))
                .find(|p| p.is_file())
        })
    };
    let image = in_boot.or_else(in_modules).context(
        "the package has no kernel image (/boot/vmlinuz-* or /usr/lib/modules/*/vmlinuz)",
    )?;
    Ok(image.strip_prefix(root).expect("under root").to_path_buf())
}

/// Removes `pattern` (a path under `root`; a trailing `*` matches a prefix).
fn remove_matching(root: &Path, pattern: &str) -> Result<()> {
    let pattern = pattern.trim_start_matches('/');
    let Some(prefix) = pattern.strip_suffix('*') else {
        let path = root.join(pattern);
        if path.is_dir() {
            fs::remove_dir_all(&path)?;
        } else if path.exists() {
            fs::remove_file(&path)?;
        }
        return Ok(());
    };
    let (parent, stem) = match prefix.rsplit_once('/') {
        Some((parent, stem)) => (root.join(parent), stem.to_string()),
        None => (root.to_path_buf(), prefix.to_string()),
    };
    for entry in fs::read_dir(&parent)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        if entry.file_name().to_string_lossy().starts_with(&stem) {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
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
    fn a_built_kernel_is_keyed_by_what_its_fragments_ask_for() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("linux.tar.xz");
        fs::write(&tarball, b"source").unwrap();
        let key = |fragments: &[&str]| {
            let texts: Vec<String> = fragments.iter().map(|f| f.to_string()).collect();
            build_key(&tarball, "tinyconfig", &kbuild::merge_fragments(&texts)).unwrap()
        };
        let base = key(&["CONFIG_NET=y\n", "CONFIG_MPTCP=y\n"]);
        assert_eq!(
            base,
            key(&["# a comment\nCONFIG_NET=y\n", "CONFIG_MPTCP=y\n"])
        );
        assert_ne!(
            base,
            key(&["CONFIG_NET=y\n", "# CONFIG_MPTCP is not set\n"])
        );
        fs::write(&tarball, b"other source").unwrap();
        assert_ne!(base, key(&["CONFIG_NET=y\n", "CONFIG_MPTCP=y\n"]));
    }

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
