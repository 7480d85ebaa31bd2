//! The uncompressed kernel inside a bzImage, for booting through its PVH
//! entry: QEMU then loads the ELF directly and the kernel skips its own
//! decompression (20–33 % of a bare boot under TCG on this machine).
//!
//! The bzImage header (boot protocol 2.08+) says where the compressed
//! payload is (`payload_offset`, `payload_length`, from the start of the
//! protected-mode code); its first bytes say how it is compressed.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The ELF note QEMU looks for: Xen's `XEN_ELFNOTE_PHYS32_ENTRY`.
const PVH_NOTE_NAME: &[u8] = b"Xen";
const PVH_NOTE_TYPE: u32 = 18;

/// How a payload is compressed, by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Lz4Legacy,
    Xz,
    Other,
}

/// The compressed payload of a bzImage and how it is compressed.
pub fn payload(bzimage: &[u8]) -> Result<(&[u8], Compression)> {
    if bzimage.len() < 0x250 || &bzimage[0x202..0x206] != b"HdrS" {
        bail!("not a bzImage (no HdrS header)");
    }
    let version = u16::from_le_bytes([bzimage[0x206], bzimage[0x207]]);
    if version < 0x208 {
        bail!("boot protocol {version:#x} predates payload_offset (2.08)");
    }
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let protected = (setup_sects + 1) * 512;
    let offset = u32::from_le_bytes(bzimage[0x248..0x24c].try_into()?) as usize;
    let length = u32::from_le_bytes(bzimage[0x24c..0x250].try_into()?) as usize;
    let start = protected + offset;
    let payload = bzimage
        .get(start..start + length)
        .context("the header's payload lies outside the file")?;
    let compression = match payload {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [0x02, 0x21, 0x4c, 0x18, ..] => Compression::Lz4Legacy,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
        _ => Compression::Other,
    };
    Ok((payload, compression))
}

/// The uncompressed kernel, or why it cannot be had here.
pub fn decompress(payload: &[u8], compression: Compression) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match compression {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(payload).read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            // The kernel appends the uncompressed size after the frame.
            zstd::stream::read::Decoder::new(payload)?
                .single_frame()
                .read_to_end(&mut out)?;
        }
        Compression::Lz4Legacy => out = lz4_legacy(payload)?,
        Compression::Xz => bail!("an xz payload (kmatrix decompresses gzip, zstd and lz4)"),
        Compression::Other => bail!("an unknown compression"),
    }
    Ok(out)
}

/// LZ4's legacy frame, as the kernel's `lz4 -l` writes it: the magic, then
/// blocks of at most 8 MiB, each after its compressed size; a trailing
/// 4-byte uncompressed size (the kernel's size_append) ends it.
fn lz4_legacy(payload: &[u8]) -> Result<Vec<u8>> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut at = 4;
    let mut block = vec![0u8; BLOCK];
    while at + 4 <= payload.len() {
        let size = u32::from_le_bytes(payload[at..at + 4].try_into()?);
        at += 4;
        if size == MAGIC {
            continue;
        }
        let Some(compressed) = payload.get(at..at + size as usize) else {
            break; // the trailing size, not a block
        };
        let n = lz4_flex::block::decompress_into(compressed, &mut block)
            .map_err(|e| anyhow::anyhow!("lz4 block at {at}: {e}"))?;
        out.extend_from_slice(&block[..n]);
        at += size as usize;
    }
    if out.is_empty() {
        bail!("an empty lz4 payload");
    }
    Ok(out)
}

/// Whether an ELF64 kernel has a PVH entry note.
pub fn has_pvh_entry(elf: &[u8]) -> bool {
    notes(elf).is_some_and(|notes| {
        notes
            .iter()
            .any(|(name, kind)| name == PVH_NOTE_NAME && *kind == PVH_NOTE_TYPE)
    })
}

/// (name, type) of every note in the ELF's PT_NOTE segments.
fn notes(elf: &[u8]) -> Option<Vec<(Vec<u8>, u32)>> {
    if elf.get(0..5)? != b"\x7fELF\x02" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let phoff = u64_at(0x20)? as usize;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let mut found = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let (offset, size) = (u64_at(ph + 8)? as usize, u64_at(ph + 32)? as usize);
        let mut at = offset;
        while at + 12 <= offset + size {
            let namesz = u32_at(at)? as usize;
            let descsz = u32_at(at + 4)? as usize;
            let kind = u32_at(at + 8)?;
            let name = elf.get(at + 12..at + 12 + namesz)?;
            let name = name.strip_suffix(&[0]).unwrap_or(name).to_vec();
            found.push((name, kind));
            at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    Some(found)
}

/// Writes `dir/vmlinux` when the image's payload decompresses here and has
/// a PVH entry, otherwise `dir/compressed-only.txt` saying why (a cached
/// answer too: the same image is not examined twice). Returns the file's
/// name, relative to `dir` as the cache wants it.
pub fn extract_pvh(image: &Path, dir: &Path) -> Result<PathBuf> {
    let bytes = fs::read(image)?;
    let why_not = match payload(&bytes) {
        Err(e) => format!("{e:#}"),
        Ok((payload, compression)) => match decompress(payload, compression) {
            Err(e) => format!("its payload is {e:#}"),
            Ok(elf) if has_pvh_entry(&elf) => {
                fs::write(dir.join("vmlinux"), elf)?;
                return Ok(PathBuf::from("vmlinux"));
            }
            Ok(_) => "its vmlinux has no PVH entry (CONFIG_PVH off)".into(),
        },
    };
    fs::write(dir.join("compressed-only.txt"), why_not)?;
    Ok(PathBuf::from("compressed-only.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE holding the given note.
    fn elf_with_note(name: &[u8], kind: u32) -> Vec<u8> {
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[0..5].copy_from_slice(b"\x7fELF\x02");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let note_at = elf.len() as u64;
        let mut note = Vec::new();
        let padded = (name.len() + 1).div_ceil(4) * 4;
        note.extend_from_slice(&((name.len() + 1) as u32).to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&kind.to_le_bytes());
        note.extend_from_slice(name);
        note.resize(12 + padded, 0);
        note.extend_from_slice(&0x100_0000u32.to_le_bytes());
        let ph = 0x40;
        elf[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        elf[ph + 8..ph + 16].copy_from_slice(&note_at.to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend_from_slice(&note);
        elf
    }

    #[test]
    fn the_pvh_note_is_found_and_others_are_not_taken_for_it() {
        assert!(has_pvh_entry(&elf_with_note(b"Xen", 18)));
        assert!(!has_pvh_entry(&elf_with_note(b"Xen", 17)));
        assert!(!has_pvh_entry(&elf_with_note(b"GNU", 18)));
        assert!(!has_pvh_entry(b"not an elf"));
    }

    #[test]
    fn a_legacy_lz4_payload_decompresses_across_blocks() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut payload = 0x184c_2102u32.to_le_bytes().to_vec();
        for chunk in data.chunks(30_000) {
            let block = lz4_flex::block::compress(chunk);
            payload.extend_from_slice(&(block.len() as u32).to_le_bytes());
            payload.extend_from_slice(&block);
        }
        payload.extend_from_slice(&(data.len() as u32).to_le_bytes());
        assert_eq!(lz4_legacy(&payload).unwrap(), data);
    }
}
