//! The bundled orchestrator (`dirigent`): functions registered through the control plane's JSON API,
//! invocations sent to the data planes with the function in the `Host` header (their `Server-Timing`
//! breakdown is recorded by the HTTP target), spread over every data plane and failing over on a refused
//! connection (see `proxies.rs`).

use std::time::Duration;

use bytes::Bytes;
use contracts::api::{self, DataPlaneList, FunctionSpec};
use futures_util::FutureExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::proxies::ProxyPool;
use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::schedule::Invocation;

/// Default of [`DirigentConfig::api_timeout`].
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`DirigentConfig::avoid_for`].
pub const DEFAULT_AVOID_FOR: Duration = Duration::from_secs(1);
/// Largest control-plane reply buffered, bytes (a list of thousands of data planes fits).
pub const API_BODY_LIMIT: usize = 4 << 20;

/// Where the orchestrator is and what to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirigentConfig {
    /// The control plane's HTTP API, `host:port`.
    pub api: String,
    /// The data planes' proxies known beforehand, `host:port` each; at deploy every data plane the control plane
    /// lists (`GET /v1/data-planes`) is added, and invocations are spread over all of them.
    pub proxies: Vec<String>,
    /// Image every function is registered with (for the process runtime: an executable path or a name
    /// found beside `dirigent`).
    pub image: String,
    /// Per-request timeout, over all the proxies one invocation tries.
    pub request_timeout: Option<Duration>,
    /// Timeout of each control-plane API call (registering, listing data planes, deleting).
    pub api_timeout: Duration,
    /// How long a proxy that refused a connection is passed over before it is tried first again.
    pub avoid_for: Duration,
}

impl DirigentConfig {
    /// The orchestrator with its API at `api` and data planes at `proxies`; default timeouts.
    pub fn new(api: impl Into<String>, proxies: Vec<String>, image: impl Into<String>) -> Self {
        DirigentConfig {
            api: api.into(),
            proxies,
            image: image.into(),
            request_timeout: None,
            api_timeout: DEFAULT_API_TIMEOUT,
            avoid_for: DEFAULT_AVOID_FOR,
        }
    }
}

/// Why a call to the control plane's API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// The request could not be built (a bad API address or path).
    #[error("cannot build the request to {uri}: {source}; check target.api")]
    Build {
        /// What was called.
        uri: String,
        /// Why.
        #[source]
        source: http::Error,
    },
    /// Sending failed (nothing listening, the connection broke).
    #[error("calling the control plane at {uri} failed; is it running at target.api?")]
    Send {
        /// What was called.
        uri: String,
        /// Why.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No complete answer in time.
    #[error("the control plane at {uri} did not answer within {after:?}; raise driver.api_timeout if it is slow")]
    Timeout {
        /// What was called.
        uri: String,
        /// The timeout.
        after: Duration,
    },
    /// The reply broke off or was larger than [`API_BODY_LIMIT`].
    #[error("reading the control plane's reply from {uri} failed (at most {limit} bytes are read)")]
    Body {
        /// What was called.
        uri: String,
        /// The limit.
        limit: usize,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A non-success status.
    #[error("the control plane at {uri} answered {status}: {body}")]
    Status {
        /// What was called.
        uri: String,
        /// Its status.
        status: StatusCode,
        /// An excerpt of its body.
        body: String,
    },
    /// A reply that is not the expected JSON.
    #[error("the control plane's reply from {uri} is not the expected JSON")]
    Json {
        /// What was called.
        uri: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The bundled orchestrator as a target.
pub struct DirigentTarget {
    config: DirigentConfig,
    proxies: ProxyPool,
    api: Client<HttpConnector, Full<Bytes>>,
    deployed: std::sync::Mutex<Vec<String>>,
}

impl DirigentTarget {
    /// A target for the orchestrator at `config`'s addresses; at least one proxy must be configured.
    pub fn new(config: DirigentConfig) -> Result<Self, TargetError> {
        if config.proxies.is_empty() {
            return Err(TargetError::Config("the dirigent target needs a data plane proxy in target.proxy".into()));
        }
        let proxies = ProxyPool::new(&config.proxies, config.request_timeout, config.avoid_for)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.api_timeout));
        let api = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { config, proxies, api, deployed: std::sync::Mutex::default() })
    }

    /// The proxies invocations are spread over: the configured ones, then those the control plane listed.
    pub fn proxies(&self) -> Vec<String> {
        self.proxies.addresses()
    }

    /// One API call, bounded in time and in the reply it buffers; the status and the body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), ApiCallError> {
        let uri = format!("http://{}{path}", self.config.api);
        let after = self.config.api_timeout;
        tokio::time::timeout(after, self.call_unbounded(method, &uri, body))
            .await
            .unwrap_or_else(|_| Err(ApiCallError::Timeout { uri: uri.clone(), after }))
    }

    async fn call_unbounded(
        &self,
        method: Method,
        uri: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), ApiCallError> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|source| ApiCallError::Build { uri: uri.into(), source })?;
        let response =
            self.api.request(request).await.map_err(|source| ApiCallError::Send { uri: uri.into(), source })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), API_BODY_LIMIT)
            .collect()
            .await
            .map_err(|source| ApiCallError::Body { uri: uri.into(), limit: API_BODY_LIMIT, source })?
            .to_bytes();
        Ok((status, body))
    }

    async fn register(&self, function: &FunctionDeployment) -> Result<(), TargetError> {
        let image = function.image.clone().unwrap_or_else(|| self.config.image.clone());
        let mut spec = FunctionSpec::new(function.name.clone(), image);
        spec.min_scale = function.min_scale;
        // 0 leaves the control plane's own bound.
        if function.max_scale > 0 {
            spec.max_scale = function.max_scale;
        }
        let deploy_error = |message: String| TargetError::Deploy { function: function.name.clone(), message };
        let body = serde_json::to_string(&spec).map_err(|e| deploy_error(e.to_string()))?;
        let (status, body) = self
            .call(Method::POST, api::FUNCTIONS_PATH, Some(body))
            .await
            .map_err(|e| deploy_error(contracts::error_chain(&e)))?;
        // A function left registered by an earlier run is reused, as its sandboxes are the platform's business.
        if status.is_success() || status == StatusCode::CONFLICT {
            self.deployed.lock().unwrap_or_else(|e| e.into_inner()).push(function.name.clone());
            return Ok(());
        }
        Err(deploy_error(format!("the control plane answered {status}: {}", super::http::body_excerpt(&body))))
    }

    /// The proxy addresses of the data planes the control plane lists.
    async fn data_planes(&self) -> Result<Vec<String>, ApiCallError> {
        let (status, body) = self.call(Method::GET, api::DATA_PLANES_PATH, None).await?;
        let uri = || format!("http://{}{}", self.config.api, api::DATA_PLANES_PATH);
        if !status.is_success() {
            return Err(ApiCallError::Status { uri: uri(), status, body: super::http::body_excerpt(&body) });
        }
        let list: DataPlaneList =
            serde_json::from_slice(&body).map_err(|source| ApiCallError::Json { uri: uri(), source })?;
        Ok(list.data_planes.into_iter().map(|d| d.proxy_address).filter(|a| !a.is_empty()).collect())
    }

    /// Adds every data plane the control plane lists to the proxies; without the list the configured proxies
    /// still serve, so a failure is only logged.
    async fn discover_data_planes(&self) {
        let addresses = match self.data_planes().await {
            Ok(addresses) => addresses,
            Err(error) => {
                let error = contracts::error_chain(&error);
                tracing::warn!(%error, "cannot list the data planes; sending to the configured proxies only");
                return;
            }
        };
        for address in addresses {
            match self.proxies.add(&address) {
                Ok(true) => tracing::info!(proxy = %address, "sending to the data plane the control plane listed"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "skipping a listed data plane"),
            }
        }
    }
}

impl Target for DirigentTarget {
    fn deploy<'a>(&'a self, functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        async move {
            for function in functions {
                self.register(function).await?;
            }
            self.discover_data_planes().await;
            Ok(())
        }
        .boxed()
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        self.proxies.invoke(function_name, invocation).boxed()
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        async move {
            let names = std::mem::take(&mut *self.deployed.lock().unwrap_or_else(|e| e.into_inner()));
            let mut failed = Vec::new();
            for name in names {
                match self.call(Method::DELETE, &api::function_path(&name), None).await {
                    Ok((status, _)) if status.is_success() || status == StatusCode::NOT_FOUND => {}
                    Ok((status, body)) => failed.push(format!("{name}: {status} {}", super::http::body_excerpt(&body))),
                    Err(error) => failed.push(format!("{name}: {}", contracts::error_chain(&error))),
                }
            }
            if failed.is_empty() { Ok(()) } else { Err(TargetError::Teardown(failed.join("; "))) }
        }
        .boxed()
    }
}
