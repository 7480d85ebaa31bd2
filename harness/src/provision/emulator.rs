//! The emulator: the catalog's pinned QEMU (Debian packages unpacked into
//! the cache, sha256 in the lock, run from the tree with its own firmware),
//! or the host's `qemu-system-x86_64` when asked for or when the pinned one
//! cannot start here — which the run then says.

use super::Provisioner;
use crate::ids::ArtifactKey;
use crate::inputs::EmulatorEntry;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host's emulator, found on `PATH`.
pub const HOST_QEMU: &str = "qemu-system-x86_64";

/// An emulator ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    pub binary: PathBuf,
    /// Its firmware folder (`-L`), for a pinned emulator.
    pub firmware: Option<PathBuf>,
    /// The first line of `--version`.
    pub version: String,
    /// Where it came from, in words (for `run.json` and the reports).
    pub origin: String,
}

/// Which emulator a run asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorChoice {
    /// The catalog's default (`None`) or the one named.
    Pinned(Option<String>),
    /// The host's `qemu-system-x86_64` (`--emulator host`).
    Host,
}

impl EmulatorChoice {
    /// What `--emulator` asked for: `host`, a catalog id, or nothing.
    pub fn from_arg(emulator: Option<&str>) -> EmulatorChoice {
        match emulator {
            Some("host") => EmulatorChoice::Host,
            other => EmulatorChoice::Pinned(other.map(str::to_string)),
        }
    }
}

impl Emulator {
    /// For a run none of whose cells boots a guest (containers, clusters):
    /// no emulator is fetched or asked for.
    pub fn unused() -> Emulator {
        Emulator {
            binary: PathBuf::from(HOST_QEMU),
            firmware: None,
            version: "none".into(),
            origin: "no cell of this run boots a guest".into(),
        }
    }

    /// The host's QEMU, or why there is none.
    pub fn host(why: &str) -> Result<Emulator> {
        let version = version_of(Path::new(HOST_QEMU)).with_context(|| {
            format!("{HOST_QEMU} not found or not runnable; install Debian's qemu-system-x86 (scripts/setup.sh does)")
        })?;
        Ok(Emulator {
            binary: PathBuf::from(HOST_QEMU),
            firmware: None,
            version,
            origin: format!("the host's {HOST_QEMU} ({why})"),
        })
    }
}

/// The first line `BINARY --version` prints; an error when it cannot run
/// (missing libraries, another architecture).
pub fn version_of(binary: &Path) -> Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} --version failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

impl Provisioner<'_> {
    /// The emulator `choice` asks for. A pinned one that cannot be fetched or
    /// cannot start on this host falls back to the host's, with the reason
    /// in its origin (and a note); no emulator at all is an error.
    pub fn emulator(&self, choice: &EmulatorChoice) -> Result<Emulator> {
        let wanted = match choice {
            EmulatorChoice::Host => return Emulator::host("--emulator host"),
            EmulatorChoice::Pinned(id) => self.catalog.emulator(id.as_deref())?,
        };
        let Some(entry) = wanted else {
            return Emulator::host("the catalog pins no emulator (no images/emulators.toml)");
        };
        match self.pinned_emulator(entry) {
            Ok(emulator) => Ok(emulator),
            // Bytes that are not the pinned ones are refused, not replaced
            // by another emulator: the run stops and says which pin.
            Err(e) if format!("{e:#}").contains("checksum mismatch") => Err(e),
            Err(e) => {
                let why = format!("the pinned {} cannot run here: {e:#}", entry.id);
                self.events
                    .note(format!("note: {why}; using the host's {HOST_QEMU}"));
                Emulator::host(&why)
            }
        }
    }

    fn pinned_emulator(&self, entry: &EmulatorEntry) -> Result<Emulator> {
        let resolve = || self.resolve_in(&entry.packages, &entry.suite);
        let binary_rel = PathBuf::from(&entry.binary);
        let (binary, origin) = self.pinned_artifact(
            &ArtifactKey::Emulator(entry.id.clone()),
            &resolve,
            &|root| {
                let binary = root.join(&binary_rel);
                if !binary.is_file() {
                    bail!("the packages hold no {}", binary_rel.display());
                }
                Ok(binary_rel.clone())
            },
        )?;
        // Checked on every use, not only when unpacked: the host's libraries
        // may have changed since.
        let version = version_of(&binary)?;
        let root = binary
            .ancestors()
            .find(|p| p.file_name().is_some_and(|n| n == "root"))
            .expect("pinned payloads live under root/")
            .to_path_buf();
        Ok(Emulator {
            binary,
            firmware: Some(root.join(&entry.firmware)),
            version,
            origin: format!("pinned {} from Debian {} ({origin})", entry.id, entry.suite),
        })
    }
}
