//! One cell on a cluster: its image loaded into the node, its manifests
//! applied in its own namespace, the rollout watched (ready, or a container
//! that keeps restarting), then each probe run as a pod of its own; the
//! namespace deleted after. Everything seen becomes agent-style events.

use super::api::KubeApi;
use super::Cluster;
use crate::backend::Workload;
use crate::cancel::{wait_for, Cancel, Deadline, Waited};
use crate::plan::{CellProbe, ROLLOUT_PROBE};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kmatrix_agent::{GuestEvent, ProcessEnd};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Restarts after which a container that never became ready is crash-looping.
const RESTARTS_TO_CRASH: i64 = 2;
/// Log lines kept from a crashed container.
const LOG_LINES: usize = 20;
/// kube-proxy's `minSyncPeriod` (1 s by default, iptables and IPVS) and the
/// rules' write: how long after an endpoint is ready a ClusterIP leads to it.
const KUBE_PROXY_SYNC: Duration = Duration::from_secs(2);
/// What the kubelet answers (successfully) for a container whose log is gone.
const LOGS_GONE: &str = "unable to retrieve container logs";

pub struct Deployment<'a> {
    /// Typed reads of the cell's namespace (writes go through kubectl).
    pub api: Result<KubeApi>,
    pub cluster: &'a dyn Cluster,
    pub work: &'a Workload,
    pub scratch: &'a Path,
    pub interrupted: &'a Cancel,
    pub log_dir: &'a Path,
    /// The images the node holds already (by tag), imported by earlier cells.
    pub loaded: &'a std::cell::RefCell<std::collections::BTreeSet<String>>,
}

/// What the rollout came to.
enum Rollout {
    Ready {
        logs: String,
    },
    CrashLoop {
        exit_code: i32,
        logs: String,
        detail: String,
    },
    /// Never started, for a reason of the cluster's (image, sandbox, CNI).
    NotStarted(String),
    /// Started but never ready, without restarting.
    TimedOut,
}

impl Deployment<'_> {
    pub fn run(&self) -> Vec<GuestEvent> {
        let cell_id = &self.work.cell_id;
        let kube = &self.work.kube;
        let mut events = Vec::new();
        let started = Instant::now();
        let rollout_probe = self
            .work
            .probes
            .iter()
            .find(|p| p.probe_id == ROLLOUT_PROBE);
        let timeout = Duration::from_millis(rollout_probe.map_or(120_000, |p| p.expect.timeout_ms))
            * self.cluster.slowdown();
        let rollout = self
            .deploy()
            .and_then(|()| self.watch(timeout))
            .unwrap_or_else(|e| Rollout::NotStarted(format!("{e:#}")));
        let (end, stdout, stderr) = match &rollout {
            Rollout::Ready { logs } => {
                (ProcessEnd::Exited { code: 0 }, logs.clone(), String::new())
            }
            Rollout::CrashLoop {
                exit_code,
                logs,
                detail,
            } => (
                ProcessEnd::Exited { code: *exit_code },
                String::new(),
                format!("{logs}\n{detail}"),
            ),
            Rollout::NotStarted(why) => (
                ProcessEnd::SpawnFailed {
                    error: format!("the workload never started: {why}"),
                },
                String::new(),
                String::new(),
            ),
            Rollout::TimedOut => (ProcessEnd::TimedOut, String::new(), self.describe_pods()),
        };
        events.push(GuestEvent::ProbeDone {
            cell_id: cell_id.clone(),
            probe_id: ROLLOUT_PROBE.into(),
            end,
            stdout,
            stderr,
            duration_ms: started.elapsed().as_millis() as u64,
        });
        if matches!(rollout, Rollout::Ready { .. }) {
            for probe in &kube.probes {
                if self.interrupted.is_cancelled() {
                    break;
                }
                events.push(self.probe_pod(probe));
            }
        }
        self.keep_state();
        self.delete_namespace();
        events
    }

    fn kubectl(&self) -> std::process::Command {
        let mut command = self.cluster.kubectl();
        command.args(["--namespace", &self.work.kube.namespace]);
        command
    }

    fn kubectl_output(&self, args: &[&str]) -> Result<String> {
        super::command_output(self.kubectl(), args)
    }

    /// Loads the version's image and applies its namespace and manifests.
    fn deploy(&self) -> Result<()> {
        let kube = &self.work.kube;
        if self.cluster.images_preloaded() {
            if self.work.reproducer.is_none() && self.work.real_image.is_none() {
                bail!("this version has no reproducer binary to make its image from");
            }
        } else if !self.loaded.borrow().contains(&kube.image) {
            fs::create_dir_all(self.scratch)?;
            let archive = super::images::workload_image(self.work, self.scratch)?;
            self.cluster.load_image(&archive)?;
            let _ = fs::remove_file(&archive);
            self.loaded.borrow_mut().insert(kube.image.clone());
        }
        self.apply_in(
            &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels: {{app.kubernetes.io/managed-by: kmatrix}}\n",
                kube.namespace
            ),
            false,
        )?;
        // Pods wait for their namespace's service account.
        let budget = Duration::from_secs(60) * self.cluster.slowdown();
        let waited = wait_for(
            self.interrupted,
            Deadline::after(budget),
            Duration::from_millis(300),
            || -> Result<_> {
                Ok(self
                    .kubectl_output(&["get", "serviceaccount", "default"])
                    .ok())
            },
        )?;
        match waited {
            Waited::Ready(_) => self.apply_in_namespace(&kube.manifests),
            Waited::Cancelled => bail!("interrupted"),
            Waited::TimedOut => bail!("the namespace's default service account never appeared"),
        }
    }

    /// `kubectl apply` of `manifests` in the cell's namespace, or (for
    /// the namespace itself) cluster-wide.
    fn apply_in(&self, manifests: &str, namespaced: bool) -> Result<()> {
        let mut command = if namespaced {
            self.kubectl()
        } else {
            self.cluster.kubectl()
        };
        let mut child = command
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run kubectl")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(manifests.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "kubectl apply: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn apply_in_namespace(&self, manifests: &str) -> Result<()> {
        self.apply_in(manifests, true)
    }

    fn api(&self) -> Result<&KubeApi> {
        self.api
            .as_ref()
            .map_err(|e| anyhow::anyhow!("no client of the cluster's API: {e:#}"))
    }

    /// The workload's pods (the probes' left out).
    fn workload_pods(&self) -> Result<Vec<Pod>> {
        Ok(self
            .api()?
            .pods()?
            .into_iter()
            .filter(|p| !pod_name(p).starts_with("kmatrix-probe-"))
            .collect())
    }

    /// Waits until every rollout target is ready, or one of its containers
    /// keeps restarting, or the deadline.
    fn watch(&self, timeout: Duration) -> Result<Rollout> {
        let deadline = Deadline::after(timeout);
        let targets = &self.work.kube.rollout;
        let expect = self
            .work
            .probes
            .iter()
            .find(|p| p.probe_id == ROLLOUT_PROBE)
            .map(|p| &p.expect);
        let ready_log = expect.and_then(|e| e.pass_stdout.as_ref());
        let fails_on = expect.and_then(|e| e.fails_on.as_ref());
        loop {
            if self.interrupted.is_cancelled() {
                bail!("interrupted");
            }
            let pods = self.workload_pods()?;
            for pod in &pods {
                for status in container_statuses(pod) {
                    let restarts = i64::from(status.restart_count);
                    let waiting = waiting_reason(status).unwrap_or_default();
                    if restarts >= RESTARTS_TO_CRASH
                        || (restarts >= 1 && waiting == "CrashLoopBackOff")
                    {
                        return Ok(self.crash_loop(pod, status, restarts));
                    }
                }
            }
            let api = self.api()?;
            if targets.iter().all(|t| api.target_ready(t).unwrap_or(false)) {
                let logs = pods
                    .iter()
                    .map(|p| self.logs(pod_name(p), false))
                    .collect::<Vec<_>>()
                    .join("\n");
                // A container is "ready" the moment it starts (no readiness
                // probe): only its log saying so, or the deadline, ends the
                // wait, so one about to crash is seen crashing. A line the
                // scenario calls final (`fails_on`) ends it too: the logs
                // are then what the deadline would have found, sooner.
                let said_ready = ready_log.is_none_or(|pattern| pattern.is_match(&logs));
                let settled = fails_on.is_some_and(|pattern| pattern.is_match(&logs));
                if said_ready || settled || deadline.passed() {
                    return Ok(Rollout::Ready { logs });
                }
            }
            if deadline.passed() {
                let running = pods.iter().any(|p| {
                    container_statuses(p).any(|s| {
                        s.state
                            .as_ref()
                            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                    })
                });
                if running {
                    return Ok(Rollout::TimedOut);
                }
                bail!(
                    "no container of the workload started within {} s: {}",
                    timeout.as_secs(),
                    self.describe_pods()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn crash_loop(&self, pod: &Pod, status: &ContainerStatus, restarts: i64) -> Rollout {
        let pod_name = pod_name(pod);
        let container = &status.name;
        let terminated = status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| status.state.as_ref().and_then(|s| s.terminated.as_ref()));
        let exit_code = terminated.map_or(1, |t| t.exit_code);
        let reason = terminated
            .and_then(|t| t.reason.as_deref())
            .unwrap_or("Error");
        let waiting = waiting_reason(status).unwrap_or("restarting");
        let logs = self.logs(pod_name, true);
        Rollout::CrashLoop {
            exit_code,
            logs,
            detail: format!(
                "container {container} of pod {pod_name}: restarted {restarts} times ({waiting}); last exit {exit_code} ({reason})"
            ),
        }
    }

    /// A pod's log (its previous container's with `previous`), last lines.
    fn logs(&self, pod: &str, previous: bool) -> String {
        // The kubelet removes a dead container as it starts the next one:
        // `--previous` can name one already gone (kubectl then prints
        // "unable to retrieve container logs" and succeeds), and the new
        // one may not have logged yet. Ask a few times, each way.
        if !previous {
            return self
                .logs_once(pod, false)
                .unwrap_or_else(|e| format!("(no logs: {e:#})"));
        }
        let mut last = String::new();
        for attempt in 0..6 {
            let previous = attempt % 2 == 0;
            match self.logs_once(pod, previous) {
                Ok(text) if !text.trim().is_empty() && !text.contains(LOGS_GONE) => return text,
                Ok(text) => last = text,
                Err(e) => last = format!("(no logs: {e:#})"),
            }
            std::thread::sleep(Duration::from_secs(1) * self.cluster.slowdown());
        }
        last
    }

    fn logs_once(&self, pod: &str, previous: bool) -> Result<String> {
        self.api()?.logs(pod, previous, LOG_LINES as i64)
    }

    fn describe_pods(&self) -> String {
        let described = self.api().and_then(|api| api.pods()).map(|pods| {
            pods.iter()
                .map(|p| {
                    let status = p.status.as_ref();
                    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("?");
                    let why: Vec<String> = container_statuses(p)
                        .filter_map(|s| {
                            let waiting = s.state.as_ref()?.waiting.as_ref()?;
                            let reason = waiting.reason.as_deref()?;
                            Some(format!(
                                "{reason}: {}",
                                waiting.message.as_deref().unwrap_or("")
                            ))
                        })
                        .collect();
                    let conditions: Vec<&str> = status
                        .and_then(|s| s.conditions.as_ref())
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.message.as_deref())
                        .collect();
                    format!(
                        "{} {phase} {} {}",
                        pod_name(p),
                        why.join("; "),
                        conditions.join("; ")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
        described.unwrap_or_else(|e| format!("(cannot list pods: {e:#})"))
    }

    /// The first ready pod `IP:port` behind a Service, once there is one.
    fn ready_endpoint(&self, service: &str) -> Result<String> {
        let waited = wait_for(
            self.interrupted,
            Deadline::after(Duration::from_secs(60) * self.cluster.slowdown()),
            Duration::from_millis(300),
            || -> Result<_> { Ok(self.api()?.endpoint_address(service).ok()) },
        )?;
        match waited {
            Waited::Ready(address) => Ok(address),
            Waited::Cancelled => bail!("interrupted"),
            Waited::TimedOut => self.api()?.endpoint_address(service),
        }
    }

    /// Fills `{service:NAME}` (ClusterIP:port) and `{endpoint:NAME}` (the
    /// first ready pod IP:port behind it), once the Service has one.
    fn resolve(&self, arg: &str) -> Result<String> {
        let mut out = arg.to_string();
        for (placeholder, endpoint) in [("{service:", false), ("{endpoint:", true)] {
            while let Some(start) = out.find(placeholder) {
                let rest = &out[start + placeholder.len()..];
                let end = rest.find('}').context("unclosed placeholder")?;
                let name = &rest[..end];
                let ready_endpoint = self.ready_endpoint(name)?;
                let value = if endpoint {
                    ready_endpoint
                } else {
                    // The rollout ends on the pod's log; its Ready condition,
                    // the EndpointSlice and kube-proxy's rules follow. A
                    // ClusterIP without rules yet refuses ("connection
                    // refused", the very symptom of the MPTCP seed): the
                    // probe waits for kube-proxy's next sync.
                    std::thread::sleep(KUBE_PROXY_SYNC * self.cluster.slowdown());
                    self.api()?.service_address(name)?
                };
                out = format!("{}{value}{}", &out[..start], &rest[end + 1..]);
            }
        }
        Ok(out)
    }

    /// Runs one probe as a pod of the workload's image; its log is stdout.
    fn probe_pod(&self, probe: &CellProbe) -> GuestEvent {
        let started = Instant::now();
        let done = |end, stdout: String, stderr: String| GuestEvent::ProbeDone {
            cell_id: self.work.cell_id.clone(),
            probe_id: probe.probe_id.clone(),
            end,
            stdout,
            stderr,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let argv: Result<Vec<String>> = probe.argv.iter().map(|a| self.resolve(a)).collect();
        let argv = match argv {
            Ok(argv) => argv,
            Err(e) => {
                return done(
                    ProcessEnd::SpawnFailed {
                        error: format!("cannot fill the probe's command: {e:#}"),
                    },
                    String::new(),
                    String::new(),
                )
            }
        };
        let name = format!(
            "kmatrix-probe-{}",
            probe.probe_id.to_lowercase().replace('_', "-")
        );
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kmatrix"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "probe",
                    "image": self.work.kube.image,
                    "imagePullPolicy": "Never",
                    "command": argv,
                    "env": probe.env.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
                }]
            }
        });
        if let Err(e) = self.apply_in_namespace(&pod.to_string()) {
            return done(
                ProcessEnd::SpawnFailed {
                    error: format!("{e:#}"),
                },
                String::new(),
                String::new(),
            );
        }
        // The pod's own start-up (sandbox, network) is not the probe's time.
        let budget = (Duration::from_millis(probe.expect.timeout_ms) + Duration::from_secs(30))
            * self.cluster.slowdown();
        let finished = wait_for(
            self.interrupted,
            Deadline::after(budget),
            Duration::from_millis(300),
            || -> Result<_> {
                let Ok(pod) = self.api()?.pod(&name) else {
                    return Ok(None);
                };
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                Ok(matches!(phase, Some("Succeeded" | "Failed")).then(|| {
                    container_statuses(&pod)
                        .next()
                        .and_then(|s| s.state.as_ref()?.terminated.as_ref())
                        .map_or(1, |t| t.exit_code)
                }))
            },
        );
        match finished {
            Ok(Waited::Ready(code)) => {
                let logs = self.logs(&name, false);
                done(ProcessEnd::Exited { code }, logs, String::new())
            }
            _ => {
                let logs = self.logs(&name, false);
                done(ProcessEnd::TimedOut, logs, self.describe_pods())
            }
        }
    }

    /// What the namespace held, kept beside the cluster's logs.
    fn keep_state(&self) {
        if let Ok(text) = self.kubectl_output(&["get", "all,events", "-o", "wide"]) {
            let _ = fs::write(
                self.log_dir
                    .join(format!("{}.txt", self.work.kube.namespace)),
                text,
            );
        }
    }

    fn delete_namespace(&self) {
        let _ = self
            .cluster
            .kubectl()
            .args([
                "delete",
                "namespace",
                &self.work.kube.namespace,
                // Its pods go in the background; the next cell has its own
                // namespace, and the cluster's end removes what is left.
                "--wait=false",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
}

fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}
