//! The OCI runtime bundle of a cell's container: what crun in the guest
//! runs when a probe says `{service}`. The artifact's file system (mounted
//! read-only from its virtio disk) is the root; the image's entrypoint, cmd
//! and env, the variant's env on top; the probe's network namespace is
//! shared, so the probe reaches the service as a pod's neighbour would.

use crate::plan::CellArtifact;
use crate::provision::ImageArtifact;
use anyhow::Result;
use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder,
};
use std::path::PathBuf;

/// The pod's `/etc/hosts` in the guest, bind-mounted into every container.
pub const GUEST_HOSTS: &str = "/kmatrix/etc/hosts";

/// `config.json` for `artifact` as run from `image`.
pub fn bundle_config(artifact: &CellArtifact, image: &ImageArtifact) -> Result<String> {
    let mut args = image.entrypoint.clone();
    args.extend(image.cmd.iter().cloned());
    if args.is_empty() {
        anyhow::bail!(
            "{} has neither entrypoint nor cmd, and the version gives no command",
            image.reference
        );
    }
    let mut env: Vec<String> = image.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        // Services keep state under $HOME; the root is read-only.
        env.push("HOME=/tmp".into());
    }
    for (key, value) in &artifact.env {
        env.retain(|e| !e.starts_with(&format!("{key}=")));
        env.push(format!("{key}={value}"));
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env)
        .cwd(
            image
                .working_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
        )
        .no_new_privileges(true)
        .build()?;
    // pid, ipc, uts and mount of its own; the network is the probe's.
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default().namespaces(namespaces).build()?;
    let mounts = vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
        mount("/run", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=755"])?,
        mount("/etc/hosts", "bind", GUEST_HOSTS, &["rbind", "ro"])?,
    ];
    let spec: Spec = SpecBuilder::default()
        .version("1.0.2")
        .hostname("kmatrix")
        .root(
            RootBuilder::default()
                .path(PathBuf::from(&artifact.mount))
                .readonly(true)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()?;
    Ok(serde_json::to_string_pretty(&spec)?)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::scenario::Artifact;
    use std::collections::BTreeMap;

    #[test]
    fn the_variant_env_reaches_the_container_and_the_network_is_shared() {
        let artifact = CellArtifact {
            artifact: Artifact::Image("caddy".into()),
            command: Vec::new(),
            mount: "/kmatrix/artifacts/caddy".into(),
            bundle: "/kmatrix/bundles/x".into(),
            env: BTreeMap::from([("GODEBUG".to_string(), "multipathtcp=0".to_string())]),
        };
        let image = ImageArtifact {
            reference: "caddy".into(),
            digest: "sha256:0".into(),
            disk: "/tmp/x.ext4".into(),
            root: "/tmp/root".into(),
            entrypoint: vec!["caddy".into()],
            cmd: vec!["run".into()],
            env: vec!["PATH=/usr/bin".into(), "GODEBUG=x=1".into()],
            working_dir: Some("/srv".into()),
            build_info: None,
        };
        let config: serde_json::Value =
            serde_json::from_str(&bundle_config(&artifact, &image).unwrap()).unwrap();
        assert_eq!(
            config["process"]["args"],
            serde_json::json!(["caddy", "run"])
        );
        let env = config["process"]["env"].as_array().unwrap();
        assert!(env.contains(&"GODEBUG=multipathtcp=0".into()), "{env:?}");
        assert!(!env.contains(&"GODEBUG=x=1".into()), "{env:?}");
        assert!(env.contains(&"HOME=/tmp".into()));
        assert_eq!(config["process"]["cwd"], "/srv");
        assert_eq!(config["root"]["path"], "/kmatrix/artifacts/caddy");
        assert_eq!(config["root"]["readonly"], true);
        let kinds: Vec<&str> = config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!kinds.contains(&"network"), "{kinds:?}");
    }
}
