//! The Docker backend: each boot is one container on the engine's host
//! kernel, running the same job a QEMU guest runs.
//!
//! The container's image is made from local files only: the scenario's
//! guest root filesystems and the agent, `docker import`ed once and reused
//! by content (`kmatrix-env:<hash>`). The job, reproducers, bundle configs
//! and artifact trees are read-only bind mounts at the paths a guest sees
//! them at. The agent is the entrypoint, in container mode: the same event
//! lines on stdout; stderr is the console log. The container gets only the
//! capabilities cells use ([`CAPABILITIES`]), never `--privileged`, and no
//! network but loopback.

use super::{Backend, BootEnd, BootOutcome, BootRequest};
use crate::cancel::{Cancel, Deadline};
use crate::hashing::{sha256_bytes, sha256_file};
use crate::sources::engine::Engine;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use kmatrix_agent::{GuestEvent, CONTAINER_MODE_ENV, JOB_PATH};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Where the agent sits in the container's image.
const AGENT_PATH: &str = "/kmatrix/agent";
/// The repository of the images kmatrix imports.
const IMAGE_REPOSITORY: &str = "kmatrix-env";
/// Labels every container kmatrix starts, so a later run can find strays.
pub const BOOT_LABEL: &str = "io.kmatrix.boot";
pub const RUN_DIR_LABEL: &str = "io.kmatrix.run-dir";

/// What cells use: links, addresses and rules (`NET_ADMIN`); network
/// namespaces and the artifacts' nested containers (`SYS_ADMIN`); a copy of
/// a service's listening socket, to ask the kernel its protocol
/// (`pidfd_getfd` needs `SYS_PTRACE`).
const CAPABILITIES: [&str; 3] = ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"];

/// Time for the container to start and the agent to say hello.
const START_GRACE: Duration = Duration::from_secs(60);
/// Time per cell beyond its probes' own deadlines.
const CELL_GRACE: Duration = Duration::from_secs(15);

pub struct DockerBackend {
    engine: OnceLock<Result<Engine, String>>,
    pub interrupted: Cancel,
    /// The run directory, labelled on each container.
    pub run_dir: PathBuf,
    /// Where image tarballs are written before they are imported.
    pub scratch: PathBuf,
}

impl DockerBackend {
    pub fn new(interrupted: Cancel, run_dir: &Path, scratch: &Path) -> Self {
        DockerBackend {
            engine: OnceLock::new(),
            interrupted,
            // Labels name it absolutely, so a resume from elsewhere finds strays.
            run_dir: run_dir
                .canonicalize()
                .unwrap_or_else(|_| run_dir.to_path_buf()),
            scratch: scratch.to_path_buf(),
        }
    }

    fn engine(&self) -> Result<&Engine, String> {
        self.engine
            .get_or_init(|| {
                let engine = Engine::connect().map_err(|e| format!("{e:#}"))?;
                self.remove_strays(&engine);
                Ok(engine)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Removes containers an earlier run of this run directory left behind
    /// (killed with -9, they run on to their deadline): this run holds the
    /// directory's lock, so none of them is anyone's now.
    fn remove_strays(&self, engine: &Engine) {
        let docker = engine.docker();
        let filters = HashMap::from([(
            "label",
            vec![format!("{RUN_DIR_LABEL}={}", self.run_dir.display())],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        engine.block_on(async {
            let Ok(strays) = docker.list_containers(Some(options)).await else {
                return;
            };
            for stray in strays {
                if let Some(id) = stray.id {
                    remove(docker, &id).await;
                }
            }
        });
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> String {
        "docker".into()
    }

    fn emulator(&self) -> Option<String> {
        self.engine().ok().map(|e| e.facts.version.clone())
    }

    fn boot(&self, request: &BootRequest, on_event: &mut dyn FnMut(&GuestEvent)) -> BootOutcome {
        let mut outcome = BootOutcome::starting(request, self.name());
        let (engine, image, job_path, mut console) = match self.prepare(request, &outcome) {
            Ok(prepared) => prepared,
            Err(detail) => {
                outcome.end = BootEnd::BackendFailed { detail };
                return outcome;
            }
        };
        let deadline = Deadline::after(job_deadline(request));
        let run = Run {
            backend: self,
            engine,
            request,
            image,
            job_path,
        };
        let mut lines = String::new();
        let end = run.run(deadline, &mut |chunk, is_stdout| {
            if !is_stdout {
                let _ = console.write_all(chunk);
                outcome.console.push_str(&String::from_utf8_lossy(chunk));
                return;
            }
            lines.push_str(&String::from_utf8_lossy(chunk));
            while let Some(newline) = lines.find('\n') {
                let line: String = lines.drain(..=newline).collect();
                match GuestEvent::from_line(&line) {
                    Some(event) => {
                        on_event(&event);
                        outcome.events.push(event);
                    }
                    None => {
                        let _ = console.write_all(line.as_bytes());
                        outcome.console.push_str(&line);
                    }
                }
            }
        });
        let _ = writeln!(console, "kmatrix: container ended: {}", end.describe());
        outcome
            .console
            .push_str(&format!("kmatrix: container ended: {}\n", end.describe()));
        outcome.end = end;
        outcome
    }
}

impl DockerBackend {
    /// What a container needs before it starts: the engine, its image, the
    /// job on disk and the console file; `Err` says what failed.
    fn prepare(
        &self,
        request: &BootRequest,
        outcome: &BootOutcome,
    ) -> Result<(&Engine, String, PathBuf, fs::File), String> {
        fs::create_dir_all(&request.log_dir)
            .map_err(|e| format!("cannot make {}: {e}", request.log_dir.display()))?;
        let engine = self.engine()?;
        let image = self
            .environment_image(engine, request)
            .map_err(|e| format!("cannot import the container's image: {e:#}"))?;
        let job_path = request.log_dir.join("job.json");
        let job = serde_json::to_vec_pretty(&request.job).expect("jobs serialise");
        fs::write(&job_path, job)
            .map_err(|e| format!("cannot write {}: {e}", job_path.display()))?;
        let console = fs::File::create(&outcome.console_path)
            .map_err(|e| format!("cannot write {}: {e}", outcome.console_path.display()))?;
        Ok((engine, image, job_path, console))
    }
}

/// How long a job may run: start-up, then each cell's probes and a grace.
fn job_deadline(request: &BootRequest) -> Duration {
    START_GRACE
        + request
            .job
            .cells
            .iter()
            .map(|cell| {
                CELL_GRACE
                    + cell
                        .probes
                        .iter()
                        .map(|p| Duration::from_millis(p.timeout_ms))
                        .sum::<Duration>()
            })
            .sum::<Duration>()
}

/// One container's life: made, started, followed, and removed.
struct Run<'a> {
    backend: &'a DockerBackend,
    engine: &'a Engine,
    request: &'a BootRequest,
    image: String,
    job_path: PathBuf,
}

impl Run<'_> {
    /// Runs the container to its end, handing its output to `output`
    /// (`true` for stdout) as it comes.
    fn run(&self, deadline: Deadline, output: &mut dyn FnMut(&[u8], bool)) -> BootEnd {
        let docker = self.engine.docker();
        let name = container_name(&self.request.label);
        self.engine.block_on(async {
            let mut sysctls = true;
            loop {
                if let Err(e) = docker
                    .create_container(
                        Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                        self.container_config(sysctls),
                    )
                    .await
                {
                    return BootEnd::BackendFailed {
                        detail: format!("cannot create the container: {e}"),
                    };
                }
                match docker.start_container(&name, None).await {
                    Ok(()) => break,
                    // A host kernel without MPTCP has no such sysctl: run
                    // without it, and the guest facts will say MPTCP is absent.
                    Err(e) if sysctls && e.to_string().contains("sysctl") => {
                        output(
                            format!("kmatrix: the engine refused the sysctls ({e}); starting without them\n")
                                .as_bytes(),
                            false,
                        );
                        remove(docker, &name).await;
                        sysctls = false;
                    }
                    Err(e) => {
                        remove(docker, &name).await;
                        return BootEnd::BackendFailed {
                            detail: format!("cannot start the container: {e}"),
                        };
                    }
                }
            }
            let mut logs = docker.logs(
                &name,
                Some(
                    LogsOptionsBuilder::default()
                        .follow(true)
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            );
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let end = loop {
                tokio::select! {
                    item = logs.next() => match item {
                        Some(Ok(LogOutput::StdOut { message })) => output(&message, true),
                        Some(Ok(LogOutput::StdErr { message }))
                        | Some(Ok(LogOutput::Console { message })) => output(&message, false),
                        Some(Ok(LogOutput::StdIn { .. })) => {}
                        Some(Err(e)) => {
                            break BootEnd::BackendFailed {
                                detail: format!("lost the container's output: {e}"),
                            }
                        }
                        None => break self.exit_state(&name).await,
                    },
                    _ = tick.tick() => {
                        if self.backend.interrupted.is_cancelled() {
                            break BootEnd::Interrupted;
                        }
                        if deadline.passed() {
                            break BootEnd::DeadlineExceeded {
                                waiting_for: "the container's job to finish".into(),
                            };
                        }
                    }
                }
            };
            remove(docker, &name).await;
            end
        })
    }

    /// How the container ended: the agent exits 0 after its last event.
    async fn exit_state(&self, name: &str) -> BootEnd {
        let docker = self.engine.docker();
        let mut waited = docker.wait_container(name, None);
        let _ = waited.next().await;
        match docker.inspect_container(name, None).await {
            Ok(inspected) => {
                let state = inspected.state.unwrap_or_default();
                let code = state.exit_code.unwrap_or(-1);
                if code == 0 {
                    BootEnd::Completed
                } else {
                    let oom = if state.oom_killed == Some(true) {
                        ", killed for memory"
                    } else {
                        ""
                    };
                    BootEnd::GuestDied {
                        detail: format!(
                            "container exited {code}{oom}{}",
                            state
                                .error
                                .filter(|e| !e.is_empty())
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        ),
                    }
                }
            }
            Err(e) => BootEnd::BackendFailed {
                detail: format!("cannot inspect the ended container: {e}"),
            },
        }
    }

    fn container_config(&self, sysctls: bool) -> ContainerCreateBody {
        let request = self.request;
        let mut binds = vec![format!("{}:{JOB_PATH}:ro", self.job_path.display())];
        binds.extend(
            request
                .files
                .iter()
                .map(|f| format!("{}:{}:ro", f.host_path.display(), f.guest_path)),
        );
        binds.extend(
            request
                .disks
                .iter()
                .map(|d| format!("{}:{}:ro", d.tree.display(), d.mount_point)),
        );
        let labels = HashMap::from([
            (BOOT_LABEL.to_string(), request.label.clone()),
            (
                RUN_DIR_LABEL.to_string(),
                self.backend.run_dir.display().to_string(),
            ),
        ]);
        ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: Some(vec![AGENT_PATH.into()]),
            env: Some(vec![format!("{CONTAINER_MODE_ENV}=1")]),
            working_dir: Some("/".into()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(binds),
                network_mode: Some("none".into()),
                cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
                // As a guest's first network namespace has it.
                sysctls: sysctls
                    .then(|| HashMap::from([("net.mptcp.enabled".to_string(), "1".to_string())])),
                tmpfs: Some(HashMap::from([
                    ("/tmp".to_string(), "mode=1777".to_string()),
                    ("/run".to_string(), "mode=755".to_string()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

async fn remove(docker: &bollard::Docker, name: &str) {
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

/// A container name from a boot label: unique, and readable in `docker ps`.
fn container_name(label: &str) -> String {
    let readable: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut random = [0u8; 4];
    if let Ok(mut urandom) = fs::File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut random);
    }
    format!("kmatrix-{readable}-{}", hex::encode(random))
}

impl DockerBackend {
    /// The image of the request's root filesystems and the agent: found by
    /// its content tag, or imported now from a tarball of local files.
    fn environment_image(&self, engine: &Engine, request: &BootRequest) -> anyhow::Result<String> {
        let mut identity = sha256_file(&request.agent)?;
        for root in &request.rootfs {
            // Root filesystems live in content-keyed cache slots.
            identity.push('\0');
            identity.push_str(&root.display().to_string());
        }
        let tag = sha256_bytes(identity.as_bytes())[..16].to_string();
        let reference = format!("{IMAGE_REPOSITORY}:{tag}");
        let docker = engine.docker();
        if engine.block_on(docker.inspect_image(&reference)).is_ok() {
            return Ok(reference);
        }
        fs::create_dir_all(&self.scratch)?;
        let tarball = tempfile::Builder::new()
            .prefix("kmatrix-image-")
            .suffix(".tar")
            .tempfile_in(&self.scratch)?;
        write_image_tar(request, tarball.as_file())?;
        let file = tokio::fs::File::from_std(tarball.reopen()?);
        let body =
            bollard::body_try_stream(futures_util::stream::unfold(file, |mut file| async move {
                use tokio::io::AsyncReadExt;
                let mut chunk = vec![0u8; 1 << 20];
                match file.read(&mut chunk).await {
                    Ok(0) => None,
                    Ok(n) => {
                        chunk.truncate(n);
                        Some((Ok(bytes::Bytes::from(chunk)), file))
                    }
                    Err(e) => Some((Err(e), file)),
                }
            }));
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(IMAGE_REPOSITORY)
            .tag(&tag)
            .build();
        engine.block_on(async {
            let mut progress = docker.create_image(Some(options), Some(body), None);
            while let Some(step) = progress.next().await {
                step?;
            }
            Ok::<_, bollard::errors::Error>(())
        })?;
        Ok(reference)
    }
}

/// The image's files: each root filesystem (a path in a later one wins),
/// the folders the engine mounts over, and the agent. Every path once: the
/// engine refuses a tarball with duplicates.
fn write_image_tar(request: &BootRequest, file: &fs::File) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let mut seen = std::collections::HashSet::new();
    let mut header = tar::Header::new_gnu();
    let agent = fs::read(&request.agent)?;
    header.set_size(agent.len() as u64);
    header.set_mode(0o755);
    let agent_path = AGENT_PATH.trim_start_matches('/');
    append_dir(&mut tar, "kmatrix")?;
    seen.insert(PathBuf::from("kmatrix"));
    tar.append_data(&mut header, agent_path, agent.as_slice())?;
    seen.insert(PathBuf::from(agent_path));
    for root in request.rootfs.iter().rev() {
        append_tree(&mut tar, root, Path::new(""), &mut seen)?;
    }
    for dir in ["proc", "sys", "dev", "tmp", "run", "etc"] {
        if seen.insert(PathBuf::from(dir)) {
            append_dir(&mut tar, dir)?;
        }
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    tar.append_data(&mut header, path, std::io::empty())
}

/// Appends `root/relative` and everything under it, skipping paths already in.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let inside = relative.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        if seen.insert(inside.clone()) {
            tar.append_path_with_name(entry.path(), &inside)?;
        }
        if is_dir {
            append_tree(tar, root, &inside, seen)?;
        }
    }
    Ok(())
}
