//! What a killed run's local cluster leaves in the host's iptables:
//! kube-proxy's `KUBE-*` and the bridge plugin's `CNI-*` chains and the
//! rules that jump to them or name the pod network. The sweep removes them
//! (`local.rs`), reading `iptables-save`.

use super::node::POD_SUBNET;
use std::process::{Command, Stdio};

/// Removes kmatrix's cluster rules and chains from every table.
pub(super) fn cleanup_iptables() {
    let Ok(saved) = Command::new("iptables-save").output() else {
        return;
    };
    let text = String::from_utf8_lossy(&saved.stdout);
    let mut table = "filter".to_string();
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut chains: Vec<(String, String)> = Vec::new();
    let pod_net = POD_SUBNET.trim_end_matches("/24").trim_end_matches(".0");
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split(' ').next().unwrap_or_default();
            if name.starts_with("KUBE-") || name.starts_with("CNI-") {
                chains.push((table.clone(), name.to_string()));
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let jumps_ours = rule.contains("-j KUBE-") || rule.contains("-j CNI-");
            let ours = rule.contains(pod_net) || rule.contains("kmatrix");
            let chain = rule.split(' ').next().unwrap_or_default();
            let in_builtin = !chain.starts_with("KUBE-") && !chain.starts_with("CNI-");
            if in_builtin && (jumps_ours || ours) {
                rules.push((table.clone(), rule.to_string()));
            }
        }
    }
    for (table, rule) in rules {
        let Some(words) = rule_words(&rule) else {
            continue;
        };
        let mut args = vec!["-t".to_string(), table, "-D".into()];
        args.extend(words);
        let _ = Command::new("iptables")
            .args(&args)
            .stderr(Stdio::null())
            .status();
    }
    for flag in ["-F", "-X"] {
        for (table, chain) in &chains {
            let _ = Command::new("iptables")
                .args(["-t", table, flag, chain])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An iptables-save rule's words: its quoting is the shell's (the bridge
/// plugin's comments say `"name: \"kmatrix\" id: \"…\""`). A rule that does
/// not split is left alone.
fn rule_words(rule: &str) -> Option<Vec<String>> {
    shell_words::split(rule).ok()
}

#[cfg(test)]
mod tests {
    use super::rule_words;

    #[test]
    fn iptables_rules_split_with_their_escaped_comments() {
        let rule = r#"POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: \"kmatrix\" id: \"4aae\"" -j CNI-8fe1"#;
        assert_eq!(
            rule_words(rule).unwrap(),
            [
                "POSTROUTING",
                "-s",
                "10.244.0.2/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "kmatrix" id: "4aae""#,
                "-j",
                "CNI-8fe1",
            ]
        );
    }
}
