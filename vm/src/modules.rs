//! Kernel modules: loaded from the files the harness put in the guest, or,
//! in a container on the host's kernel, reported as the host has them.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;

/// A module's name from its file path (or from a bare name).
fn module_name(path: &str) -> &str {
    path.rsplit('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".ko")
}

/// Loads each module file with `finit_module`; records what happened as a fact.
pub fn load_modules(modules: &[String], facts: &mut BTreeMap<String, String>) {
    for path in modules {
        let name = module_name(path);
        let state = match File::open(path) {
            Err(e) => format!("missing: {e}"),
            Ok(file) => {
                use std::os::fd::AsRawFd;
                let params = CString::default();
                let rc = unsafe {
                    libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0)
                };
                let err = std::io::Error::last_os_error();
                if rc == 0 || err.raw_os_error() == Some(libc::EEXIST) {
                    "loaded".to_string()
                } else {
                    format!("failed: {err}")
                }
            }
        };
        facts.insert(format!("module.{name}"), state);
    }
}

/// What the host kernel has of each module a container cannot load:
/// `module.<name>` is `loaded`, `built-in (...)`, `absent: ...` (the
/// kernel's own config says it lacks it, or has it only as a module nobody
/// loaded) or `unknown: ...` (nothing to tell by; the probes will find out).
pub fn host_modules(modules: &[String], facts: &mut BTreeMap<String, String>) {
    let loaded = fs::read_to_string("/proc/modules").unwrap_or_default();
    let config = kernel_config();
    for path in modules {
        let name = module_name(path);
        let state = if loaded
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
        {
            "loaded".to_string()
        } else {
            let symbol = config_symbol(name);
            match config.as_deref().map(|c| config_value(c, &symbol)) {
                Some(Some(value)) if value == "y" => format!("built-in ({symbol}=y)"),
                Some(Some(value)) if value == "m" => format!(
                    "absent: {symbol}=m, not loaded on the host, and a container cannot load modules"
                ),
                Some(Some(_)) => format!("absent: {symbol} is not set in the host kernel"),
                Some(None) | None if fs::metadata(format!("/sys/module/{name}")).is_ok() => {
                    "built-in".to_string()
                }
                Some(None) => format!("unknown: not loaded, and the host's config never names {symbol}"),
                None => "unknown: not loaded, and the host kernel has no /proc/config.gz".into(),
            }
        };
        facts.insert(format!("module.{name}"), state);
    }
}

/// The running kernel's config (`/proc/config.gz`), if it exposes it.
fn kernel_config() -> Option<String> {
    let file = File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The config symbol of a module, where its name does not say it.
fn config_symbol(module: &str) -> String {
    let known = [
        ("ip_tables", "CONFIG_IP_NF_IPTABLES"),
        ("nft_chain_nat", "CONFIG_NFT_NAT"),
        ("nft_nat", "CONFIG_NFT_NAT"),
        ("xt_TPROXY", "CONFIG_NETFILTER_XT_TARGET_TPROXY"),
        ("nf_tproxy_ipv4", "CONFIG_NF_TPROXY_IPV4"),
    ];
    known
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, symbol)| symbol.to_string())
        .unwrap_or_else(|| format!("CONFIG_{}", module.to_uppercase().replace('-', "_")))
}

/// `y`, `m`, `n` ("is not set"), or `None` for a symbol the config never names.
fn config_value(config: &str, symbol: &str) -> Option<String> {
    config.lines().find_map(|line| {
        if line.trim() == format!("# {symbol} is not set") {
            return Some("n".to_string());
        }
        line.strip_prefix(symbol)?
            .strip_prefix('=')
            .map(|v| v.trim().to_string())
    })
}
