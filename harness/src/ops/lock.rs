//! `kmatrix lock accept KEY...`: the one way a pin in `images/kmatrix.lock`
//! changes. Runs never move a pin (a mismatch or a vanished version is an
//! error naming this command); here the user asks for it. For each chosen
//! entry it fetches what the source serves now (the archive, the URL, the
//! registry, the module proxy) as a first fetch would, replaces exactly that
//! entry, and reports the old and new digests. If the fetch fails, the old
//! entry is put back: the lock ends as it began.

use crate::diagnostic::FileError;
use crate::events::Events;
use crate::ids::{ArtifactKey, KernelId};
use crate::inputs::scenario::{Artifact, GoModuleSpec, GuestSpec};
use crate::inputs::{Catalog, Lock, LockedArtifact};
use crate::provision::EmulatorChoice;
use crate::provision::Provisioner;
use crate::sources::cache::Cache;
use crate::Project;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// One entry the user accepted anew.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub key: String,
    pub old: LockedArtifact,
    pub new: LockedArtifact,
}

impl Accepted {
    pub fn changed(&self) -> bool {
        self.old.packages != self.new.packages
    }
}

/// What an entry is re-fetched as.
enum Target {
    Kernel(KernelId),
    Toolchain(String),
    Emulator(String),
    Image(String),
    Rootfs(GuestSpec),
    Module(Box<GoModuleSpec>),
}

/// Accepts each of `keys` in turn; stops at the first that cannot be
/// fetched (the ones before it stay accepted, that one is restored).
pub fn accept(
    project: &Project,
    cache_root: &Path,
    keys: &[String],
    events: Events,
) -> Result<Vec<Accepted>> {
    let catalog = project.catalog()?;
    let scenarios = crate::inputs::scenario::load_all(&project.scenarios_dir, &catalog)?;
    let cache = Cache::open(cache_root)?.watched_by(events.clone());
    let mut accepted = Vec::new();
    for key in keys {
        let mut lock = Lock::load(&project.images_dir())?;
        let Some(old) = lock.get_key(key).cloned() else {
            return Err(unknown_key(project, key, &lock).into());
        };
        let target = target(project, &catalog, &scenarios, key)?;
        let provisioner = Provisioner::new(&cache, &catalog, false, events.clone())?;
        let artifact = artifact_key(&target)?;
        match &target {
            Target::Rootfs(spec) => provisioner.forget_rootfs(spec)?,
            _ => provisioner.forget_cached(&artifact, &old)?,
        }
        lock.remove(key)?;
        // A fresh provisioner reads the lock without the entry.
        let provisioner = Provisioner::new(&cache, &catalog, false, events.clone())?;
        let fetched = fetch(&provisioner, &target).and_then(|()| {
            Lock::load(&project.images_dir())?
                .get_key(key)
                .cloned()
                .ok_or_else(|| anyhow!("fetching {key} pinned nothing"))
        });
        match fetched {
            Ok(new) => accepted.push(Accepted {
                key: key.clone(),
                old,
                new,
            }),
            Err(e) => {
                Lock::load(&project.images_dir())?.record(&artifact, old)?;
                return Err(e.context(format!(
                    "cannot accept {key}: the source could not be fetched; the lock keeps its old entry"
                )));
            }
        }
    }
    Ok(accepted)
}

fn unknown_key(project: &Project, key: &str, lock: &Lock) -> FileError {
    let kind = key.split(':').next().unwrap_or(key);
    let near: Vec<String> = lock
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{kind}:")))
        .take(12)
        .collect();
    FileError::whole_file(
        &project.images_dir().join(crate::inputs::lock::LOCK_FILE),
        format!("no entry `{key}`"),
        &if near.is_empty() {
            "give a key as the lock spells it, e.g. `kernel:debian-6.1`".to_string()
        } else {
            format!("its `{kind}:` entries: {}", near.join(", "))
        },
    )
}

/// What `key` names, found in the catalog or the scenarios; an entry this
/// command cannot fetch on its own is bad input, and the lock is untouched.
fn target(
    project: &Project,
    catalog: &Catalog,
    scenarios: &[crate::inputs::Scenario],
    key: &str,
) -> Result<Target> {
    let lock_file = project.images_dir().join(crate::inputs::lock::LOCK_FILE);
    let bad = |why: String, fix: &str| -> anyhow::Error {
        FileError::whole_file(&lock_file, why, fix).into()
    };
    let (kind, name) = key.split_once(':').unwrap_or((key, ""));
    Ok(match kind {
        "kernel" if catalog.kernels.contains_key(&KernelId::new(name)) => {
            Target::Kernel(KernelId::new(name))
        }
        "toolchain" if catalog.toolchains.contains_key(name) => Target::Toolchain(name.into()),
        "emulator" if catalog.emulators.contains_key(name) => Target::Emulator(name.into()),
        "image" => Target::Image(name.into()),
        "rootfs" => scenarios
            .iter()
            .filter_map(|s| s.guest.clone())
            .find(|spec| {
                Provisioner::rootfs_key(spec).is_ok_and(|k| k.to_string() == key)
            })
            .map(Target::Rootfs)
            .ok_or_else(|| {
                bad(
                    format!("`{key}` is no scenario's [guest] root filesystem"),
                    "a version's Debian package or the cluster's node tree is pinned anew by deleting its entry and running what uses it (the run prints the new pin)",
                )
            })?,
        "module" => scenarios
            .iter()
            .flat_map(|s| &s.versions)
            .find_map(|v| match &v.artifact {
                Some(Artifact::GoModule(spec)) if spec.reference() == name => Some(spec.clone()),
                _ => None,
            })
            .map(Target::Module)
            .ok_or_else(|| {
                bad(
                    format!("no scenario version is the module `{name}`"),
                    "delete the entry and run with `--add-version module:PATH@VERSION` to pin it anew",
                )
            })?,
        "kernel" | "toolchain" | "emulator" => {
            return Err(bad(
                format!("`{key}` is not in the catalog (images/)"),
                "remove the stale entry from images/kmatrix.lock",
            ))
        }
        _ => {
            return Err(bad(
                format!("`{key}`: accept re-fetches kernel:, toolchain:, emulator:, image:, rootfs: and module: entries"),
                "delete this entry and run what uses it: the run pins it anew and prints the new pin",
            ))
        }
    })
}

fn artifact_key(target: &Target) -> Result<ArtifactKey> {
    Ok(match target {
        Target::Kernel(id) => ArtifactKey::Kernel(id.clone()),
        Target::Toolchain(id) => ArtifactKey::Toolchain(id.clone()),
        Target::Emulator(id) => ArtifactKey::Emulator(id.clone()),
        Target::Image(reference) => ArtifactKey::Image(reference.clone()),
        Target::Rootfs(spec) => Provisioner::rootfs_key(spec)?,
        Target::Module(spec) => ArtifactKey::GoModule(spec.reference()),
    })
}

fn fetch(provisioner: &Provisioner, target: &Target) -> Result<()> {
    match target {
        Target::Kernel(id) => provisioner.kernel(id).map(|_| ()),
        Target::Toolchain(id) => provisioner.toolchain(id).map(|_| ()),
        Target::Emulator(id) => provisioner
            .emulator(&EmulatorChoice::Pinned(Some(id.clone())))
            .map(|_| ()),
        Target::Image(reference) => provisioner.image(reference).map(|_| ()),
        Target::Rootfs(spec) => provisioner.rootfs(spec).map(|_| ()),
        Target::Module(spec) => provisioner.pin_module(spec),
    }
    .context("fetching it anew")
}
