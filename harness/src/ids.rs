//! Typed names: a kernel id, a scenario id and a cell id are different
//! things even though all three are strings on disk, and an artifact's key in
//! the lock file is built in exactly one place.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

string_id!(
    /// A kernel of `images/kernels.toml`. Command-line ids become one only
    /// through the catalog (`Catalog::kernel_ids_from`), which is the one
    /// place an unknown kernel is reported.
    KernelId
);
string_id!(
    /// A scenario folder's id (the folder name).
    ScenarioId
);
string_id!(
    /// 16 hex digits hashing every input of a cell.
    CellId
);

/// What an entry of `images/kmatrix.lock` pins. Its text is the lock file's
/// key, written here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArtifactKey {
    /// A packaged kernel's image and modules.
    Kernel(KernelId),
    /// A kernel source tarball: a Debian `linux-source-*` package or a URL.
    KernelSource(String),
    /// A Go toolchain of `images/toolchains.toml`.
    Toolchain(String),
    /// Debian Go library packages vendored into reproducers (names sorted).
    GoPackages(Vec<String>),
    /// A guest root filesystem, by the first 16 hex digits of its spec's hash.
    Rootfs(String),
    /// An emulator of `images/emulators.toml`.
    Emulator(String),
    /// A container image, by its reference as written: pins the manifest digest.
    Image(String),
    /// A Go module version, `path@version`: pins its `h1:` hash.
    GoModule(String),
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactKey::Kernel(id) => write!(f, "kernel:{id}"),
            ArtifactKey::KernelSource(source) => write!(f, "kernel-source:{source}"),
            ArtifactKey::Toolchain(id) => write!(f, "toolchain:{id}"),
            ArtifactKey::GoPackages(names) => write!(f, "go-packages:{}", names.join("+")),
            ArtifactKey::Rootfs(hash) => write!(f, "rootfs:{hash}"),
            ArtifactKey::Emulator(id) => write!(f, "emulator:{id}"),
            ArtifactKey::Image(reference) => write!(f, "image:{reference}"),
            ArtifactKey::GoModule(reference) => write!(f, "module:{reference}"),
        }
    }
}

/// A key that orders version ids as versions, not as text: runs of digits
/// compare as numbers (`v0.8.2` before `v0.8.10`), the rest as text.
pub fn version_order_key(id: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = id;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_versions() {
        let mut ids = vec![
            "v0.8.10",
            "v0.8.2",
            "v0.8.9",
            "v1.13.15",
            "v1.13.2",
            "v0.8.10-rc1",
        ];
        ids.sort_by_key(|v| version_order_key(v));
        assert_eq!(
            ids,
            [
                "v0.8.2",
                "v0.8.9",
                "v0.8.10",
                "v0.8.10-rc1",
                "v1.13.2",
                "v1.13.15"
            ]
        );
    }

    #[test]
    fn lock_keys_keep_their_committed_spelling() {
        assert_eq!(
            ArtifactKey::Kernel(KernelId::new("debian-6.1")).to_string(),
            "kernel:debian-6.1"
        );
        assert_eq!(
            ArtifactKey::GoPackages(vec!["a".into(), "b".into()]).to_string(),
            "go-packages:a+b"
        );
        assert_eq!(
            ArtifactKey::KernelSource("linux-source-5.10".into()).to_string(),
            "kernel-source:linux-source-5.10"
        );
    }

    #[test]
    fn ids_serialise_as_plain_strings() {
        let id = KernelId::new("debian-6.1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"debian-6.1\"");
    }
}
