//! Typed reads of a cluster through kube-rs and k8s-openapi: a namespace's
//! pods, a rollout target's readiness, a Service's address, the first ready
//! endpoint behind it (discovery.k8s.io/v1 EndpointSlices) and containers'
//! logs. Writes stay `kubectl` (applying a user's manifests as users do,
//! deleting a namespace); so does `kubectl get all,events`, kept as text.
//!
//! kube-rs is async; kmatrix's backends are threads. Each [`KubeApi`] owns a
//! current-thread Tokio runtime and blocks on one request at a time, each
//! bounded by the cluster's request timeout (a hung guest must not hang the
//! run).

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

pub struct KubeApi {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    namespace: String,
    timeout: Duration,
}

impl KubeApi {
    /// A client of the cluster `kubeconfig` names (its current context and
    /// client certificate), for objects in `namespace`.
    pub fn connect(kubeconfig: &Path, namespace: &str, timeout: Duration) -> Result<KubeApi> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a Tokio runtime for the Kubernetes client")?;
        let config = Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("cannot read {}", kubeconfig.display()))?;
        let client = runtime.block_on(async {
            let mut config =
                kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
            config.read_timeout = Some(timeout);
            config.connect_timeout = Some(timeout);
            anyhow::Ok(kube::Client::try_from(config)?)
        })?;
        Ok(KubeApi {
            runtime,
            client,
            namespace: namespace.to_string(),
            timeout,
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// One request, bounded: the client's own timeouts cover reads, this the
    /// whole exchange.
    fn block_on<T>(&self, what: &str, request: impl Future<Output = kube::Result<T>>) -> Result<T> {
        // The timer is made inside the runtime (it needs its clock).
        let bounded = async { tokio::time::timeout(self.timeout, request).await };
        match self.runtime.block_on(bounded) {
            Ok(answer) => answer.with_context(|| what.to_string()),
            Err(_) => bail!("{what}: no answer within {} s", self.timeout.as_secs()),
        }
    }

    /// The namespace's pods.
    pub fn pods(&self) -> Result<Vec<Pod>> {
        let api = self.api::<Pod>();
        Ok(self
            .block_on("list pods", api.list(&ListParams::default()))?
            .items)
    }

    /// The release the API server reports (`/version`'s gitVersion).
    pub fn server_version(&self) -> Result<String> {
        let info = self.block_on("get /version", self.client.apiserver_version())?;
        Ok(info.git_version)
    }

    pub fn pod(&self, name: &str) -> Result<Pod> {
        let api = self.api::<Pod>();
        self.block_on(&format!("get pod {name}"), api.get(name))
    }

    /// Whether a rollout target (`daemonset/NAME`, `deployment/NAME`,
    /// `statefulset/NAME`) has all its pods ready.
    pub fn target_ready(&self, target: &str) -> Result<bool> {
        let (kind, name) = target
            .split_once('/')
            .with_context(|| format!("rollout target `{target}` is not KIND/NAME"))?;
        let what = format!("get {target}");
        Ok(match kind {
            "daemonset" => {
                let set = self.block_on(&what, self.api::<DaemonSet>().get(name))?;
                set.status.is_some_and(|s| {
                    s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled
                })
            }
            "deployment" => {
                let deployment = self.block_on(&what, self.api::<Deployment>().get(name))?;
                let wanted = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
                deployment.status.and_then(|s| s.ready_replicas) == Some(wanted)
            }
            "statefulset" => {
                let set = self.block_on(&what, self.api::<StatefulSet>().get(name))?;
                let wanted = set.spec.and_then(|s| s.replicas).unwrap_or(1);
                set.status.and_then(|s| s.ready_replicas) == Some(wanted)
            }
            other => bail!("rollout target kind `{other}`: kmatrix waits for daemonset/, deployment/ or statefulset/"),
        })
    }

    /// A Service's `ClusterIP:port` (its first port).
    pub fn service_address(&self, name: &str) -> Result<String> {
        let service = self.block_on(
            &format!("get service {name}"),
            self.api::<Service>().get(name),
        )?;
        let spec = service.spec.context("the service has no spec")?;
        let ip = spec.cluster_ip.context("no ClusterIP")?;
        let port = spec
            .ports
            .and_then(|p| p.first().map(|p| p.port))
            .context("no port")?;
        Ok(format!("{ip}:{port}"))
    }

    /// The first ready pod `IP:port` behind a Service, from its
    /// EndpointSlices (`kubernetes.io/service-name=NAME`).
    pub fn endpoint_address(&self, service: &str) -> Result<String> {
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let slices = self.block_on(
            &format!("list the endpoint slices of service {service}"),
            self.api::<EndpointSlice>().list(&params),
        )?;
        slices
            .items
            .iter()
            .find_map(|slice| {
                let port = slice.ports.as_ref()?.first()?.port?;
                let ready = slice
                    .endpoints
                    .iter()
                    .find(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))?;
                Some(format!("{}:{port}", ready.addresses.first()?))
            })
            .context("no ready endpoint")
    }

    /// The last `tail` lines of every container of a pod (its previous
    /// containers' with `previous`), one after the other.
    pub fn logs(&self, pod: &str, previous: bool, tail: i64) -> Result<String> {
        let containers: Vec<String> = self
            .pod(pod)?
            .spec
            .map(|s| s.containers.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        let api = self.api::<Pod>();
        let mut text = String::new();
        for container in containers {
            let params = LogParams {
                container: Some(container.clone()),
                previous,
                tail_lines: Some(tail),
                ..LogParams::default()
            };
            let what = format!("logs of pod {pod}, container {container}");
            text.push_str(&self.block_on(&what, api.logs(pod, &params))?);
        }
        Ok(text)
    }
}
