//! Helpers shared by the integration tests: a throw-away project folder that
//! reuses the real catalogs, and a way to run the real `kmatrix` binary.

#![allow(dead_code)] // each test binary uses a different part

use kmatrix_metadata::CellRecord;

/// kube-ovn-tproxy narrowed to what the real-boot tests check: the last
/// go-1.23 release and the first go-1.24 one, as shipped and with the
/// GODEBUG workaround (4 cells a kernel).
pub const TPROXY_TWO_BY_TWO: [&str; 8] = [
    "--version",
    "v1.13.14",
    "--version",
    "v1.14.0",
    "--variant",
    "baseline",
    "--variant",
    "godebug-multipathtcp-0",
];

/// kube-vip-cidr's releases the real-boot tests run: one before PR #961,
/// two after (6 cells a kernel with its two variants).
pub const KUBE_VIP_THREE_RELEASES: [&str; 6] = [
    "--version",
    "v0.8.4",
    "--version",
    "v0.8.5",
    "--version",
    "v0.8.9",
];
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A temporary project with the real `images/` and the given scenario folders.
pub struct TempProject {
    pub dir: tempfile::TempDir,
}

impl TempProject {
    pub fn new() -> TempProject {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_tree(&repo_root().join("images"), &dir.path().join("images"));
        fs::create_dir_all(dir.path().join("scenarios")).unwrap();
        TempProject { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The project's catalog, loaded as kmatrix loads it.
    pub fn catalog(&self) -> kmatrix::inputs::Catalog {
        kmatrix::Project::new(self.root()).catalog().unwrap()
    }

    /// Copies a scenario folder (from the repo's scenarios/ or the fixtures)
    /// in, with the shared drivers its reproducer may name (`../drivers/…`).
    pub fn add_scenario(&self, from: &Path) -> PathBuf {
        let to = self
            .root()
            .join("scenarios")
            .join(from.file_name().expect("named folder"));
        copy_tree(from, &to);
        let drivers = self.root().join("scenarios/drivers");
        if !drivers.exists() {
            copy_tree(&repo_root().join("scenarios/drivers"), &drivers);
        }
        to
    }

    pub fn kmatrix(&self, args: &[&str]) -> Output {
        self.kmatrix_with_env(&[], args)
    }

    /// The same, with variables added to kmatrix's environment.
    pub fn kmatrix_with_env(&self, env: &[(&str, &Path)], args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kmatrix"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .expect("kmatrix runs")
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(name)
}

pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A run's cells, read through the results contract (`kmatrix-metadata`).
pub fn read_cells(dir: &Path) -> Vec<CellRecord> {
    let text = fs::read_to_string(dir.join(kmatrix_metadata::CELLS_FILE)).unwrap_or_default();
    kmatrix_metadata::parse_cells(&text)
        .expect("cells.jsonl holds cell records")
        .records
}

/// A fact the guest reported for a cell ("" when absent).
pub fn fact<'a>(cell: &'a CellRecord, name: &str) -> &'a str {
    cell.facts.get(name).map_or("", String::as_str)
}

/// Debian's reference registry serving on a free loopback port; stopped on drop.
pub struct LocalRegistry {
    child: Child,
    pub port: u16,
    _storage: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        LocalRegistry::start_with("")
    }

    /// The same, with `extra` appended to its configuration (an `auth:` section).
    pub fn start_with(extra: &str) -> LocalRegistry {
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = storage.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's docker-registry (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        // Up means it answers at all (a 401, when it wants a token, included).
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        LocalRegistry {
            child,
            port,
            _storage: storage,
        }
    }

    pub fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A static program (no libc needed in its file system) printing `line`.
pub fn static_program(dir: &Path, line: &str) -> PathBuf {
    static_program_from(
        dir,
        &format!("#include <stdio.h>\nint main(void) {{ puts(\"{line}\"); return 0; }}\n"),
    )
}

/// A static program (`hello` in `dir`) built from the C `source`.
pub fn static_program_from(dir: &Path, source: &str) -> PathBuf {
    let binary = dir.join("hello");
    // The source comes on stdin: a file name would put this run's temporary
    // path into the binary, and images made from it would differ every run
    // (a new cache entry each time, not the one the cache holds).
    let mut gcc = Command::new("gcc")
        .args(["-static", "-O2", "-x", "c", "-", "-o"])
        .arg(&binary)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut gcc.stdin.take().unwrap(), source.as_bytes()).unwrap();
    assert!(
        gcc.wait().unwrap().success(),
        "gcc -static (libc6-dev) builds it"
    );
    binary
}

/// A free TCP port on 127.0.0.1 (nothing listens there once this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real HTTP server (Debian's python3 `http.server`); stopped on drop.
pub struct HttpServer(Child);

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `dir` on 127.0.0.1 once it accepts connections; the server and
/// its base URL.
pub fn serve(dir: &Path) -> (HttpServer, String) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs (scripts/setup.sh installs Debian's python3)");
    let server = HttpServer(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the HTTP server never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, format!("http://127.0.0.1:{port}"))
}

impl TempProject {
    /// `kmatrix run` of kube-vip-cidr v0.8.4 as shipped (one cell a
    /// kernel) on `kernels`, into `out`: the cheapest real cell, for tests
    /// about what happens around it (pins, fetches, resume).
    pub fn run_one_kube_vip_cell(&self, kernels: &[&str], out: &Path) -> Output {
        let mut args = vec!["run"];
        for kernel in kernels {
            args.extend(["--kernel", kernel]);
        }
        args.extend(["--version", "v0.8.4", "--variant", "baseline"]);
        args.extend(["--out", out.to_str().expect("a UTF-8 path")]);
        self.kmatrix(&args)
    }
}
