//! Knative Serving on Kubernetes: one Knative Service (`serving.knative.dev/v1`) per function, created through the
//! Kubernetes API with the settings of the Dirigent paper's Knative setup (container concurrency 1, target
//! concurrency 1, min/max/initial scale); invocations go to the ingress gateway with the `Host` header set to the
//! service's host name (from `status.url`), through the HTTP target.
//!
//! Every Service carries [`MANAGED_BY_LABEL`]`=`[`MANAGED_BY_VALUE`] and [`RUN_LABEL`]`=<run id>`, so a run's
//! Services are found by label, and [`cleanup`] removes whatever an interrupted run left behind.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{HttpTarget, HttpTargetConfig};
use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::record::Outcome;
use crate::schedule::Invocation;

/// API group of Knative Serving.
pub const GROUP: &str = "serving.knative.dev";
/// API version of the Services created.
pub const VERSION: &str = "v1";
/// Kind of the objects created.
pub const KIND: &str = "Service";
/// Plural resource name (the URL path segment).
pub const PLURAL: &str = "services";
/// Label every Service this toolkit creates carries; [`cleanup`] selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "faas-loader";
/// Label naming the run that created a Service.
pub const RUN_LABEL: &str = "faas-loader/run";
/// Label naming the trace function a Service serves.
pub const FUNCTION_LABEL: &str = "faas-loader/function";
/// Longest Service name: a DNS-1035 label (63) less the `-00001` revision suffix Knative appends.
pub const MAX_SERVICE_NAME: usize = 57;

/// The `target:` settings of `kind: knative`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnativeConfig {
    /// The ingress gateway (Kourier, Istio), `host:port` or `http://host:port`; invocations go there.
    pub gateway: String,
    /// Container image of every function (the trace function's image).
    pub image: String,
    /// Namespace the Services are created in.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Kubeconfig file; `null`: the standard locations (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; `null`: the current context.
    #[serde(default)]
    pub context: Option<String>,
    /// Speak h2c to the gateway, and name the container port `h2c` so Knative forwards HTTP/2.
    #[serde(default)]
    pub http2: bool,
    /// Port the function's container listens on (Knative passes it as `PORT`).
    #[serde(default = "default_container_port")]
    pub container_port: u16,
    /// Lower scaling bound per function (`autoscaling.knative.dev/min-scale`).
    #[serde(default)]
    pub min_scale: u32,
    /// Upper scaling bound per function (`autoscaling.knative.dev/max-scale`; 0: Knative's default).
    #[serde(default)]
    pub max_scale: u32,
    /// Instances created with each Service (`autoscaling.knative.dev/initial-scale`; 0 needs the cluster's
    /// `allow-zero-initial-scale: "true"` in `config-autoscaler`).
    #[serde(default)]
    pub initial_scale: u32,
    /// Further revision-template annotations, e.g. `autoscaling.knative.dev/target-burst-capacity: "-1"`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// How long all Services may take to become Ready.
    #[serde(with = "humantime_serde", default = "default_ready_timeout")]
    pub ready_timeout: Duration,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_container_port() -> u16 {
    8080
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(300)
}

impl KnativeConfig {
    /// Settings with every default, for `gateway` and `image`.
    pub fn new(gateway: impl Into<String>, image: impl Into<String>) -> Self {
        KnativeConfig {
            gateway: gateway.into(),
            image: image.into(),
            namespace: default_namespace(),
            kubeconfig: None,
            context: None,
            http2: false,
            container_port: default_container_port(),
            min_scale: 0,
            max_scale: 0,
            initial_scale: 0,
            annotations: BTreeMap::new(),
            ready_timeout: default_ready_timeout(),
        }
    }
}

/// Why a function name cannot be a Knative Service name, if it cannot (DNS-1035 label, at most
/// [`MAX_SERVICE_NAME`] characters).
pub fn check_service_name(name: &str) -> Result<(), String> {
    let valid_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let starts = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let ends = name.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > MAX_SERVICE_NAME {
        return Err(format!("'{name}' is longer than {MAX_SERVICE_NAME} characters (a Knative Service name)"));
    }
    if !(valid_chars && starts && ends) {
        return Err(format!(
            "'{name}' is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)"
        ));
    }
    Ok(())
}

/// The Knative Service manifest for `function` in run `run_id` (the object POSTed to the API server).
pub fn manifest(function: &FunctionDeployment, config: &KnativeConfig, run_id: &str) -> Value {
    let mut annotations: serde_json::Map<String, Value> =
        config.annotations.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let min_scale = function.min_scale;
    annotations.insert("autoscaling.knative.dev/target".into(), "1".into());
    annotations.insert("autoscaling.knative.dev/min-scale".into(), min_scale.to_string().into());
    if function.max_scale > 0 {
        annotations.insert("autoscaling.knative.dev/max-scale".into(), function.max_scale.to_string().into());
    }
    annotations.insert("autoscaling.knative.dev/initial-scale".into(), config.initial_scale.to_string().into());
    let labels = json!({
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        RUN_LABEL: run_id,
        FUNCTION_LABEL: function.name,
    });
    let image = function.image.clone().unwrap_or_else(|| config.image.clone());
    let port_name = if config.http2 { "h2c" } else { "http1" };
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": {
            "name": function.name,
            "namespace": config.namespace,
            "labels": labels,
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": annotations,
                },
                "spec": {
                    "containerConcurrency": 1,
                    "containers": [{
                        "image": image,
                        "ports": [{ "name": port_name, "containerPort": config.container_port }],
                    }],
                },
            },
        },
    })
}

/// The `ApiResource` of Knative Services (no derive needed for the CRD).
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// A Kubernetes client from `config`'s kubeconfig (or the standard locations), with ring as the TLS provider.
pub async fn kube_client(config: &KnativeConfig) -> Result<kube::Client, TargetError> {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions { context: config.context.clone(), ..KubeConfigOptions::default() };
    let client_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| TargetError::Config(format!("target.kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| TargetError::Config(format!("target.kubeconfig {}: {e}", path.display())))?
        }
        None if config.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| TargetError::Config(format!("kubeconfig (standard locations, target.context): {e}")))?,
        None => kube::Config::infer().await.map_err(|e| {
            TargetError::Config(format!("no Kubernetes config found (KUBECONFIG, ~/.kube/config, in-cluster): {e}"))
        })?,
    };
    let url = client_config.cluster_url.clone();
    kube::Client::try_from(client_config)
        .map_err(|e| TargetError::Config(format!("cannot build a Kubernetes client for {url}: {e}")))
}

/// Deletes every Knative Service carrying [`MANAGED_BY_LABEL`]`=`[`MANAGED_BY_VALUE`] in `config.namespace`
/// (leftovers of interrupted runs); the names deleted.
pub async fn cleanup(config: &KnativeConfig) -> Result<Vec<String>, TargetError> {
    let client = kube_client(config).await?;
    cleanup_with(client, &config.namespace).await
}

/// [`cleanup`] with a ready client.
pub async fn cleanup_with(client: kube::Client, namespace: &str) -> Result<Vec<String>, TargetError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &api_resource());
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let list = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| {
        TargetError::Teardown(format!("listing Knative Services with {selector} in namespace '{namespace}': {e}"))
    })?;
    let names: Vec<String> = list.items.into_iter().filter_map(|o| o.metadata.name).collect();
    let failed = delete_all(&api, &names, namespace).await;
    if failed.is_empty() { Ok(names) } else { Err(TargetError::Teardown(failed.join("; "))) }
}

/// Deletes `names`, treating "not found" as done; the failures, one message each.
async fn delete_all(api: &Api<DynamicObject>, names: &[String], namespace: &str) -> Vec<String> {
    let mut failed = Vec::new();
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => failed.push(format!("deleting Knative Service '{name}' in namespace '{namespace}': {e}")),
        }
    }
    failed
}

/// What a Service's status says about readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready, with the host name from `status.url`.
    Ready(String),
    /// Not yet (no status, an older generation, or `Ready` is `Unknown`); the latest message if any.
    Pending(String),
    /// `Ready` is `False`: Knative gave up (reason: message).
    Failed(String),
}

/// Reads a Service object's readiness: `Ready=True` for the current generation and a `status.url`.
pub fn readiness(object: &Value) -> Readiness {
    let status = &object["status"];
    let generation = object["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    let ready = status["conditions"].as_array().and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"));
    let Some(ready) = ready else {
        return Readiness::Pending("no Ready condition yet".into());
    };
    let describe = || {
        let reason = ready["reason"].as_str().unwrap_or("");
        let message = ready["message"].as_str().unwrap_or("");
        format!("{reason}: {message}").trim_matches([' ', ':']).to_string()
    };
    if generation.is_some() && observed < generation {
        return Readiness::Pending(format!("status is for generation {observed:?}, object is {generation:?}"));
    }
    match ready["status"].as_str() {
        Some("True") => match status["url"].as_str().map(host_of_url) {
            Some(Ok(host)) => Readiness::Ready(host),
            Some(Err(e)) => Readiness::Failed(e),
            None => Readiness::Pending("Ready but no status.url yet".into()),
        },
        Some("False") => Readiness::Failed(describe()),
        _ => Readiness::Pending(describe()),
    }
}

/// The host name of a Knative URL (`http://f.default.example.com` gives `f.default.example.com`).
pub fn host_of_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("status.url '{url}' is not a URL: {e}"))?;
    uri.host().map(str::to_string).ok_or_else(|| format!("status.url '{url}' has no host"))
}

/// Knative Serving as a target.
pub struct KnativeTarget {
    config: KnativeConfig,
    run_id: String,
    poll_interval: Duration,
    http: HttpTarget,
    client: Mutex<Option<kube::Client>>,
    deployed: Mutex<Vec<String>>,
    hosts: RwLock<HashMap<String, String>>,
}

impl std::fmt::Debug for KnativeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnativeTarget").field("config", &self.config).field("run_id", &self.run_id).finish()
    }
}

impl KnativeTarget {
    /// A target for `config`; the Kubernetes client is made at deploy time. `request_timeout` bounds each
    /// invocation.
    pub fn new(config: KnativeConfig, request_timeout: Option<Duration>) -> Result<Self, TargetError> {
        let base = if config.gateway.contains("://") {
            format!("{}/", config.gateway.trim_end_matches('/'))
        } else {
            format!("http://{}/", config.gateway)
        };
        let mut http = HttpTargetConfig::new(base);
        http.request_timeout = request_timeout;
        http.http2_prior_knowledge = config.http2;
        let http = HttpTarget::new(http).map_err(|e| TargetError::Config(format!("target.gateway: {e}")))?;
        if config.namespace.is_empty() {
            return Err(TargetError::Config("target.namespace must not be empty".into()));
        }
        let run_id = default_run_id();
        Ok(KnativeTarget {
            config,
            run_id,
            poll_interval: Duration::from_secs(1),
            http,
            client: Mutex::new(None),
            deployed: Mutex::default(),
            hosts: RwLock::default(),
        })
    }

    /// Uses `client` instead of one made from the kubeconfig.
    pub fn with_client(self, client: kube::Client) -> Self {
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        self
    }

    /// Sets how often readiness is polled while deploying (default 1 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the run id put in [`RUN_LABEL`] (default: time and process id).
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// The run id in [`RUN_LABEL`].
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The host name a deployed function is invoked with, once it is Ready.
    pub fn host(&self, function_name: &str) -> Option<String> {
        self.hosts.read().unwrap_or_else(|e| e.into_inner()).get(function_name).cloned()
    }

    async fn api(&self) -> Result<Api<DynamicObject>, TargetError> {
        let existing = self.client.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let client = match existing {
            Some(client) => client,
            None => {
                let client = kube_client(&self.config).await?;
                *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
                client
            }
        };
        Ok(Api::namespaced_with(client, &self.config.namespace, &api_resource()))
    }

    async fn create(&self, api: &Api<DynamicObject>, function: &FunctionDeployment) -> Result<(), TargetError> {
        let deploy_error = |message: String| TargetError::Deploy { function: function.name.clone(), message };
        check_service_name(&function.name).map_err(deploy_error)?;
        let object: DynamicObject = serde_json::from_value(manifest(function, &self.config, &self.run_id))
            .map_err(|e| deploy_error(format!("manifest: {e}")))?;
        let namespace = &self.config.namespace;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {
                self.deployed.lock().unwrap_or_else(|e| e.into_inner()).push(function.name.clone());
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Err(deploy_error(format!(
                "Knative Service '{}' already exists in namespace '{namespace}' (left by an earlier run? \
                 `loader cleanup` removes the toolkit's Services): {}",
                function.name, status.message
            ))),
            Err(e) => Err(deploy_error(format!(
                "creating Knative Service '{}' in namespace '{namespace}': {e}",
                function.name
            ))),
        }
    }

    /// Polls this run's Services (one list call per interval) until all of `names` are Ready or the deadline.
    async fn wait_ready(&self, api: &Api<DynamicObject>, names: &[String]) -> Result<(), TargetError> {
        let deadline = tokio::time::Instant::now() + self.config.ready_timeout;
        let selector = format!("{RUN_LABEL}={}", self.run_id);
        let mut pending: BTreeMap<String, String> =
            names.iter().map(|n| (n.clone(), "not listed yet".to_string())).collect();
        loop {
            let list = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| TargetError::Deploy {
                function: pending.keys().next().cloned().unwrap_or_default(),
                message: format!(
                    "listing Knative Services with {selector} in namespace '{}': {e}",
                    self.config.namespace
                ),
            })?;
            for object in list.items {
                let Some(name) = object.metadata.name.clone() else { continue };
                if !pending.contains_key(&name) {
                    continue;
                }
                let value = serde_json::to_value(&object).unwrap_or(Value::Null);
                match readiness(&value) {
                    Readiness::Ready(host) => {
                        pending.remove(&name);
                        self.hosts.write().unwrap_or_else(|e| e.into_inner()).insert(name, host);
                    }
                    Readiness::Pending(why) => {
                        pending.insert(name, why);
                    }
                    Readiness::Failed(why) => {
                        return Err(TargetError::Deploy {
                            function: name.clone(),
                            message: format!("Knative Service '{name}' is not Ready: {why}"),
                        });
                    }
                }
            }
            let Some((first, why)) = pending.iter().next() else { return Ok(()) };
            if tokio::time::Instant::now() >= deadline {
                return Err(TargetError::Deploy {
                    function: first.clone(),
                    message: format!(
                        "{} Knative Service(s) not Ready within target.ready_timeout ({}); '{first}': {why}",
                        pending.len(),
                        humantime::format_duration(self.config.ready_timeout)
                    ),
                });
            }
            tokio::time::sleep(self.poll_interval.min(deadline - tokio::time::Instant::now())).await;
        }
    }

    async fn deploy_all(&self, functions: &[FunctionDeployment]) -> Result<(), TargetError> {
        let api = self.api().await?;
        for function in functions {
            self.create(&api, function).await?;
        }
        let names: Vec<String> = functions.iter().map(|f| f.name.clone()).collect();
        self.wait_ready(&api, &names).await
    }

    async fn delete_deployed(&self) -> Result<(), TargetError> {
        let names = std::mem::take(&mut *self.deployed.lock().unwrap_or_else(|e| e.into_inner()));
        self.hosts.write().unwrap_or_else(|e| e.into_inner()).clear();
        if names.is_empty() {
            return Ok(());
        }
        let api = self.api().await?;
        let failed = delete_all(&api, &names, &self.config.namespace).await;
        if failed.is_empty() { Ok(()) } else { Err(TargetError::Teardown(failed.join("; "))) }
    }
}

/// A run id unique per process and second, usable as a label value.
fn default_run_id() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("r{secs}-{}", std::process::id())
}

impl Target for KnativeTarget {
    fn deploy<'a>(&'a self, functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        async move {
            match self.deploy_all(functions).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    // The run never starts, so nothing else would delete what was created.
                    if let Err(teardown) = self.delete_deployed().await {
                        tracing::warn!("after a failed deploy: {teardown}");
                    }
                    Err(error)
                }
            }
        }
        .boxed()
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        match self.host(function_name) {
            Some(host) => async move { self.http.invoke_with_host(function_name, &host, invocation).await }.boxed(),
            None => {
                let message = format!("function '{function_name}' has no Ready Knative Service (not deployed)");
                async move { TargetResponse::from_outcome(Outcome::ConnectionFailed(message)) }.boxed()
            }
        }
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        self.delete_deployed().boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, min: u32, max: u32) -> FunctionDeployment {
        FunctionDeployment { name: name.into(), min_scale: min, max_scale: max, ..FunctionDeployment::default() }
    }

    #[test]
    fn manifest_carries_the_dirigent_setup() {
        let mut config = KnativeConfig::new("127.0.0.1:8080", "docker.io/example/trace-function:1");
        config.initial_scale = 1;
        config.annotations.insert("autoscaling.knative.dev/target-burst-capacity".into(), "-1".into());
        let m = manifest(&function("f-abc", 2, 5), &config, "r1");
        let template = &m["spec"]["template"];
        let a = &template["metadata"]["annotations"];
        assert_eq!(m["apiVersion"], "serving.knative.dev/v1");
        assert_eq!(m["metadata"]["namespace"], "default");
        assert_eq!(m["metadata"]["labels"][RUN_LABEL], "r1");
        assert_eq!(template["spec"]["containerConcurrency"], 1);
        assert_eq!(template["spec"]["containers"][0]["image"], "docker.io/example/trace-function:1");
        assert_eq!(template["spec"]["containers"][0]["ports"][0]["name"], "http1");
        assert_eq!(a["autoscaling.knative.dev/target"], "1");
        assert_eq!(a["autoscaling.knative.dev/min-scale"], "2");
        assert_eq!(a["autoscaling.knative.dev/max-scale"], "5");
        assert_eq!(a["autoscaling.knative.dev/initial-scale"], "1");
        assert_eq!(a["autoscaling.knative.dev/target-burst-capacity"], "-1");
        let unbounded = manifest(&function("f-abc", 0, 0), &config, "r1");
        assert!(
            unbounded["spec"]["template"]["metadata"]["annotations"].get("autoscaling.knative.dev/max-scale").is_none()
        );
    }

    #[test]
    fn yaml_keys_parse_with_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.yaml");
        let yaml = "target:\n  kind: knative\n  gateway: 10.0.0.5:80\n  image: docker.io/x/trace:1\n  max_scale: 200\n  \
                    ready_timeout: 90s\n  annotations: { autoscaling.knative.dev/target-burst-capacity: \"-1\" }\n";
        std::fs::write(&path, yaml).unwrap();
        let config = crate::config::RunConfig::load(&path).unwrap();
        let crate::config::TargetConfig::Knative(k) = config.target else { panic!("not knative") };
        assert_eq!((k.gateway.as_str(), k.namespace.as_str(), k.max_scale), ("10.0.0.5:80", "default", 200));
        assert_eq!((k.ready_timeout, k.container_port, k.initial_scale), (Duration::from_secs(90), 8080, 0));
        assert_eq!(k.annotations["autoscaling.knative.dev/target-burst-capacity"], "-1");
        std::fs::write(&path, "target: { kind: knative, gateway: g:80, image: i, namespase: x }\n").unwrap();
        let err = crate::config::RunConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("namespase"), "{err}");
        std::fs::write(&path, "target: { kind: knative, gateway: g:80 }\n").unwrap();
        let err = crate::config::RunConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("image"), "{err}");
    }

    #[test]
    fn service_names_are_checked() {
        assert!(check_service_name("f-0123456789ab").is_ok());
        let long = "f".repeat(MAX_SERVICE_NAME + 1);
        let label = "is not a DNS-1035 label";
        let cases =
            [("", label), ("F-x", label), ("1f", label), ("f_x", label), ("f-", label), (&long, "is longer than")];
        for (bad, why) in cases {
            let err = check_service_name(bad).unwrap_err();
            // Quoted, so that the empty name is visibly named too.
            assert!(err.contains(&format!("'{bad}' {why}")), "{err}");
        }
    }

    #[test]
    fn readiness_follows_conditions_and_generation() {
        let object = |status: &str, observed: i64| {
            json!({
                "metadata": { "name": "f", "generation": 1 },
                "status": {
                    "observedGeneration": observed,
                    "url": "http://f.default.example.com",
                    "conditions": [{ "type": "Ready", "status": status, "reason": "RevisionFailed", "message": "m" }],
                },
            })
        };
        assert_eq!(readiness(&object("True", 1)), Readiness::Ready("f.default.example.com".into()));
        assert!(matches!(readiness(&object("True", 0)), Readiness::Pending(_)));
        assert!(matches!(readiness(&object("Unknown", 1)), Readiness::Pending(_)));
        assert_eq!(readiness(&object("False", 1)), Readiness::Failed("RevisionFailed: m".into()));
        assert!(matches!(readiness(&json!({ "metadata": {} })), Readiness::Pending(_)));
    }
}
