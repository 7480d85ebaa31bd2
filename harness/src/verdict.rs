//! Verdicts: what a probe's exit, output and the guest's console mean, with a
//! short signature normalised so the same failure reads the same on every
//! machine (addresses, ports, timestamps and pointers taken out).

use crate::inputs::scenario::{Probe, Signature, SignatureVerdict};
use kmatrix_agent::ProcessEnd;
pub use kmatrix_metadata::Verdict;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// What a probe must do to pass, and how it says "not here" — the part of
/// a planned probe that classification reads.
#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    pub timeout_ms: u64,
    pub pass_exit_code: i32,
    #[serde(serialize_with = "serialize_regex")]
    pub pass_stdout: Option<Regex>,
    pub unavailable_exit_code: Option<i32>,
    /// A Kubernetes rollout: the workload's container kept restarting, so
    /// a failure is a crash (CrashLoopBackOff), whatever its output says.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart_is_crash: bool,
    /// The case cannot be judged without this probe (see [`needed_missing`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needed: bool,
    /// A Kubernetes rollout: a log line that settles it as failed (the
    /// scenario's `fails_on`); the wait ends there instead of the deadline.
    #[serde(
        serialize_with = "serialize_regex",
        skip_serializing_if = "Option::is_none"
    )]
    pub fails_on: Option<Regex>,
}

impl Expectation {
    /// What a scenario's probe asks of its run.
    pub fn of(probe: &Probe) -> Expectation {
        Expectation {
            timeout_ms: probe.timeout_secs * 1000,
            pass_exit_code: probe.pass_exit_code,
            pass_stdout: probe.pass_stdout.clone(),
            unavailable_exit_code: probe.unavailable_exit_code,
            restart_is_crash: false,
            needed: probe.needed,
            fails_on: None,
        }
    }
}

fn serialize_regex<S: serde::Serializer>(re: &Option<Regex>, s: S) -> Result<S::Ok, S::Error> {
    re.as_ref().map(Regex::as_str).serialize(s)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classified {
    pub verdict: Verdict,
    pub signature: String,
}

impl Classified {
    pub fn new(verdict: Verdict, signature: impl Into<String>) -> Self {
        Classified {
            verdict,
            signature: signature.into(),
        }
    }
}

/// Classifies one probe run. Order matters: how the process ended first,
/// then the probe's pass condition, then the scenario's own signatures,
/// then generic Go panics, and last the plain failure.
pub fn classify_probe(
    probe: &Expectation,
    signatures: &[Signature],
    end: &ProcessEnd,
    stdout: &str,
    stderr: &str,
) -> Classified {
    let classified = classify_ended(probe, signatures, end, stdout, stderr);
    if probe.restart_is_crash && classified.verdict == Verdict::Fail {
        if let ProcessEnd::Exited { code } = end {
            if *code != probe.pass_exit_code {
                return Classified::new(Verdict::Crash, classified.signature);
            }
        }
    }
    classified
}

fn classify_ended(
    probe: &Expectation,
    signatures: &[Signature],
    end: &ProcessEnd,
    stdout: &str,
    stderr: &str,
) -> Classified {
    match end {
        ProcessEnd::SpawnFailed { error } => {
            return Classified::new(Verdict::InfraError, format!("cannot start probe: {error}"))
        }
        ProcessEnd::TimedOut => {
            return Classified::new(
                Verdict::Timeout,
                format!("no exit within {} s", probe.timeout_ms / 1000),
            )
        }
        ProcessEnd::Signaled { signal } => {
            // A Go runtime dying by signal (GOTRACEBACK=crash) says why first.
            let killed = format!("killed by {}", signal_name(*signal));
            return Classified::new(
                Verdict::Crash,
                match go_panic_line(stderr) {
                    Some(panic) => format!("{} ({killed})", normalize(panic)),
                    None => killed,
                },
            );
        }
        ProcessEnd::Exited { code } if Some(*code) == probe.unavailable_exit_code => {
            let reason = stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .map(normalize)
                .unwrap_or_else(|| format!("exit {code}"));
            return Classified::new(Verdict::Unavailable, reason);
        }
        ProcessEnd::Exited { code } => {
            let stdout_ok = probe
                .pass_stdout
                .as_ref()
                .is_none_or(|pattern| pattern.is_match(stdout));
            if *code == probe.pass_exit_code && stdout_ok {
                return Classified::new(Verdict::Pass, "");
            }
        }
    }
    let output = format!("{stderr}\n{stdout}");
    for signature in signatures {
        if let Some(found) = signature.pattern.find(&output) {
            let verdict = match signature.verdict {
                SignatureVerdict::Fail => Verdict::Fail,
                SignatureVerdict::Crash => Verdict::Crash,
                SignatureVerdict::InfraError => Verdict::InfraError,
            };
            return Classified::new(verdict, normalize(line_around(&output, found.start())));
        }
    }
    if let Some(panic) = go_panic_line(stderr) {
        return Classified::new(Verdict::Crash, normalize(panic));
    }
    let code = match end {
        ProcessEnd::Exited { code } => *code,
        _ => unreachable!("other ends returned above"),
    };
    let last_line = stderr
        .lines()
        .chain(stdout.lines())
        .rfind(|l| !l.trim().is_empty())
        .map(normalize)
        .unwrap_or_else(|| "no output".into());
    let reason = if code == probe.pass_exit_code {
        format!("expected output missing: {last_line}")
    } else {
        format!("exit {code}: {last_line}")
    };
    Classified::new(Verdict::Fail, reason)
}

/// A cell's verdict from its probes' (in run order): a finding about the
/// component (crash, fail, timeout) wins, then an infrastructure error; a
/// probe this kernel cannot run leaves the others' pass standing, noted in
/// the signature; only a cell where nothing could run is `unavailable`.
pub fn aggregate(probes: &[(&str, Classified)]) -> Classified {
    let first = |wanted: &[Verdict]| probes.iter().find(|(_, c)| wanted.contains(&c.verdict));
    if let Some((_, finding)) = first(&[Verdict::Crash, Verdict::Fail, Verdict::Timeout]) {
        return finding.clone();
    }
    if let Some((_, infra)) = first(&[Verdict::InfraError]) {
        return infra.clone();
    }
    let unavailable: Vec<String> = probes
        .iter()
        .filter(|(_, c)| c.verdict == Verdict::Unavailable)
        .map(|(id, c)| format!("{id} unavailable: {}", c.signature))
        .collect();
    if first(&[Verdict::Pass]).is_none() {
        return probes
            .first()
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Classified::new(Verdict::InfraError, "no probe ran"));
    }
    Classified::new(Verdict::Pass, unavailable.join("; "))
}

/// A passing cell whose `needed` probe was unavailable is unavailable: what
/// passed (a version check) cannot stand for the case. `probes` is each
/// probe's id, whether it is needed, and its outcome.
pub fn needed_missing(
    cell: &Classified,
    probes: &[(&str, bool, &Classified)],
) -> Option<Classified> {
    if cell.verdict != Verdict::Pass {
        return None;
    }
    probes
        .iter()
        .find(|(_, needed, c)| *needed && c.verdict == Verdict::Unavailable)
        .map(|(id, _, c)| {
            Classified::new(
                Verdict::Unavailable,
                format!("{id} unavailable (the case needs it): {}", c.signature),
            )
        })
}

/// The first line of a Go runtime panic or fatal error, if stderr holds one.
pub fn go_panic_line(stderr: &str) -> Option<&str> {
    stderr.lines().find(|line| {
        line.starts_with("panic: ")
            || line.starts_with("fatal error: ")
            || line.starts_with("SIGSEGV: ")
            || line.starts_with("unexpected signal")
    })
}

/// The first sign of a kernel crash in a guest console, normalised.
pub fn kernel_crash(console: &str) -> Option<String> {
    static CRASH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(Kernel panic - not syncing:.*|BUG: .*|Oops: .*|general protection fault.*|traps: .*double fault.*|PANIC: double fault.*)",
        )
        .expect("valid regex")
    });
    CRASH.find(console).map(|m| normalize(m.as_str()))
}

fn line_around(text: &str, offset: usize) -> &str {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// Takes out what differs between runs of the same failure.
pub fn normalize(line: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            // klog header: F0625 08:31:52.871041 2167222 tproxy_linux.go:42]
            (
                r"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+ [\w./-]+:\d+\]\s*",
                "",
            ),
            // Go log / syslog style timestamps
            (
                r"\d{4}[/-]\d{2}[/-]\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?Z?\s*",
                "",
            ),
            // kernel printk time
            (r"^\[\s*\d+\.\d+\]\s*", ""),
            (r"\[[0-9a-fA-F:]*:[0-9a-fA-F:]*\]:\d+", "<ip>:<port>"),
            (r"\b\d{1,3}(\.\d{1,3}){3}:\d+\b", "<ip>:<port>"),
            (r"\b\d{1,3}(\.\d{1,3}){3}\b", "<ip>"),
            (r"0x[0-9a-fA-F]+", "0x…"),
            (r"\b(goroutine|pid|PID|tid|CPU:?) \d+", "$1 <n>"),
            (r"\s+", " "),
        ]
        .into_iter()
        .map(|(pattern, replacement)| (Regex::new(pattern).expect("valid regex"), replacement))
        .collect()
    });
    let mut text = line.trim().to_string();
    for (pattern, replacement) in RULES.iter() {
        text = pattern.replace_all(&text, *replacement).into_owned();
    }
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Expectation {
        Expectation {
            timeout_ms: 20_000,
            pass_exit_code: 0,
            pass_stdout: Some(Regex::new("ready").unwrap()),
            unavailable_exit_code: Some(77),
            restart_is_crash: false,
            needed: false,
            fails_on: None,
        }
    }

    fn transparent_signature() -> Signature {
        Signature {
            id: "ip-transparent".into(),
            verdict: SignatureVerdict::Fail,
            pattern: Regex::new("IP_TRANSPARENT: operation not supported").unwrap(),
        }
    }

    #[test]
    fn normalises_the_seed_error() {
        let seed = "F0625 08:31:52.871041 2167222 tproxy_linux.go:42] Encountered error while binding listener: listen tcp 192.168.200.70:8102: set socket option: IP_TRANSPARENT: operation not supported";
        assert_eq!(
            normalize(seed),
            "Encountered error while binding listener: listen tcp <ip>:<port>: set socket option: IP_TRANSPARENT: operation not supported"
        );
        assert_eq!(
            normalize("dial tcp [::1]:8080: connect: connection refused"),
            "dial tcp <ip>:<port>: connect: connection refused"
        );
        assert_eq!(
            normalize("[    2.345678] BUG: unable to handle page fault for address: 0xffff8881"),
            "BUG: unable to handle page fault for address: 0x…"
        );
        assert_eq!(
            normalize("goroutine 529 [running]:"),
            "goroutine <n> [running]:"
        );
        assert_eq!(normalize("x".repeat(500).as_str()).chars().count(), 201);
    }

    #[test]
    fn classifies_every_kind_of_end() {
        let sigs = [transparent_signature()];
        let p = probe();
        let c = |end: ProcessEnd, out: &str, err: &str| classify_probe(&p, &sigs, &end, out, err);

        assert_eq!(
            c(ProcessEnd::Exited { code: 0 }, "ready\n", "").verdict,
            Verdict::Pass
        );
        let missing = c(ProcessEnd::Exited { code: 0 }, "other\n", "");
        assert_eq!(missing.verdict, Verdict::Fail);
        assert!(missing.signature.starts_with("expected output missing"));

        let fail = c(
            ProcessEnd::Exited { code: 1 },
            "",
            "F0625 08:31:52.871041 1 tproxy_linux.go:42] listen tcp 127.0.0.1:8102: set socket option: IP_TRANSPARENT: operation not supported\n",
        );
        assert_eq!(
            fail,
            Classified::new(
                Verdict::Fail,
                "listen tcp <ip>:<port>: set socket option: IP_TRANSPARENT: operation not supported"
            )
        );

        let panic = c(
            ProcessEnd::Exited { code: 2 },
            "",
            "panic: runtime error: index out of range [1] with length 1\n\ngoroutine 1 [running]:\n",
        );
        assert_eq!(panic.verdict, Verdict::Crash);
        assert_eq!(
            panic.signature,
            "panic: runtime error: index out of range [1] with length 1"
        );

        let segv = c(
            ProcessEnd::Signaled {
                signal: libc::SIGSEGV,
            },
            "",
            "",
        );
        assert_eq!(segv, Classified::new(Verdict::Crash, "killed by SIGSEGV"));
        assert_eq!(c(ProcessEnd::TimedOut, "", "").verdict, Verdict::Timeout);
        assert_eq!(
            c(
                ProcessEnd::SpawnFailed {
                    error: "ENOENT".into()
                },
                "",
                ""
            )
            .verdict,
            Verdict::InfraError
        );
        let plain = c(
            ProcessEnd::Exited { code: 3 },
            "",
            "connect: connection refused\n",
        );
        assert_eq!(plain.signature, "exit 3: connect: connection refused");
    }

    #[test]
    fn a_needed_probe_unavailable_makes_the_cell_unavailable() {
        let pass = Classified::new(Verdict::Pass, "");
        let missing = Classified::new(Verdict::Unavailable, "no setgroups");
        let cell = aggregate(&[("version", pass.clone()), ("loopback", missing.clone())]);
        assert_eq!(cell.verdict, Verdict::Pass);
        let needed = [("version", false, &pass), ("loopback", true, &missing)];
        assert_eq!(
            needed_missing(&cell, &needed),
            Some(Classified::new(
                Verdict::Unavailable,
                "loopback unavailable (the case needs it): no setgroups"
            ))
        );
        // Not needed: the pass stands. A finding is never turned into unavailable.
        let optional = [("version", false, &pass), ("dnat", false, &missing)];
        assert_eq!(needed_missing(&cell, &optional), None);
        let crash = Classified::new(Verdict::Crash, "panic");
        assert_eq!(needed_missing(&crash, &needed), None);
    }

    #[test]
    fn cell_verdicts_from_probe_verdicts() {
        let pass = || Classified::new(Verdict::Pass, "");
        let missing = || Classified::new(Verdict::Unavailable, "no nftables");
        let refused = || Classified::new(Verdict::Fail, "connection refused");
        assert_eq!(aggregate(&[("a", pass()), ("b", pass())]), pass());
        assert_eq!(
            aggregate(&[("a", pass()), ("dnat", missing())]),
            Classified::new(Verdict::Pass, "dnat unavailable: no nftables")
        );
        assert_eq!(aggregate(&[("a", missing()), ("b", refused())]), refused());
        assert_eq!(
            aggregate(&[
                ("a", Classified::new(Verdict::InfraError, "x")),
                ("b", refused())
            ]),
            refused()
        );
        assert_eq!(
            aggregate(&[("a", missing()), ("b", missing())]).verdict,
            Verdict::Unavailable
        );
        assert_eq!(aggregate(&[]).verdict, Verdict::InfraError);
    }

    #[test]
    fn finds_kernel_crashes_in_a_console() {
        let console = "[    0.1] Linux version 6.1\n[    3.2] sysrq: Trigger a crash\n[    3.3] Kernel panic - not syncing: sysrq triggered crash\n";
        assert_eq!(
            kernel_crash(console).as_deref(),
            Some("Kernel panic - not syncing: sysrq triggered crash")
        );
        assert_eq!(kernel_crash("[ 0.1] all fine\n"), None);
    }
}
