//! Files as every layer writes them: atomically (a reader sees the old or
//! the new content, never a mix) and with the permissions the user's umask
//! gives, and folder trees copied from one place to another (reproducer
//! sources, vendored Go libraries, merged boot logs).

use anyhow::{Context, Result};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The first `tool` on PATH, as a shell would find it.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    })
}

/// `Ok` when every tool is on PATH; else an error naming the missing ones
/// after `who_needs` ("building Kubernetes needs").
pub fn require_tools(tools: &[&str], who_needs: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| which(tool).is_none())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{who_needs}: {} — scripts/setup.sh installs them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The number of a `Key:   N kB` line of a /proc file (`/proc/meminfo`,
/// `/proc/self/status`), in KiB.
pub fn proc_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Writes a file so that readers see the old or the new content, never a
/// mix. The file gets `0666` less the process umask (0644 typically), as
/// any file a user's tool writes: CI artifact servers and docs builds
/// running as other users read results.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".kmatrix-")
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|_| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// An advisory lock on a file, so two kmatrix processes never make the same
/// artifact (or refresh the same package lists) at once.
pub struct FileLock(File);

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = File::create(path)
            .with_context(|| format!("cannot create the lock file {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Copies `from` into `to`, taking only the files and folders `keep`
/// accepts, and never overwriting a file already at the target.
pub fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let path = entry?.path();
        if !keep(&path) {
            continue;
        }
        let target = to.join(path.file_name().expect("entries have names"));
        if path.is_dir() {
            copy_tree(&path, &target, keep)?;
        } else if !target.exists() {
            fs::copy(&path, &target).with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// Bytes under `dir`, counting each file and folder as at least one 4 KiB
/// block (what a file system spends on it).
pub fn tree_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => tree_size(&entry.path()) + 4096,
            Ok(_) => entry.metadata().map(|m| m.len().max(4096)).unwrap_or(4096),
            Err(_) => 0,
        })
        .sum()
}

/// Keeps everything.
/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn all(_: &Path) -> bool {
    true
}

/// `cp -a from/. to`: symlinks, modes and owners as they are.
pub fn copy_preserving(from: &Path, to: &Path) -> Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .context("cannot run cp")?;
    anyhow::ensure!(
        status.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn proc_kib_reads_the_named_line_only() {
        let status = "Name:\tkmatrix\nVmHWMx:\t1 kB\nVmHWM:\t   56504 kB\nVmRSS:\t 3 kB\n";
        assert_eq!(proc_kib(status, "VmHWM"), Some(56504));
        assert_eq!(
            proc_kib("MemTotal:       24684108 kB\n", "MemTotal"),
            Some(24684108)
        );
        assert_eq!(proc_kib(status, "VmSwap"), None);
    }

    use super::*;

    #[test]
    fn atomic_writes_follow_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cells.jsonl");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let umask = current_umask();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask, "mode {mode:o} under umask {umask:o}");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    fn current_umask() -> u32 {
        let text = fs::read_to_string("/proc/self/status").unwrap();
        let line = text.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
    }

    #[test]
    fn filters_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("a.go"), "new").unwrap();
        fs::write(from.join("a_test.go"), "test").unwrap();
        fs::write(from.join("sub/b.go"), "b").unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(to.join("a.go"), "kept").unwrap();
        copy_tree(&from, &to, &|p| !p.to_string_lossy().ends_with("_test.go")).unwrap();
        assert_eq!(fs::read_to_string(to.join("a.go")).unwrap(), "kept");
        assert!(!to.join("a_test.go").exists());
        assert_eq!(fs::read_to_string(to.join("sub/b.go")).unwrap(), "b");
    }
}
