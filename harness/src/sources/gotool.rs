//! The one way kmatrix runs a Go toolchain: `GOROOT` set, `GOTOOLCHAIN=local`
//! (a go.mod asking for a newer Go is an error, never a download), and the
//! user's Go configuration left out (`GOENV=off`, no `GOFLAGS`): a machine
//! whose `go env -w` set flags an older Go does not know (`-buildvcs` breaks
//! Go 1.15) or that change a build must not change kmatrix's builds.

use std::path::Path;
use std::process::Command;

/// `GOROOT/bin/go` with that isolation; callers add the build's own env.
pub fn go(goroot: &Path) -> Command {
    let mut command = Command::new(goroot.join("bin/go"));
    isolate(&mut command, goroot);
    command
}

/// The same isolation for a command that runs go itself (`make`).
pub fn isolate(command: &mut Command, goroot: &Path) {
    command
        .env("GOROOT", goroot)
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .env_remove("GOFLAGS");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_go_configuration_stays_out() {
        let command = go(Path::new("/usr/lib/go-1.24"));
        let envs: Vec<(String, Option<String>)> = command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&("GOTOOLCHAIN".into(), Some("local".into()))));
        assert!(envs.contains(&("GOENV".into(), Some("off".into()))));
        assert!(envs.contains(&("GOFLAGS".into(), None)));
        assert_eq!(command.get_program(), "/usr/lib/go-1.24/bin/go");
    }
}
