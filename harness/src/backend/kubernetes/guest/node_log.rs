//! Reading the node's log (`cluster/node.log`, the guest's third serial
//! port): the node script's own words, its components' streamed logs
//! (each line prefixed `[name] `) and the shell's trace (`+ `).

use crate::inputs::scenario::KubeProxyMode;

/// Whether the node script has said `words` (its `say` lines).
pub(super) fn said(log: &str, words: &str) -> bool {
    let line = format!("kmatrix-node: {words}");
    log.lines().any(|l| l.trim_end() == line)
}

/// The cgroup version the node's start mounted (`v1` or `v2`).
pub(super) fn cgroup(log: &str) -> Option<&'static str> {
    log.lines().find_map(|l| {
        let rest = l.trim_end().strip_prefix("kmatrix-node: cgroup ")?;
        ["v1", "v2"].into_iter().find(|v| rest.starts_with(v))
    })
}

/// What kube-proxy says about its proxier: `Ok(None)` until it says,
/// an error when it runs another mode than asked (it falls back to
/// iptables when IPVS is missing, which must not pass for an IPVS cell).
pub(super) fn proxier(log: &str, asked: KubeProxyMode) -> anyhow::Result<Option<String>> {
    let said = log
        .lines()
        .filter(|l| l.starts_with("[kube-proxy]"))
        .find_map(|l| {
            let mode = l.split("Using ").nth(1)?.split(' ').next()?;
            l.contains("Proxier").then(|| mode.to_string())
        });
    match said {
        Some(mode) if mode == asked.as_str() => Ok(Some(mode)),
        Some(mode) => anyhow::bail!(
            "kube-proxy runs in {mode} mode, not {} as asked: {}",
            asked.as_str(),
            log.lines()
                .rfind(|l| l.starts_with("[kube-proxy]") && l.contains("IPVS"))
                .unwrap_or("(no IPVS line in its log)")
        ),
        None => Ok(None),
    }
}

/// Why the node script ended, in its own words: the component that
/// exited and the last lines of its log (the script's `check` prints
/// `NAME exited:` and then them), else the script's last words before
/// it stopped (a failed mount, a missing card). The components' streamed
/// lines and the shell trace are left out: they go on after the end.
pub(super) fn script_end(log: &str, lines: usize) -> String {
    let own: Vec<&str> = log
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('[') && !l.starts_with("+ "))
        .collect();
    let exited = own.iter().rposition(|l| {
        l.strip_suffix(" exited:")
            .is_some_and(|name| !name.is_empty() && !name.contains(' '))
    });
    let tail = &own[exited.unwrap_or(0)..];
    let keep = &tail[tail.len().saturating_sub(lines)..];
    match exited {
        Some(at) if keep.len() < tail.len() => format!("{}\n…\n{}", own[at], keep.join("\n")),
        _ => keep.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_EXITED: &str = "kmatrix-node: cgroup v1
+ start etcd /opt/kmatrix/bin/etcd
[etcd] {\"level\":\"info\",\"msg\":\"serving client traffic\"}
kmatrix-node: started kubelet
[kubelet] I1206 10:40:01 server.go:530] \"Kubelet version\"
kubelet exited:
I1206 10:40:01 server.go:530] \"Kubelet version\"
E1206 10:40:02 run.go:72] \"command failed\" err=\"failed to run Kubelet: Following Cgroup subsystem not mounted: [cpuset memory]\"
+ exit 1
[etcd] {\"level\":\"info\",\"msg\":\"still serving\"}
";

    #[test]
    fn the_end_names_the_component_that_exited_and_its_last_words() {
        let end = script_end(KUBELET_EXITED, 8);
        assert!(end.starts_with("kubelet exited:"), "{end}");
        assert!(
            end.contains("Following Cgroup subsystem not mounted: [cpuset memory]"),
            "{end}"
        );
        assert!(!end.contains("still serving"), "{end}");
        assert!(!end.contains("+ exit"), "{end}");
        // Fewer lines than the log has: the name stays, the start goes.
        let short = script_end(KUBELET_EXITED, 1);
        assert_eq!(short.lines().next(), Some("kubelet exited:"), "{short}");
        assert!(short.ends_with("[cpuset memory]\""), "{short}");
    }

    #[test]
    fn without_a_component_the_end_is_the_scripts_last_words() {
        let log = "kmatrix-node: node root ready\n+ ip link set eth0 up\nkmatrix-node: no network card: is virtio_net loaded?\n";
        assert_eq!(
            script_end(log, 2),
            "kmatrix-node: node root ready\nkmatrix-node: no network card: is virtio_net loaded?"
        );
    }

    #[test]
    fn the_proxier_is_what_kube_proxy_says_and_must_be_the_asked_one() {
        let ipvs = "[kube-proxy] I1206 server_linux.go:231] \"Using ipvs Proxier\"\n";
        assert_eq!(
            proxier(ipvs, KubeProxyMode::Ipvs).unwrap().as_deref(),
            Some("ipvs")
        );
        assert_eq!(proxier("", KubeProxyMode::Ipvs).unwrap(), None);
        let fell_back = "[kube-proxy] E1206 \"Can't use the IPVS proxier\"\n[kube-proxy] I1206 \"Using iptables Proxier\"\n";
        let error = proxier(fell_back, KubeProxyMode::Ipvs)
            .unwrap_err()
            .to_string();
        assert!(error.contains("iptables mode, not ipvs"), "{error}");
        assert!(error.contains("Can't use the IPVS proxier"), "{error}");
        assert_eq!(cgroup(KUBELET_EXITED), Some("v1"));
        assert_eq!(
            cgroup("+ echo 'kmatrix-node: cgroup v2 (…)'\nkmatrix-node: cgroup v2 (no v1 memory): cpu memory\n"),
            Some("v2")
        );
        assert!(said(
            "kmatrix-node: workload images imported\r\n",
            "workload images imported"
        ));
    }
}
