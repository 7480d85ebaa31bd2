//! A kernel given as a path wherever a kernel id is taken: your own build
//! (`--kernel ./linux/arch/x86/boot/bzImage`, or a `vmlinux`), with its
//! modules when it has any (`--kernel ./bzImage,modules=./mods`). Its id is
//! the file's name and a digest of what boots (`bzImage@3f9ed566ba8e`;
//! ids name folders, so no path), its description the absolute path, its
//! release comes from the image itself, and its sha256 goes into every
//! cell id on it: a rebuilt kernel makes new cells, never a stale result.

use super::catalog::{KernelEntry, KernelSource, Source};
use crate::diagnostic::FileError;
use crate::ids::KernelId;
use std::fs;
use std::path::{Path, PathBuf};

/// What separates the image from its modules folder in `--kernel`.
const MODULES: &str = ",modules=";

/// A catalog id never holds `/`; a path always can (`./bzImage`).
pub fn is_path(given: &str) -> bool {
    given.contains('/')
}

/// The catalog entry of a kernel given as a path; bad input naming the
/// file when it is not a kernel image (or its modules folder is missing).
pub fn entry(given: &str) -> Result<KernelEntry, FileError> {
    let (image, modules) = match given.split_once(MODULES) {
        Some((image, modules)) => (image, Some(modules)),
        None => (given, None),
    };
    let image_path = Path::new(image);
    let image = fs::canonicalize(image_path).map_err(|e| {
        FileError::whole_file(
            image_path,
            format!("no kernel image here ({e}) (from --kernel)"),
            "give the path of a bzImage or vmlinux (e.g. ./linux/arch/x86/boot/bzImage); a catalog id has no `/`",
        )
    })?;
    let bytes = fs::read(&image).map_err(|e| {
        FileError::whole_file(
            &image,
            format!("cannot read it: {e}"),
            "give a readable kernel image",
        )
    })?;
    let release = release_of(&bytes).ok_or_else(|| {
        FileError::whole_file(
            &image,
            "not a Linux kernel image: no bzImage header and no `Linux version` string",
            "give arch/x86/boot/bzImage or vmlinux of a kernel build",
        )
    })?;
    let modules = modules
        .map(|dir| modules_dir(Path::new(dir), &release))
        .transpose()?;
    let sha256 = crate::hashing::sha256_bytes(&bytes);
    // Ids name folders (boot logs): no `/`. The file's name and a digest
    // of what boots (the image, and where its modules come from).
    let digest = match &modules {
        Some(dir) => {
            crate::hashing::sha256_bytes(format!("{sha256}\0{}", dir.display()).as_bytes())
        }
        None => sha256.clone(),
    };
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = format!("{name}@{}", &digest[..12]);
    Ok(KernelEntry {
        id: KernelId::new(id),
        version: release.clone(),
        description: format!("your kernel image {} ({release})", image.display()),
        stands_in_for: None,
        checksums: None,
        aliases: Vec::new(),
        source: Source::Kernel(KernelSource::LocalImage {
            image,
            modules,
            sha256,
        }),
    })
}

/// The folder holding `modules.dep`: the one given, or its
/// `lib/modules/<release>` or `<release>` (what `make modules_install
/// INSTALL_MOD_PATH=DIR` writes).
fn modules_dir(given: &Path, release: &str) -> Result<PathBuf, FileError> {
    let dir = fs::canonicalize(given).map_err(|e| {
        FileError::whole_file(
            given,
            format!("no modules folder here ({e}) (from --kernel …{MODULES})"),
            "give the folder `make modules_install INSTALL_MOD_PATH=DIR` wrote, or its lib/modules/<release>",
        )
    })?;
    [
        dir.clone(),
        dir.join("lib/modules").join(release),
        dir.join(release),
    ]
    .into_iter()
    .find(|d| d.join("modules.dep").is_file())
    .ok_or_else(|| {
        FileError::whole_file(
            &dir,
            format!("no modules.dep for {release} in it or in lib/modules/{release}"),
            "run `make modules_install INSTALL_MOD_PATH=DIR` (it runs depmod) and give DIR",
        )
    })
}

/// The release a kernel image names: a bzImage's header points at its
/// version string (boot protocol 2.00+, `kernel_version` at 0x20e); a
/// vmlinux holds `Linux version <release> ...` in its data.
pub fn release_of(bytes: &[u8]) -> Option<String> {
    let first_word = |text: &[u8]| {
        let word: Vec<u8> = text
            .iter()
            .copied()
            .take_while(|b| !b.is_ascii_whitespace() && *b != 0)
            .collect();
        (!word.is_empty()).then(|| String::from_utf8_lossy(&word).into_owned())
    };
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        let offset = u16::from_le_bytes([*bytes.get(0x20e)?, *bytes.get(0x20f)?]) as usize;
        return first_word(bytes.get(0x200 + offset..)?);
    }
    if bytes.starts_with(b"\x7fELF") {
        const MARK: &[u8] = b"Linux version ";
        let at = bytes.windows(MARK.len()).position(|w| w == MARK)?;
        return first_word(&bytes[at + MARK.len()..]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bzimage_header_names_its_release() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        image[0x300..0x320].copy_from_slice(b"6.12.0-mine (me@host) #1 SMP\0\0\0\0");
        assert_eq!(release_of(&image).as_deref(), Some("6.12.0-mine"));
        let mut elf = b"\x7fELF....junk Linux version 6.1.0-x (gcc) #2".to_vec();
        elf.push(0);
        assert_eq!(release_of(&elf).as_deref(), Some("6.1.0-x"));
        assert_eq!(release_of(b"#!/bin/sh"), None);
    }

    #[test]
    fn a_missing_image_is_named_with_the_fix() {
        let error = entry("./no/such/bzImage").unwrap_err().to_string();
        assert!(error.contains("no/such/bzImage"), "{error}");
        assert!(error.contains("no kernel image here"), "{error}");
        assert!(is_path("./bzImage") && !is_path("debian-6.1"));
    }
}
