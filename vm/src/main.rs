//! The kmatrix guest agent: PID 1 of the initramfs the harness writes, or
//! the entrypoint of a container on the host's kernel.
//!
//! In a guest it prepares a minimal system (filesystems, loopback, entropy,
//! modules), runs every probe of every cell with a deadline, reports each
//! result as one JSON line on the results serial port, and powers the guest
//! off. In a container ([`CONTAINER_MODE_ENV`]) the engine made the mounts,
//! the events go to stdout, and modules are the host kernel's: the agent
//! says which the host has, and loads none.

use kmatrix_agent::{
    GuestEvent, Job, JobDisk, JobProbe, ProcessEnd, CONTAINER_MODE_ENV, DEFAULT_RESULTS_PORT,
    JOB_PATH, RESULTS_PORT_PARAM,
};
mod modules;
mod shell;

use modules::{host_modules, load_modules};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Captured output beyond this is cut: signatures need the first lines, not megabytes.
const OUTPUT_LIMIT: usize = 16 * 1024;

fn main() {
    let in_container = std::env::var_os(CONTAINER_MODE_ENV).is_some();
    // A container's PID 1 too, but there the engine owns mounts and the end.
    let is_init = std::process::id() == 1 && !in_container;
    if is_init {
        mount_basics();
    }
    let mut port: Box<dyn Write> = if in_container {
        Box::new(std::io::stdout())
    } else {
        Box::new(open_results_port())
    };
    let outcome = run(&mut port, in_container);
    if let Err(message) = &outcome {
        // The console keeps this even when the results port is gone.
        eprintln!("kmatrix-agent: {message}");
    }
    let _ = port.flush();
    if is_init {
        power_off();
    }
    if outcome.is_err() {
        std::process::exit(1);
    }
}

fn run(port: &mut dyn Write, in_container: bool) -> Result<(), String> {
    let job: Job = serde_json::from_str(
        &fs::read_to_string(JOB_PATH).map_err(|e| format!("cannot read {JOB_PATH}: {e}"))?,
    )
    .map_err(|e| format!("{JOB_PATH} is not a valid job: {e}"))?;

    credit_entropy(&job.entropy_seed_hex);
    let mut facts = BTreeMap::new();
    if let Err(e) = bring_up_loopback() {
        facts.insert("loopback".into(), format!("down: {e}"));
    }
    if in_container {
        facts.insert(
            "environment".into(),
            "container on the host's kernel".into(),
        );
        host_modules(&job.modules, &mut facts);
    } else {
        load_modules(&job.modules, &mut facts);
    }
    mount_disks(&job.disks, &mut facts);
    if !in_container && seal_binaries(&job.sealed_binaries, &mut facts) {
        // Before any probe starts (they inherit it), in a single thread.
        std::env::set_var(CLONED_BINARY_ENV, "1");
    }
    collect_kernel_facts(&mut facts);
    emit(
        port,
        &GuestEvent::Hello {
            kernel_release: kernel_release(),
            facts,
        },
    );
    if job.shell && !in_container {
        let ended = shell::run(&job, &kernel_release());
        emit(port, &GuestEvent::Done);
        return ended;
    }

    for cell in &job.cells {
        emit(
            port,
            &GuestEvent::CellStart {
                cell_id: cell.cell_id.clone(),
            },
        );
        for probe in &cell.probes {
            let started = Instant::now();
            let (end, stdout, stderr) = run_probe(probe);
            emit(
                port,
                &GuestEvent::ProbeDone {
                    cell_id: cell.cell_id.clone(),
                    probe_id: probe.probe_id.clone(),
                    end,
                    stdout,
                    stderr,
                    duration_ms: started.elapsed().as_millis() as u64,
                },
            );
        }
        emit(
            port,
            &GuestEvent::CellDone {
                cell_id: cell.cell_id.clone(),
            },
        );
    }
    emit(port, &GuestEvent::Done);
    Ok(())
}

fn emit(port: &mut dyn Write, event: &GuestEvent) {
    // One write per event keeps a line whole on the port.
    let _ = port.write_all(event.to_line().as_bytes());
    let _ = port.flush();
}

fn open_results_port() -> File {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let path = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{RESULTS_PORT_PARAM}=")))
        .unwrap_or(DEFAULT_RESULTS_PORT)
        .to_string();
    match OpenOptions::new().write(true).open(&path) {
        Ok(file) => {
            make_raw(&file);
            file
        }
        Err(e) => {
            eprintln!("kmatrix-agent: cannot open results port {path} ({e}); using the console");
            OpenOptions::new()
                .write(true)
                .open("/dev/console")
                .expect("no console to report on")
        }
    }
}

/// Turns off the tty's output processing so lines arrive as written.
fn make_raw(file: &File) {
    use std::os::fd::AsRawFd;
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(file.as_raw_fd(), &mut termios) == 0 {
            libc::cfmakeraw(&mut termios);
            libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &termios);
        }
    }
}

fn mount_basics() {
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/run"] {
        let _ = fs::create_dir_all(dir);
    }
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("tmpfs", "/tmp", "tmpfs");
    mount("tmpfs", "/run", "tmpfs");
    let _ = fs::create_dir_all("/sys/fs/bpf");
    mount("bpf", "/sys/fs/bpf", "bpf");
    // Container runtimes look for the cgroup hierarchy even when they manage
    // none. Before 4.5 there is no cgroup2: a tmpfs there is what crun takes
    // for the (empty) v1 layout, and it manages no cgroup here anyway.
    let _ = fs::create_dir_all("/sys/fs/cgroup");
    if !mount("cgroup2", "/sys/fs/cgroup", "cgroup2") {
        mount("tmpfs", "/sys/fs/cgroup", "tmpfs");
    }
}

/// Whether the mount succeeded.
fn mount(source: &str, target: &str, fstype: &str) -> bool {
    mount_flags(source, target, fstype, 0)
}

fn mount_flags(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> bool {
    let c = |s: &str| CString::new(s).expect("no NUL in mount arguments");
    let (source, target, fstype) = (c(source), c(target), c(fstype));
    unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        ) == 0
    }
}

/// Where sealed binaries live: a ramfs mounted read-only once they are in.
const SEALED_DIR: &str = "/kmatrix/sealed";
/// crun's (and runc's) own switch: set with a binary on a read-only mount,
/// it runs in place instead of copying itself (containers/crun#904).
const CLONED_BINARY_ENV: &str = "_LIBCONTAINER_CLONED_BINARY";

/// Seals each binary in place (see `Job::sealed_binaries`): copied into a
/// ramfs that is then made read-only, and bind-mounted over the original.
/// A ramfs (not the initramfs's tmpfs, whose files answer crun's seal
/// query) is on every kernel. A binary the guest lacks is skipped; what was
/// done is a fact. Returns whether any was sealed.
fn seal_binaries(files: &[String], facts: &mut BTreeMap<String, String>) -> bool {
    let present: Vec<&String> = files.iter().filter(|f| fs::metadata(f).is_ok()).collect();
    if present.is_empty() {
        return false;
    }
    let sealed = (|| -> Result<(), String> {
        fs::create_dir_all(SEALED_DIR).map_err(|e| e.to_string())?;
        if !mount("ramfs", SEALED_DIR, "ramfs") {
            return Err(format!("ramfs: {}", std::io::Error::last_os_error()));
        }
        for (n, file) in present.iter().enumerate() {
            fs::copy(file, format!("{SEALED_DIR}/{n}")).map_err(|e| e.to_string())?;
        }
        let read_only = libc::MS_REMOUNT | libc::MS_RDONLY;
        if !mount_flags("ramfs", SEALED_DIR, "ramfs", read_only) {
            return Err(format!("read-only: {}", std::io::Error::last_os_error()));
        }
        for (n, file) in present.iter().enumerate() {
            if !mount_flags(&format!("{SEALED_DIR}/{n}"), file, "", libc::MS_BIND) {
                return Err(format!("bind {file}: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    })();
    for file in &present {
        let state = match &sealed {
            Ok(()) => "on a read-only mount".to_string(),
            Err(e) => format!("as is ({e})"),
        };
        facts.insert(format!("sealed.{file}"), state);
    }
    sealed.is_ok()
}

/// Credits host-provided random bytes to the pool: Go programs block in
/// `getrandom` until the pool is ready, which takes many seconds under emulation.
fn credit_entropy(seed_hex: &str) {
    let bytes: Vec<u8> = (0..seed_hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    if bytes.is_empty() {
        return;
    }
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(&bytes);
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    if let Ok(random) = OpenOptions::new().write(true).open("/dev/random") {
        use std::os::fd::AsRawFd;
        unsafe {
            libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr());
        }
    }
}

fn bring_up_loopback() -> Result<(), String> {
    if loopback_up() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Sets `lo` up with plain syscalls: it also runs between fork and exec.
fn loopback_up() -> bool {
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if sock < 0 {
            return false;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let ok = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) >= 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) >= 0
        };
        libc::close(sock);
        ok
    }
}

/// Mounts each artifact disk read-only; `disk.<mount point>` says how it went.
fn mount_disks(disks: &[JobDisk], facts: &mut BTreeMap<String, String>) {
    for disk in disks {
        // A virtio disk's node appears when its driver binds, maybe just now.
        let until = Instant::now() + Duration::from_secs(10);
        while fs::metadata(&disk.device).is_err() && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::create_dir_all(&disk.mount_point);
        let c = |s: &str| CString::new(s).expect("no NUL in mount arguments");
        let (source, target, fstype) = (c(&disk.device), c(&disk.mount_point), c(&disk.fstype));
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        let state = if rc == 0 {
            "mounted".to_string()
        } else if fs::metadata(&disk.device).is_err() {
            format!(
                "missing: no {} (virtio_blk not in this kernel?)",
                disk.device
            )
        } else {
            format!("failed: {}", std::io::Error::last_os_error())
        };
        facts.insert(format!("disk.{}", disk.mount_point), state);
    }
}

fn collect_kernel_facts(facts: &mut BTreeMap<String, String>) {
    let read = |path: &str| fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    facts.insert(
        "mptcp.enabled".into(),
        read("/proc/sys/net/mptcp/enabled").unwrap_or_else(|| "absent".into()),
    );
    facts.insert(
        "ipv6".into(),
        if fs::metadata("/proc/net/if_inet6").is_ok() {
            "on".into()
        } else {
            "off".into()
        },
    );
    facts.insert(
        "bpf.jit_enable".into(),
        read("/proc/sys/net/core/bpf_jit_enable").unwrap_or_else(|| "absent".into()),
    );
    // The kernel's own BTF (CONFIG_DEBUG_INFO_BTF), as loaders probe it.
    facts.insert(
        "btf".into(),
        if fs::metadata("/sys/kernel/btf/vmlinux").is_ok() {
            "present".into()
        } else {
            "absent".into()
        },
    );
    let cgroup_fs = read("/proc/mounts").and_then(|mounts| {
        mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).zip(l.split_whitespace().nth(2)))
            .rfind(|(target, _)| *target == "/sys/fs/cgroup")
            .map(|(_, fstype)| fstype.to_string())
    });
    facts.insert(
        "cgroup".into(),
        match cgroup_fs.as_deref() {
            Some("cgroup2") => "cgroup2".into(),
            Some("tmpfs") => "tmpfs (the kernel has no cgroup2, 4.5+)".into(),
            other => other.unwrap_or("none").into(),
        },
    );
    if let Some(entropy) = read("/proc/sys/kernel/random/entropy_avail") {
        facts.insert("entropy_avail".into(), entropy);
    }
}

fn kernel_release() -> String {
    unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut name) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(name.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

fn run_probe(probe: &JobProbe) -> (ProcessEnd, String, String) {
    let Some((program, args)) = probe.argv.split_first() else {
        return (
            ProcessEnd::SpawnFailed {
                error: "empty argv".into(),
            },
            String::new(),
            String::new(),
        );
    };
    let mut command = Command::new(program);
    // Each probe gets a network namespace of its own (with lo up), so what
    // one cell configures (links, addresses, rules) never leaks into the next.
    // Without netns support in the kernel the probe shares the agent's.
    unsafe {
        command.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) == 0 {
                loopback_up();
            }
            Ok(())
        });
    }
    let spawned = command
        .args(args)
        .env_clear()
        .env("PATH", "/kmatrix/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(std::env::var_os(CLONED_BINARY_ENV).map(|v| (CLONED_BINARY_ENV, v)))
        .envs(&probe.env)
        .current_dir("/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills everything it started.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return (
                ProcessEnd::SpawnFailed {
                    error: format!("{program}: {e}"),
                },
                String::new(),
                String::new(),
            )
        }
    };
    let stdout = capture(child.stdout.take().expect("stdout is piped"));
    let stderr = capture(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + Duration::from_millis(probe.timeout_ms);
    let end = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match (status.code(), status.signal()) {
                    (Some(code), _) => ProcessEnd::Exited { code },
                    (None, Some(signal)) => ProcessEnd::Signaled { signal },
                    (None, None) => ProcessEnd::Exited { code: -1 },
                }
            }
            Ok(None) if Instant::now() >= deadline => {
                // Everything the probe started dies with it: its process
                // group, and every descendant that left it (a container
                // runtime's container runs in a session of its own and
                // would otherwise keep the output pipes, and the agent, waiting).
                let tree = descendants(child.id() as i32);
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                    for pid in tree {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                let _ = child.wait();
                break ProcessEnd::TimedOut;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                break ProcessEnd::SpawnFailed {
                    error: format!("wait: {e}"),
                }
            }
        }
    };
    reap_orphans();
    // What the probe printed, even when something it left behind still
    // holds a pipe open: the probe's deadline is its own, the agent never
    // waits past a short grace for output.
    let grace = Instant::now() + OUTPUT_GRACE;
    while !(stdout.done() && stderr.done()) && Instant::now() < grace {
        thread::sleep(Duration::from_millis(5));
    }
    (end, stdout.text(), stderr.text())
}

/// How long the agent waits for a finished probe's pipes to close.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A pipe drained on a thread of its own into a shared buffer.
struct Captured {
    kept: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: thread::JoinHandle<()>,
}

impl Captured {
    fn done(&self) -> bool {
        self.reader.is_finished()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept.lock().expect("output buffer")).into_owned()
    }
}

fn capture(mut pipe: impl Read + Send + 'static) -> Captured {
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = thread::spawn({
        let kept = kept.clone();
        move || {
            let mut buf = [0u8; 4096];
            // Keep draining past the limit so the child never blocks on a full pipe.
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut kept = kept.lock().expect("output buffer");
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    });
    Captured { kept, reader }
}

/// Every process below `root` (children, their children, ...), read from
/// /proc while the tree is still intact.
fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    // "pid (comm) state ppid ...": comm may hold spaces.
                    let after = &stat[stat.rfind(')')? + 1..];
                    let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// As PID 1 the agent inherits every orphan; collect the ones that exited.
fn reap_orphans() {
    unsafe { while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {} }
}

fn power_off() -> ! {
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    // reboot(2) only returns on error; PID 1 must never exit.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
