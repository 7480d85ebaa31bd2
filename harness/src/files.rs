//! Copying folder trees, for the places that assemble one from another
//! (reproducer sources, vendored Go libraries, merged boot logs).

use anyhow::{Context, Result};
use std::fs;
use std::path::Path;

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

/// Keeps everything.
pub fn all(_: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

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
