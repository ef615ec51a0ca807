//! The bundled orchestrator (`dirigent`): functions registered through the control plane's JSON API,
//! invocations sent to the data plane with the function in the `Host` header (its `Server-Timing`
//! breakdown is recorded by the HTTP target).

use std::time::Duration;

use bytes::Bytes;
use contracts::api::{self, FunctionSpec};
use futures_util::FutureExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::http::{HttpTarget, HttpTargetConfig};
use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::schedule::Invocation;

/// Where the orchestrator is and what to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirigentConfig {
    /// The control plane's HTTP API, `host:port`.
    pub api: String,
    /// The data plane's proxy, `host:port`.
    pub proxy: String,
    /// Image every function is registered with (for the process runtime: an executable path or a name
    /// found beside `dirigent`).
    pub image: String,
    /// Per-request timeout.
    pub request_timeout: Option<Duration>,
}

/// The bundled orchestrator as a target.
pub struct DirigentTarget {
    config: DirigentConfig,
    http: HttpTarget,
    api: Client<HttpConnector, Full<Bytes>>,
    deployed: std::sync::Mutex<Vec<String>>,
}

impl DirigentTarget {
    /// A target for the orchestrator at `config`'s addresses.
    pub fn new(config: DirigentConfig) -> Result<Self, TargetError> {
        let mut http = HttpTargetConfig::new(format!("http://{}/", config.proxy));
        http.host_template = Some("{function}".into());
        http.request_timeout = config.request_timeout;
        let http = HttpTarget::new(http)?;
        let api = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Self { config, http, api, deployed: std::sync::Mutex::default() })
    }

    async fn call(&self, method: Method, path: &str, body: Option<String>) -> Result<(StatusCode, String), String> {
        let uri = format!("http://{}{path}", self.config.api);
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{uri}: {e}"))?;
        let response = self.api.request(request).await.map_err(|e| format!("{uri}: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("{uri}: {e}"))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
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
        let (status, body) = self.call(Method::POST, api::FUNCTIONS_PATH, Some(body)).await.map_err(deploy_error)?;
        // A function left registered by an earlier run is reused, as its sandboxes are the platform's business.
        if status.is_success() || status == StatusCode::CONFLICT {
            self.deployed.lock().unwrap_or_else(|e| e.into_inner()).push(function.name.clone());
            return Ok(());
        }
        Err(deploy_error(format!("the control plane answered {status}: {body}")))
    }
}

impl Target for DirigentTarget {
    fn deploy<'a>(&'a self, functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        async move {
            for function in functions {
                self.register(function).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        self.http.invoke(function_name, invocation)
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        async move {
            let names = std::mem::take(&mut *self.deployed.lock().unwrap_or_else(|e| e.into_inner()));
            let mut failed = Vec::new();
            for name in names {
                match self.call(Method::DELETE, &api::function_path(&name), None).await {
                    Ok((status, _)) if status.is_success() || status == StatusCode::NOT_FOUND => {}
                    Ok((status, body)) => failed.push(format!("{name}: {status} {body}")),
                    Err(message) => failed.push(format!("{name}: {message}")),
                }
            }
            if failed.is_empty() { Ok(()) } else { Err(TargetError::Teardown(failed.join("; "))) }
        }
        .boxed()
    }
}
