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
        let mut args = vec!["-t".to_string(), table, "-D".into()];
        args.extend(shell_split(&rule));
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

/// Splits an iptables-save rule into words, keeping quoted comments whole
/// (the bridge plugin's say `"name: \"kmatrix\" id: \"…\""`).
fn shell_split(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::shell_split;

    #[test]
    fn iptables_rules_split_with_their_escaped_comments() {
        let rule = r#"POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: \"kmatrix\" id: \"4aae\"" -j CNI-8fe1"#;
        assert_eq!(
            shell_split(rule),
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
