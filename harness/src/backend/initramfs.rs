//! Writes the guest's initramfs: an uncompressed newc cpio archive (the
//! format the kernel unpacks; see the kernel's
//! Documentation/driver-api/early-userspace/buffer-format.rst). Uncompressed,
//! because decompressing in an emulated guest costs more than reading.

use super::BootRequest;
use kmatrix_agent::JOB_PATH;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const S_IFLNK: u32 = 0o120000;

/// A cpio newc archive under construction. Entries get fixed owners and
/// times so the same inputs give the same bytes.
pub struct Cpio<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Cpio {
            out,
            written: 0,
            next_inode: 1,
        }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a folder tree (files with their modes, symlinks, folders) under `prefix`.
    pub fn tree(&mut self, root: &std::path::Path, prefix: &str) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mut entries: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                self.symlink(&name, &target.to_string_lossy())?;
            } else if meta.is_dir() {
                self.entry(
                    &name,
                    S_IFDIR | (meta.permissions().mode() & 0o7777),
                    2,
                    (0, 0),
                    &[],
                )?;
                self.tree(&entry.path(), &name)?;
            } else if meta.is_file() {
                self.file(
                    &name,
                    meta.permissions().mode(),
                    &std::fs::read(entry.path())?,
                )?;
            }
        }
        Ok(())
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio path {path:?}"),
            ));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let inode = self.next_inode;
        self.next_inode += 1;
        let fields = [
            inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.write(&[0u8; 3][..padding as usize])
    }
}

/// Writes the initramfs for a boot: the agent as /init, the job, and the files.
pub fn write_initramfs(request: &BootRequest, path: &Path) -> std::io::Result<()> {
    let mut cpio = Cpio::new(BufWriter::new(File::create(path)?));
    for root in &request.rootfs {
        cpio.tree(root, "")?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    for dir in ["dev", "proc", "sys", "tmp", "run", "kmatrix"] {
        dirs.insert(dir.to_string());
    }
    for file in &request.files {
        let mut parent = Path::new(file.guest_path.trim_start_matches('/')).parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    // BTreeSet order puts every parent before its children.
    for dir in &dirs {
        cpio.dir(dir)?;
    }
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.file("init", 0o755, &fs::read(&request.agent)?)?;
    cpio.file(
        JOB_PATH,
        0o644,
        serde_json::to_string_pretty(&request.job)
            .expect("jobs serialise")
            .as_bytes(),
    )?;
    for file in &request.files {
        cpio.file(&file.guest_path, 0o755, &fs::read(&file.host_path)?)?;
    }
    cpio.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/daemon"), b"ELF").unwrap();
        std::os::unix::fs::symlink("usr/sbin", dir.path().join("sbin")).unwrap();
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("dev").unwrap();
        cpio.char_device("dev/console", 0o600, 5, 1).unwrap();
        cpio.dir("kmatrix").unwrap();
        cpio.file("/init", 0o755, b"#!agent").unwrap();
        cpio.file("kmatrix/job.json", 0o644, b"{\"a\":1}").unwrap();
        cpio.tree(dir.path(), "rootfs").unwrap();
        cpio.finish().unwrap()
    }

    #[test]
    fn header_layout_and_alignment() {
        let bytes = sample();
        assert_eq!(&bytes[..6], b"070701");
        // First name follows the 110-byte header.
        assert_eq!(&bytes[110..114], b"dev\0");
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        // Deterministic: same entries, same bytes.
        assert_eq!(bytes, sample());
    }

    #[test]
    fn gnu_cpio_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let listing = Command::new("cpio")
            .args(["-it", "-F"])
            .arg(&archive)
            .output()
            .expect("GNU cpio must be installed (scripts/setup.sh installs it)");
        assert!(listing.status.success(), "{listing:?}");
        let long = Command::new("cpio")
            .args(["-itv", "-F"])
            .arg(&archive)
            .output()
            .unwrap();
        let long = String::from_utf8_lossy(&long.stdout);
        assert!(long.contains("rootfs/sbin -> usr/sbin"), "{long}");
        let names = String::from_utf8_lossy(&listing.stdout);
        for name in [
            "dev",
            "dev/console",
            "kmatrix",
            "init",
            "kmatrix/job.json",
            "rootfs/usr/sbin/daemon",
            "rootfs/sbin",
        ] {
            assert!(
                names.lines().any(|l| l == name),
                "{name} missing in {names}"
            );
        }
    }
}
