//! What a Go binary says about itself: its toolchain, main package and
//! default GODEBUG, read with `go version -m` from a cached Go toolchain.
//! From those kmatrix derives whether its listeners are MPTCP by default,
//! so a reader sees why a listener was MPTCP without trusting a typed fact.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The build info facts of one binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.26.5`.
    pub go_version: String,
    /// The main package path.
    pub path: String,
    /// The `multipathtcp` entry of `DefaultGODEBUG`, when it has one.
    pub default_multipathtcp: Option<String>,
}

/// What `GOROOT/bin/go version -m BINARY` prints (for [`parse`]).
pub fn version_m(goroot: &Path, binary: &Path) -> Result<String> {
    let output = crate::sources::gotool::go(goroot)
        .args(["version", "-m"])
        .arg(binary)
        .output()
        .context("cannot run go version -m")?;
    if !output.status.success() {
        bail!(
            "go version -m {}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Parses `go version -m` output.
pub fn parse(text: &str) -> Result<BuildInfo> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let go_version = first
        .rsplit(' ')
        .next()
        .filter(|v| v.starts_with("go"))
        .with_context(|| format!("not a Go binary: {first}"))?
        .to_string();
    let mut info = BuildInfo {
        go_version,
        ..Default::default()
    };
    for line in lines {
        let fields: Vec<&str> = line.trim().splitn(3, '\t').collect();
        match fields.as_slice() {
            ["path", path, ..] => info.path = path.to_string(),
            ["build", setting] | ["build", setting, _] => {
                if let Some(debug) = setting.strip_prefix("DefaultGODEBUG=") {
                    info.default_multipathtcp = debug
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("multipathtcp="))
                        .map(str::to_string);
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// `go1.26.5` → (1, 26).
fn minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches("go").split(['.', 'r', 'b']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl BuildInfo {
    /// The facts a cell records, with `env` (the variant's) applied the way
    /// the Go runtime applies `GODEBUG` over the binary's defaults.
    pub fn facts(&self, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut facts = BTreeMap::from([
            ("go.version".to_string(), self.go_version.clone()),
            ("go.path".to_string(), self.path.clone()),
            (
                "go.default_godebug.multipathtcp".to_string(),
                self.default_multipathtcp
                    .clone()
                    .unwrap_or_else(|| "unset".into()),
            ),
        ]);
        let from_env = env
            .get("GODEBUG")
            .and_then(|g| g.split(',').find_map(|kv| kv.strip_prefix("multipathtcp=")))
            .map(str::to_string);
        let version = minor(&self.go_version).unwrap_or((0, 0));
        let (on, why) = if version < (1, 21) {
            (
                false,
                format!("{} predates Go's MPTCP support", self.go_version),
            )
        } else if let Some(value) = from_env {
            (
                value == "1" || (value != "0" && version >= (1, 24)),
                format!("GODEBUG=multipathtcp={value} in the environment"),
            )
        } else if version < (1, 24) {
            (
                false,
                format!("{} does not default to MPTCP", self.go_version),
            )
        } else if let Some(default) = &self.default_multipathtcp {
            (
                default != "0",
                format!("DefaultGODEBUG has multipathtcp={default} (the go.mod go line is older than 1.24)"),
            )
        } else {
            (
                true,
                format!("{} defaults listeners to MPTCP", self.go_version),
            )
        };
        facts.insert(
            "go.mptcp_listeners".into(),
            if on { "on" } else { "off" }.into(),
        );
        facts.insert("go.mptcp_listeners.why".into(), why);
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID_CADDY: &str = "/usr/bin/caddy: go1.26.5\n\tpath\tgithub.com/caddyserver/caddy/v2/cmd/caddy\n\tbuild\t-compiler=gc\n\tbuild\tDefaultGODEBUG=asynctimerchan=1,multipathtcp=0,netedns0=0\n\tbuild\tCGO_ENABLED=1\n";
    const BOOKWORM_CADDY: &str = "/usr/bin/caddy: go1.19.8\n\tpath\tgithub.com/caddyserver/caddy/v2/cmd/caddy\n\tbuild\tCGO_ENABLED=1\n";

    #[test]
    fn build_info_says_why_a_listener_is_or_is_not_mptcp() {
        let sid = parse(SID_CADDY).unwrap();
        assert_eq!(sid.go_version, "go1.26.5");
        assert_eq!(sid.default_multipathtcp.as_deref(), Some("0"));
        let none = BTreeMap::new();
        assert_eq!(sid.facts(&none)["go.mptcp_listeners"], "off");
        let forced = BTreeMap::from([("GODEBUG".to_string(), "multipathtcp=1".to_string())]);
        assert_eq!(sid.facts(&forced)["go.mptcp_listeners"], "on");

        let bookworm = parse(BOOKWORM_CADDY).unwrap();
        assert_eq!(bookworm.facts(&forced)["go.mptcp_listeners"], "off");
        assert!(bookworm.facts(&forced)["go.mptcp_listeners.why"].contains("predates"));

        let modern = BuildInfo {
            go_version: "go1.24.4".into(),
            path: "github.com/kubeovn/kube-ovn/cmd".into(),
            default_multipathtcp: None,
        };
        assert_eq!(modern.facts(&none)["go.mptcp_listeners"], "on");
        let off = BTreeMap::from([("GODEBUG".to_string(), "multipathtcp=0".to_string())]);
        assert_eq!(modern.facts(&off)["go.mptcp_listeners"], "off");
        assert!(parse("/bin/true: not a Go binary").is_err());
    }
}
