//! A version's real artifact as a file system for the guest: an image
//! (`image.rs`), a Debian package version's files, or a local binary — each
//! an ext4 the guest mounts read-only and runs as a container.

use super::image::{make_ext4, ImageArtifact, FLATTEN_VERSION};
use super::Provisioner;
use crate::hashing::{sha256_bytes, sha256_file};
use crate::inputs::scenario::{Artifact, DebianPackageSpec, GuestSpec};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Cache kind of the artifacts' `go version -m` outputs.
const BUILD_INFO: &str = "artifact-build-info";

impl Provisioner<'_> {
    /// The file system of `artifact`, with `command` as what it runs.
    pub fn artifact(&self, artifact: &Artifact, command: &[String]) -> Result<ImageArtifact> {
        let mut image = match artifact {
            Artifact::Image(reference) => self.image(reference)?,
            Artifact::DebianPackage(spec) => self.package_image(spec)?,
            Artifact::Binary(path) => self.binary_image(path)?,
            Artifact::GoModule(spec) => self.module_image(spec)?,
        };
        if !command.is_empty() {
            image.entrypoint = command.to_vec();
            image.cmd = Vec::new();
        }
        image.build_info = self.main_program_build_info(&image).ok();
        Ok(image)
    }

    /// The Go build info of the program the artifact runs: copied out of
    /// its file system with debugfs, read with a cached Go toolchain, once
    /// per artifact disk (kept in the cache: a warm run runs neither).
    fn main_program_build_info(
        &self,
        image: &ImageArtifact,
    ) -> Result<super::buildinfo::BuildInfo> {
        // The disk lives in a content-keyed cache entry: its path names it.
        let reader = self.catalog.toolchains.keys().next_back();
        let key = sha256_bytes(
            format!(
                "buildinfo\0{}\0{:?}\0{:?}\0{reader:?}",
                image.disk.display(),
                image.entrypoint,
                image.cmd
            )
            .as_bytes(),
        );
        let saved = self.cache.get_or_make(BUILD_INFO, &key, |dir| {
            let text = self.read_main_program_build_info(image)?;
            fs::write(dir.join("go-version-m.txt"), text)?;
            Ok(PathBuf::from("go-version-m.txt"))
        })?;
        super::buildinfo::parse(&fs::read_to_string(saved)?)
    }

    /// `go version -m` of the program the artifact runs.
    fn read_main_program_build_info(&self, image: &ImageArtifact) -> Result<String> {
        let program = image
            .entrypoint
            .first()
            .or(image.cmd.first())
            .context("the artifact runs nothing")?;
        let candidates: Vec<String> = if program.starts_with('/') {
            vec![program.clone()]
        } else {
            ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(|dir| format!("{dir}/{program}"))
                .collect()
        };
        let scratch = tempfile::tempdir()?;
        let copy = scratch.path().join("program");
        for candidate in candidates {
            let _ = std::process::Command::new("debugfs")
                .args(["-R", &format!("dump {candidate} {}", copy.display())])
                .arg(&image.disk)
                .output();
            if fs::metadata(&copy).is_ok_and(|m| m.len() > 0) {
                let toolchain = self
                    .catalog
                    .toolchains
                    .keys()
                    .next_back()
                    .context("no Go toolchain in the catalog")?
                    .clone();
                let go = self.toolchain(&toolchain)?;
                return super::buildinfo::version_m(&go.goroot, &copy);
            }
        }
        anyhow::bail!("{program} is not in the artifact")
    }

    /// A Debian package version with its dependency closure, as the suite
    /// installs it on an empty system (a dynamically linked program needs
    /// its libc): the `[guest]` root filesystem machinery, pinned the same way.
    fn package_image(&self, spec: &DebianPackageSpec) -> Result<ImageArtifact> {
        let root = self.rootfs(&GuestSpec {
            suite: spec.suite.clone(),
            packages: vec![format!("{}={}", spec.package, spec.version)],
            exclude: vec!["usr/share/doc/*".into(), "usr/share/man/*".into()],
        })?;
        let disk = self.cache.get_or_make(
            "artifact-images",
            &sha256_bytes(
                format!("package-image\0{}\0{}", root.display(), FLATTEN_VERSION).as_bytes(),
            ),
            |dir| {
                // A closure without base-files lacks the merged-/usr links
                // (/lib64/ld-linux-x86-64.so.2 lives under /usr/lib64).
                let tree = dir.join("root");
                crate::files::copy_tree(&root, &tree, &crate::files::all)?;
                super::image::merged_usr_links(&tree)?;
                make_ext4(&tree, &dir.join("rootfs.ext4"))?;
                Ok(PathBuf::from("rootfs.ext4"))
            },
        )?;
        Ok(ImageArtifact {
            reference: format!("debian:{} {}={}", spec.suite, spec.package, spec.version),
            digest: format!("{}={}", spec.package, spec.version),
            root: disk.with_file_name("root"),
            disk,
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: None,
            build_info: None,
        })
    }

    /// A local binary alone in a file system, at `/usr/local/bin/NAME`.
    pub fn binary_image(&self, path: &Path) -> Result<ImageArtifact> {
        let sha = sha256_file(path)
            .with_context(|| format!("cannot read the binary {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "program".into());
        let disk = self.cache.get_or_make(
            "artifact-images",
            &sha256_bytes(format!("binary-image\0{sha}\0{name}\0{FLATTEN_VERSION}").as_bytes()),
            |dir| {
                let root = dir.join("root");
                let bin = root.join("usr/local/bin");
                fs::create_dir_all(&bin)?;
                fs::create_dir_all(root.join("tmp"))?;
                fs::copy(path, bin.join(&name))?;
                make_ext4(&root, &dir.join("rootfs.ext4"))?;
                Ok(PathBuf::from("rootfs.ext4"))
            },
        )?;
        Ok(ImageArtifact {
            reference: format!("binary:{}", path.display()),
            digest: format!("sha256:{sha}"),
            root: disk.with_file_name("root"),
            disk,
            entrypoint: vec![format!("/usr/local/bin/{name}")],
            cmd: Vec::new(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            working_dir: None,
            build_info: None,
        })
    }
}
