//! The floor every bench figure is divided by: QEMU with kmatrix's own
//! flags booting the kernel into an init that does nothing but power off.
//! Whatever kmatrix adds above it (planning, the initramfs it assembles,
//! the agent, the cell's own work) is the ratio.

use crate::backend::initramfs::Cpio;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The trivial init: flush and power off (QEMU runs with `-no-reboot`).
const POWEROFF_C: &str = r#"#include <sys/reboot.h>
#include <unistd.h>
int main(void) { sync(); reboot(RB_POWER_OFF); return 1; }
"#;

/// What the kernel prints last when the init powered it off.
const POWERED_OFF: &str = "reboot: Power down";

/// Builds the floor's initramfs in `dir`: a static init compiled with gcc
/// (libc6-dev's libc.a, which the set-up installs for the agent too).
pub fn trivial_initramfs(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let source = dir.join("poweroff.c");
    let init = dir.join("poweroff");
    fs::write(&source, POWEROFF_C)?;
    let status = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&init)
        .arg(&source)
        .status()
        .context("cannot run gcc for the floor's trivial init (scripts/setup.sh installs it)")?;
    if !status.success() {
        bail!("gcc could not build the floor's trivial init ({status}); is libc6-dev installed?");
    }
    let image = dir.join("poweroff.cpio");
    let mut cpio = Cpio::new(BufWriter::new(fs::File::create(&image)?));
    cpio.dir("dev")?;
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.file("init", 0o755, &fs::read(&init)?)?;
    cpio.finish()?;
    Ok(image)
}

/// Runs one floor boot; an error when the guest did not power off cleanly
/// (a floor that crashed would make every ratio a lie).
pub fn boot(argv: &[String], console: &Path) -> Result<()> {
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {}", argv[0]))?;
    let said = fs::read_to_string(console).unwrap_or_default();
    if !status.success() || !said.contains(POWERED_OFF) {
        bail!(
            "the bare boot did not power off cleanly ({status}); its console: {}",
            console.display()
        );
    }
    Ok(())
}
