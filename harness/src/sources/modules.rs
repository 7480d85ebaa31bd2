//! Kernel modules a scenario needs: found in the kernel artifact's
//! `modules.dep`, taken with their dependencies in load order, decompressed
//! on the host (so any kernel can load them), and loaded by the agent before
//! the cells run. What cannot be loaded becomes a fact on the cell, never a crash.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where module files go in the guest.
pub const GUEST_MODULE_DIR: &str = "/kmatrix/modules";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ModulePlan {
    /// Host file → guest path, in load order (dependencies first).
    pub files: Vec<(PathBuf, String)>,
    /// Facts known on the host: `module.<name>` = `builtin` or `missing: …`.
    pub facts: BTreeMap<String, String>,
}

/// A module's canonical name: kconfig and modprobe treat `-` and `_` alike.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    canonical(file.split(".ko").next().unwrap_or(file))
}

/// Parses `modules.dep` into name → (path, dependency paths).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (path, deps) = line.split_once(':')?;
            let deps = deps.split_whitespace().map(str::to_string).collect();
            Some((module_name(path), (path.trim().to_string(), deps)))
        })
        .collect()
}

/// Orders `wanted` and all their dependencies so each comes after what it needs.
pub fn load_order(
    dep: &BTreeMap<String, (String, Vec<String>)>,
    wanted: &[String],
) -> (Vec<String>, Vec<String>) {
    fn visit(
        name: &str,
        dep: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some((path, deps)) = dep.get(name) {
            // modules.dep lists the nearest dependency first; load the farthest first.
            for d in deps.iter().rev() {
                visit(&module_name(d), dep, seen, order);
            }
            order.push(path.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut missing = Vec::new();
    for name in wanted {
        let name = canonical(name);
        if dep.contains_key(&name) {
            visit(&name, dep, &mut seen, &mut order);
        } else {
            missing.push(name);
        }
    }
    (order, missing)
}

/// Prepares the modules `wanted` from a packaged kernel's module folder,
/// decompressing into `scratch`.
pub fn plan(modules_dir: Option<&Path>, wanted: &[String], scratch: &Path) -> Result<ModulePlan> {
    let mut result = ModulePlan::default();
    if wanted.is_empty() {
        return Ok(result);
    }
    let Some(dir) = modules_dir else {
        for name in wanted {
            result.facts.insert(
                format!("module.{}", canonical(name)),
                "not a module here (source-built kernel: built in or absent)".into(),
            );
        }
        return Ok(result);
    };
    ensure_modules_dep(dir)?;
    let dep_text = fs::read_to_string(dir.join("modules.dep"))
        .with_context(|| format!("{} has no modules.dep", dir.display()))?;
    let builtin: BTreeSet<String> = fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let dep = parse_modules_dep(&dep_text);
    let (order, missing) = load_order(&dep, wanted);
    for name in missing {
        let state = if builtin.contains(&name) {
            "builtin".to_string()
        } else {
            "missing: not in this kernel's modules".to_string()
        };
        result.facts.insert(format!("module.{name}"), state);
    }
    fs::create_dir_all(scratch)?;
    for relative in order {
        let name = module_name(&relative);
        let plain = scratch.join(format!("{name}.ko"));
        decompress(&dir.join(&relative), &plain)?;
        result
            .files
            .push((plain, format!("{GUEST_MODULE_DIR}/{name}.ko")));
    }
    Ok(result)
}

/// Packages ship modules without `modules.dep` (the installer runs depmod);
/// make it once, beside the modules, with the host's depmod.
fn ensure_modules_dep(dir: &Path) -> Result<()> {
    if dir.join("modules.dep").is_file() {
        return Ok(());
    }
    let release = dir
        .file_name()
        .context("module folder has no release name")?
        .to_string_lossy()
        .into_owned();
    let parent = dir.parent().context("module folder has no parent")?;
    // depmod -b BASE reads BASE/lib/modules/RELEASE; a usr-merged package
    // keeps them under usr/lib/modules, so point lib/modules there.
    let base = if parent.ends_with("usr/lib/modules") {
        let base = parent
            .ancestors()
            .nth(3)
            .context("no package root")?
            .to_path_buf();
        let lib_modules = base.join("lib/modules");
        if !lib_modules.exists() {
            fs::create_dir_all(base.join("lib"))?;
            std::os::unix::fs::symlink("../usr/lib/modules", &lib_modules)?;
        }
        base
    } else {
        parent
            .ancestors()
            .nth(2)
            .context("no package root")?
            .to_path_buf()
    };
    let output = Command::new("depmod")
        .arg("-b")
        .arg(&base)
        .arg(&release)
        .output()
        .context("cannot run depmod: install Debian's kmod package (scripts/setup.sh does)")?;
    if !output.status.success() {
        bail!(
            "depmod for {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn decompress(from: &Path, to: &Path) -> Result<()> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".ko") {
        fs::copy(from, to)?;
        return Ok(());
    } else if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        bail!("unknown module compression: {}", from.display());
    };
    let output = Command::new(tool)
        .arg("-dc")
        .arg(from)
        .output()
        .with_context(|| format!("cannot run {tool} to unpack {}", from.display()))?;
    if !output.status.success() {
        bail!("{tool} -dc {} failed", from.display());
    }
    fs::write(to, output.stdout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/net/openvswitch/openvswitch.ko.xz: kernel/net/nsh/nsh.ko.xz kernel/net/netfilter/nf_conncount.ko.xz kernel/net/netfilter/nf_conntrack.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/net/netfilter/nf_conncount.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/net/netfilter/nf_conntrack.ko.xz: kernel/lib/libcrc32c.ko.xz
kernel/net/nsh/nsh.ko.xz:
kernel/lib/libcrc32c.ko.xz:
kernel/drivers/net/geneve.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz
kernel/net/ipv4/udp_tunnel.ko.xz:
";

    #[test]
    fn dependencies_load_first_and_once() {
        let dep = parse_modules_dep(DEP);
        let (order, missing) = load_order(
            &dep,
            &[
                "openvswitch".into(),
                "geneve".into(),
                "no-such-thing".into(),
            ],
        );
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        let at = |n: &str| names.iter().position(|x| x == n).unwrap();
        assert!(at("libcrc32c") < at("nf_conntrack"));
        assert!(at("nf_conntrack") < at("nf_conncount"));
        assert!(at("nf_conncount") < at("openvswitch"));
        assert!(at("nsh") < at("openvswitch"));
        assert!(at("udp_tunnel") < at("geneve"));
        assert_eq!(names.len(), 7, "each module once: {names:?}");
        assert_eq!(missing, vec!["no_such_thing".to_string()]);
    }

    #[test]
    fn builtin_and_missing_become_facts_and_files_are_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("lib/modules/9.9");
        fs::create_dir_all(modules.join("kernel/drivers/net")).unwrap();
        fs::write(
            modules.join("modules.dep"),
            "kernel/drivers/net/veth.ko.xz:\n",
        )
        .unwrap();
        fs::write(modules.join("modules.builtin"), "kernel/net/ipv6/ipv6.ko\n").unwrap();
        let xz = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf 'ELF-module' | xz > {}",
                modules.join("kernel/drivers/net/veth.ko.xz").display()
            ))
            .status()
            .unwrap();
        assert!(xz.success());
        let plan = plan(
            Some(&modules),
            &["veth".into(), "ipv6".into(), "geneve".into()],
            &dir.path().join("out"),
        )
        .unwrap();
        assert_eq!(plan.files.len(), 1);
        assert_eq!(fs::read(&plan.files[0].0).unwrap(), b"ELF-module");
        assert_eq!(plan.files[0].1, "/kmatrix/modules/veth.ko");
        assert_eq!(plan.facts["module.ipv6"], "builtin");
        assert!(plan.facts["module.geneve"].starts_with("missing"));
    }
}
