//! `kmatrix shell` driven as a person drives it: through a pseudo-terminal,
//! a command typed at the guest's prompt, its output read back, `exit`.
//! Real QEMU boots of real kernels.

mod common;

use common::repo_root;
use rexpect::session::{spawn_command, PtySession};
use std::process::Command;

/// Long enough for a TCG boot with other tests beside it.
const BOOT_MS: u64 = 240_000;

fn shell(args: &[&str]) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kmatrix"));
    command
        .arg("--root")
        .arg(repo_root())
        .arg("shell")
        .args(args);
    spawn_command(command, Some(BOOT_MS)).expect("kmatrix shell starts in a pty")
}

/// Types `line`, then waits for `marker` in what comes back (the marker is
/// computed by the guest's shell, so the echo of the typed line cannot match).
fn typed(session: &mut PtySession, line: &str, marker: &str) -> String {
    session.send_line(line).unwrap();
    session
        .exp_string(marker)
        .unwrap_or_else(|e| panic!("no `{marker}` after typing `{line}`: {e}"))
}

fn leave(mut session: PtySession) -> String {
    session.send_line("exit").unwrap();
    let rest = session
        .exp_string("the guest powered off")
        .expect("the guest powers off after `exit`");
    match session.process.wait().expect("kmatrix exits") {
        rexpect::process::wait::WaitStatus::Exited(_, 0) => rest,
        other => panic!("kmatrix shell ended with {other:?}"),
    }
}

#[test]
fn a_shell_in_a_bare_guest_runs_what_is_typed() {
    let mut session = shell(&["--kernel", "debian-6.12"]);
    session
        .exp_string("kmatrix shell on Linux 6.12")
        .expect("the banner names the guest's kernel");
    session.exp_string(":/# ").expect("a prompt");
    let seen = typed(&mut session, "uname -r; echo answer-$((6*7))", "answer-42");
    assert!(seen.contains("6.12."), "uname -r in the guest: {seen}");
    leave(session);
}

#[test]
fn a_shell_in_a_cells_guest_has_the_versions_files() {
    let mut session = shell(&[
        "--kernel",
        "debian-6.1",
        "--scenario",
        "caddy-mptcp",
        "--version",
        "v2.6.2",
    ]);
    let banner = session
        .exp_string(":/# ")
        .expect("a prompt after the banner");
    assert!(
        banner.contains("mounted read-only at /kmatrix/artifacts/caddy-mptcp--v2.6.2"),
        "the banner says where the version's files are: {banner}"
    );
    assert!(
        banner.contains("probe version would run"),
        "the cell's probes are listed: {banner}"
    );
    // `tr` makes the version's text something the typed line does not hold.
    let seen = typed(
        &mut session,
        "/kmatrix/artifacts/caddy-mptcp--v2.6.2/usr/bin/caddy version | tr . _; echo caddy''-done",
        "caddy-done",
    );
    assert!(
        seen.contains("2_6_2"),
        "Debian's Caddy runs in the guest: {seen}"
    );
    leave(session);
}

#[test]
fn a_shell_needs_a_kernel_qemu_boots() {
    let output = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(repo_root())
        .args(["shell", "--kernel", "docker"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`docker` is not a kernel QEMU boots"),
        "{stderr}"
    );
    assert!(stderr.contains("images/kernels.toml"), "{stderr}");
}
