//! The boot scratch: a folder in the temporary directory per run, owned by
//! the run's process (a run killed with -9 cannot remove its own; the next
//! run sweeps it), and the free-space check made before any boot.

use crate::provision::Provisioned;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;

/// A new scratch folder, after removing those of runs that died.
pub(super) fn make() -> Result<tempfile::TempDir> {
    sweep_dead_scratch(&std::env::temp_dir());
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir()
        .context("cannot make a scratch folder in the temporary directory")?;
    fs::write(
        scratch.path().join(SCRATCH_OWNER),
        std::process::id().to_string(),
    )
    .context("cannot write into the scratch folder")?;
    Ok(scratch)
}

/// Scratch folders in the temporary directory: `kmatrix-run-XXXXXX`, with
/// the owning process's pid inside.
const SCRATCH_PREFIX: &str = "kmatrix-run-";
const SCRATCH_OWNER: &str = "owner.pid";

/// Removes the scratch (decompressed modules, initramfs images: megabytes
/// per boot) of runs that were killed before they could; folders without
/// an owner file, or whose owner lives, are left alone.
fn sweep_dead_scratch(temp: &Path) {
    let Ok(entries) = fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            continue;
        }
        let Some(pid) = fs::read_to_string(entry.path().join(SCRATCH_OWNER))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Room a run's results need beside its boots' logs.
const RESULTS_ROOM: u64 = 16 << 20;

/// Refuses to boot when the results folder or the boot scratch cannot hold
/// what a boot writes: a clear error naming the folder, before any cell
/// could be blamed for a full disk.
pub(super) fn check_free_space(
    out: &Path,
    scratch: &Path,
    provisioned: &Provisioned,
) -> Result<()> {
    let biggest_rootfs = provisioned
        .rootfs
        .values()
        .filter_map(|r| r.as_ref().ok())
        .map(|root| crate::files::tree_size(root))
        .max()
        .unwrap_or(0);
    let files: u64 = provisioned
        .files
        .values()
        .filter_map(|f| f.as_ref().ok())
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let agent = fs::metadata(&provisioned.agent)
        .map(|m| m.len())
        .unwrap_or(0);
    // An initramfs holds the agent, the files, a root filesystem and modules.
    let initramfs = agent + files + biggest_rootfs + (32 << 20);
    for (dir, need, what) in [
        (
            out,
            RESULTS_ROOM,
            "the results (cells.jsonl, reports, console logs)",
        ),
        (scratch, initramfs, "one boot's initramfs"),
    ] {
        let free = fs4::available_space(dir)
            .with_context(|| format!("cannot tell the free space of {}", dir.display()))?;
        if free < need {
            bail!(
                "not enough free space in {}: {} MB free, {what} need about {} MB; free some space{}",
                dir.display(),
                free >> 20,
                need >> 20,
                if dir == scratch {
                    " or point TMPDIR at a larger filesystem"
                } else {
                    " or choose another --out"
                }
            );
        }
    }
    Ok(())
}
