//! Building a kernel from source: a base config (`tinyconfig`, `defconfig`)
//! plus config fragments from `images/fragments/`, checked after
//! `olddefconfig` so an option that silently fell away (a missing
//! dependency) is an error, not a surprise in the matrix.

use crate::events::Events;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A config option's wanted state: `Some(value)` (`y`, `m`, `"text"`, `42`) or
/// `None` for `# CONFIG_X is not set`.
pub type ConfigOptions = BTreeMap<String, Option<String>>;

/// Reads a fragment; later lines win, as in kconfig.
pub fn parse_fragment(text: &str) -> ConfigOptions {
    let mut options = ConfigOptions::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") {
                    options.insert(name.to_string(), None);
                }
            }
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                options.insert(name.to_string(), Some(value.to_string()));
            }
        }
    }
    options
}

/// Merges fragments in order: a later fragment overrides an earlier one.
pub fn merge_fragments(fragments: &[String]) -> ConfigOptions {
    let mut merged = ConfigOptions::new();
    for fragment in fragments {
        merged.extend(parse_fragment(fragment));
    }
    merged
}

pub fn render(options: &ConfigOptions) -> String {
    options
        .iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}={value}\n"),
            None => format!("# {name} is not set\n"),
        })
        .collect()
}

/// Options the final `.config` does not honour, with what it has instead.
pub fn unmet(wanted: &ConfigOptions, final_config: &str) -> Vec<String> {
    let have = parse_fragment(final_config);
    wanted
        .iter()
        .filter_map(|(name, value)| {
            let got = have.get(name).cloned().flatten();
            let ok = match value {
                // "n" and "not set" are the same to kconfig.
                None => got.is_none() || got.as_deref() == Some("n"),
                Some(v) if v == "n" => got.is_none() || got.as_deref() == Some("n"),
                Some(v) => got.as_deref() == Some(v.as_str()),
            };
            (!ok).then(|| {
                format!(
                    "{name}: wanted {}, got {}",
                    value.as_deref().unwrap_or("not set"),
                    got.as_deref().unwrap_or("not set")
                )
            })
        })
        .collect()
}

/// The tools a kernel build needs, each with the Debian package that has it.
const BUILD_TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("gcc", "gcc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
];

pub fn check_build_tools() -> Result<()> {
    let missing: Vec<String> = BUILD_TOOLS
        .iter()
        .filter(|(tool, _)| crate::files::which(tool).is_none())
        .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
        .collect();
    let mut missing = missing;
    if !Path::new("/usr/include/libelf.h").exists() {
        missing.push("libelf headers (apt-get install libelf-dev)".into());
    }
    if !missing.is_empty() {
        bail!(
            "building a kernel needs: {} — scripts/setup.sh installs them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Identifies the host compiler, part of a built kernel's cache key.
pub fn compiler_identity() -> String {
    Command::new("gcc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "no gcc".into())
}

pub struct BuildSpec<'a> {
    pub label: &'a str,
    /// A source tarball (`linux-*.tar.xz`).
    pub tarball: &'a Path,
    pub base_config: &'a str,
    pub fragments: ConfigOptions,
}

/// Builds `bzImage` in `dir`; keeps `bzImage`, `config` and `build.log` there
/// and removes the source tree. Returns the payload's name. Each step, and
/// the objects compiled so far, go to `events`.
pub fn build(spec: &BuildSpec, dir: &Path, events: &Events) -> Result<PathBuf> {
    check_build_tools()?;
    if !matches!(spec.base_config, "tinyconfig" | "defconfig" | "allnoconfig") {
        bail!(
            "base_config `{}` is not one kmatrix knows; use tinyconfig, allnoconfig or defconfig",
            spec.base_config
        );
    }
    let src = dir.join("src");
    fs::create_dir_all(&src)?;
    let log_path = dir.join("build.log");
    let mut log = File::create(&log_path)?;
    let bar = Steps {
        events,
        label: format!("building kernel {}", spec.label),
    };
    step(
        Command::new("tar")
            .arg("-xf")
            .arg(spec.tarball)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(&src),
        &mut log,
        &bar.named("unpacking the source"),
        &log_path,
    )?;
    step(
        Command::new("make").arg(spec.base_config).current_dir(&src),
        &mut log,
        &bar.named(&format!("make {}", spec.base_config)),
        &log_path,
    )?;
    let config_path = src.join(".config");
    let mut config = fs::read_to_string(&config_path)?;
    config.push_str(&render(&spec.fragments));
    fs::write(&config_path, config)?;
    step(
        Command::new("make").arg("olddefconfig").current_dir(&src),
        &mut log,
        &bar.named("make olddefconfig"),
        &log_path,
    )?;
    let final_config = fs::read_to_string(&config_path)?;
    let unmet = unmet(&spec.fragments, &final_config);
    if !unmet.is_empty() {
        bail!(
            "kernel {}: the config fragments ask for options kconfig did not keep (a dependency is off; add it to the fragment):\n  {}",
            spec.label,
            unmet.join("\n  ")
        );
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    step(
        Command::new("make")
            .arg(format!("-j{jobs}"))
            .arg("bzImage")
            .current_dir(&src),
        &mut log,
        &bar.named("make bzImage"),
        &log_path,
    )?;
    fs::copy(src.join("arch/x86/boot/bzImage"), dir.join("bzImage"))?;
    fs::write(dir.join("config"), final_config)?;
    fs::remove_dir_all(&src)?;
    Ok(PathBuf::from("bzImage"))
}

/// Where a build's headway goes: progress events of one labelled step.
struct Steps<'a> {
    events: &'a Events,
    label: String,
}

impl Steps<'_> {
    fn named(&self, step: &str) -> Step<'_> {
        self.events.progress(&self.label, 0, None, step);
        Step {
            steps: self,
            name: step.to_string(),
        }
    }
}

struct Step<'a> {
    steps: &'a Steps<'a>,
    name: String,
}

impl Step<'_> {
    fn compiled(&self, objects: u64, line: &str) {
        self.steps.events.progress(
            &self.steps.label,
            objects,
            None,
            &format!("{}: {objects} objects, {line}", self.name),
        );
    }
}

/// Runs one build step, streaming its output to the log and its headway to events.
fn step(command: &mut Command, log: &mut File, bar: &Step, log_path: &Path) -> Result<()> {
    let mut objects = 0u64;
    logged_step(command, log, log_path, &mut |line| {
        if line.trim_start().starts_with("CC") {
            objects += 1;
            bar.compiled(objects, line.trim());
        }
    })
}

/// Runs one step of a build: stdout and stderr into `log`, each stdout line
/// to `on_line` as it comes; on failure, stderr's last lines in the error.
/// (Kernel and Kubernetes builds both run their steps through it.)
pub(crate) fn logged_step(
    command: &mut Command,
    log: &mut File,
    log_path: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<()> {
    let described = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {described}"))?;
    let stderr = child.stderr.take().expect("piped");
    let stderr_lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        writeln!(log, "{line}")?;
        on_line(&line);
    }
    let status = child.wait()?;
    let errors = stderr_lines.join().unwrap_or_default();
    for line in &errors {
        writeln!(log, "{line}")?;
    }
    if !status.success() {
        let tail: Vec<&String> = errors.iter().rev().take(15).collect::<Vec<_>>();
        let tail: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
        bail!(
            "{described} failed (full log: {}):\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_fragments_win_and_not_set_is_kept() {
        let merged = merge_fragments(&[
            "CONFIG_A=y\nCONFIG_B=y\n# comment\nCONFIG_S=\"x\"\n".into(),
            "# CONFIG_B is not set\nCONFIG_C=m\n".into(),
        ]);
        assert_eq!(merged["CONFIG_A"].as_deref(), Some("y"));
        assert_eq!(merged["CONFIG_B"], None);
        assert_eq!(merged["CONFIG_C"].as_deref(), Some("m"));
        assert_eq!(merged["CONFIG_S"].as_deref(), Some("\"x\""));
        assert_eq!(
            render(&merged),
            "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_S=\"x\"\n"
        );
    }

    #[test]
    fn unmet_options_are_named() {
        let wanted =
            merge_fragments(&["CONFIG_MPTCP=y\nCONFIG_NET=y\n# CONFIG_X is not set\n".into()]);
        let final_config = "CONFIG_NET=y\n# CONFIG_MPTCP is not set\nCONFIG_X=y\n";
        let problems = unmet(&wanted, final_config);
        assert_eq!(
            problems,
            vec![
                "CONFIG_MPTCP: wanted y, got not set".to_string(),
                "CONFIG_X: wanted not set, got y".to_string()
            ]
        );
        assert!(unmet(&wanted, "CONFIG_NET=y\nCONFIG_MPTCP=y\n").is_empty());
    }

    #[test]
    fn the_shipped_fragments_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/fragments");
        for entry in fs::read_dir(dir).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!parse_fragment(&text).is_empty());
        }
    }
}
