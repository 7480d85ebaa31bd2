//! Unpacking distribution packages without installing them: a .deb with
//! `dpkg-deb -x`, an .rpm with `rpm2cpio | cpio` (both Debian packages; the
//! formats' own tools rather than a parser of ours).

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    Deb,
    Rpm,
}

impl PackageFormat {
    /// Judged by the file's first bytes, not its name.
    pub fn sniff(path: &Path) -> Result<PackageFormat> {
        let mut head = [0u8; 8];
        let mut file =
            fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        std::io::Read::read_exact(&mut file, &mut head)
            .with_context(|| format!("{} is too short to be a package", path.display()))?;
        match head {
            [b'!', b'<', b'a', b'r', b'c', b'h', b'>', b'\n'] => Ok(PackageFormat::Deb),
            [0xed, 0xab, 0xee, 0xdb, ..] => Ok(PackageFormat::Rpm),
            _ => bail!("{} is neither a .deb nor an .rpm", path.display()),
        }
    }
}

/// Unpacks a package's files into `dest`.
pub fn unpack(package: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    match PackageFormat::sniff(package)? {
        PackageFormat::Deb => run(
            Command::new("dpkg-deb").arg("-x").arg(package).arg(dest),
            "dpkg-deb",
            "dpkg",
        ),
        PackageFormat::Rpm => unpack_rpm(package, dest),
    }
}

fn unpack_rpm(package: &Path, dest: &Path) -> Result<()> {
    let mut rpm2cpio = Command::new("rpm2cpio")
        .arg(package)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "cannot run rpm2cpio: install Debian's rpm2cpio package (scripts/setup.sh does)",
        )?;
    let cpio = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(dest)
        .stdin(rpm2cpio.stdout.take().expect("piped"))
        .output()
        .context("cannot run cpio: install Debian's cpio package")?;
    let converted = rpm2cpio.wait_with_output()?;
    if !converted.status.success() {
        bail!(
            "rpm2cpio {} failed: {}",
            package.display(),
            String::from_utf8_lossy(&converted.stderr).trim()
        );
    }
    if !cpio.status.success() {
        bail!(
            "cpio could not unpack {}: {}",
            package.display(),
            String::from_utf8_lossy(&cpio.stderr).trim()
        );
    }
    Ok(())
}

fn run(command: &mut Command, tool: &str, package: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {tool}: install Debian's {package} package"))?;
    if !output.status.success() {
        bail!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel-shaped package tree: /boot/vmlinuz-X and one module.
    fn payload(root: &Path) {
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join("boot/vmlinuz-9.9.9-test"), b"not really a kernel").unwrap();
        let modules = root.join("lib/modules/9.9.9-test/kernel/net");
        fs::create_dir_all(&modules).unwrap();
        fs::write(modules.join("veth.ko"), b"module").unwrap();
    }

    fn check_unpacked(dest: &Path) {
        assert_eq!(
            fs::read(dest.join("boot/vmlinuz-9.9.9-test")).unwrap(),
            b"not really a kernel"
        );
        assert!(dest
            .join("lib/modules/9.9.9-test/kernel/net/veth.ko")
            .is_file());
    }

    #[test]
    fn unpacks_a_deb_made_here() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        payload(&tree);
        fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        fs::write(
            tree.join("DEBIAN/control"),
            "Package: linux-image-test\nVersion: 9.9.9\nArchitecture: amd64\nMaintainer: kmatrix <kmatrix@example.invalid>\nDescription: test kernel\n",
        )
        .unwrap();
        let deb = dir.path().join("linux-image-test.deb");
        let built = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&tree)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(built.status.success(), "{built:?}");
        assert_eq!(PackageFormat::sniff(&deb).unwrap(), PackageFormat::Deb);
        let dest = dir.path().join("out");
        unpack(&deb, &dest).unwrap();
        check_unpacked(&dest);
    }

    #[test]
    fn unpacks_an_rpm_made_here() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("rpmbuild");
        let staged = dir.path().join("staged");
        payload(&staged);
        let spec = dir.path().join("kernel.spec");
        fs::write(
            &spec,
            format!(
                "Name: kernel-test\nVersion: 9.9.9\nRelease: 1\nSummary: test kernel\nLicense: GPL\nBuildArch: x86_64\n\
                 %%description\ntest kernel\n\
                 %%install\nmkdir -p %{{buildroot}}\ncp -a {}/. %{{buildroot}}/\n\
                 %%files\n/boot/vmlinuz-9.9.9-test\n/lib/modules/9.9.9-test\n",
                staged.display()
            ),
        )
        .unwrap();
        let built = Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args([
                "--define",
                "__os_install_post %{nil}",
                "--define",
                "debug_package %{nil}",
            ])
            .args(["--nodeps", "-bb"])
            .arg(&spec)
            .output()
            .expect("rpmbuild must be installed (scripts/setup.sh installs Debian's rpm)");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let rpm = top.join("RPMS/x86_64/kernel-test-9.9.9-1.x86_64.rpm");
        assert_eq!(PackageFormat::sniff(&rpm).unwrap(), PackageFormat::Rpm);
        let dest = dir.path().join("out");
        unpack(&rpm, &dest).unwrap();
        check_unpacked(&dest);
    }

    #[test]
    fn rejects_what_is_not_a_package() {
        let dir = tempfile::tempdir().unwrap();
        let html = dir.path().join("error.html");
        fs::write(&html, "<html>404 Not Found</html>").unwrap();
        assert!(format!("{:#}", unpack(&html, dir.path()).unwrap_err())
            .contains("neither a .deb nor an .rpm"));
    }
}
