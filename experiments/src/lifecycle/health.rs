//! The health check: the platform is up once every worker and data plane has registered with the control plane,
//! which its HTTP API tells ([`ControlPlaneApi`]; tests answer with a fake).

use std::fmt;
use std::time::{Duration, Instant};

use contracts::api::{DataPlaneList, Health, WorkerList};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

/// How often the control plane is asked whether every component registered.
const HEALTH_POLL: Duration = Duration::from_millis(50);

/// Why the platform was not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// "{url}", with the cause.
    #[error("{url}")]
    Request {
        /// What was asked.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// "the cluster was not healthy within {timeout:?}: {last}".
    #[error("the cluster was not healthy within {timeout:?}: {last}")]
    Unhealthy {
        /// The limit.
        timeout: Duration,
        /// The last answer or error from the control plane.
        last: String,
    },
}

/// Who is registered with a control plane.
pub trait ControlPlane: Send + Sync + fmt::Debug {
    /// `(workers, data planes)` registered with the control plane whose API is at `api` (`address:port`).
    fn registered<'a>(&'a self, api: &'a str) -> BoxFuture<'a, Result<(usize, usize), HealthError>>;
    /// What the control plane at `api` says it is: `leader` (also the only one), `follower` or `electing`.
    fn role<'a>(&'a self, api: &'a str) -> BoxFuture<'a, Result<String, HealthError>>;
}

/// The control plane's HTTP API (`GET /v1/workers`, `GET /v1/data-planes`).
#[derive(Debug, Clone)]
pub struct ControlPlaneApi {
    client: reqwest::Client,
}

impl Default for ControlPlaneApi {
    fn default() -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_default();
        ControlPlaneApi { client }
    }
}

impl ControlPlaneApi {
    /// The JSON body at `http://{api}{path}`.
    async fn get<T: DeserializeOwned>(&self, api: &str, path: &str) -> Result<T, HealthError> {
        let url = format!("http://{api}{path}");
        let request = |source| HealthError::Request { url: url.clone(), source };
        let response = self.client.get(&url).send().await.and_then(|r| r.error_for_status()).map_err(request)?;
        response.json().await.map_err(request)
    }
}

impl ControlPlane for ControlPlaneApi {
    fn registered<'a>(&'a self, api: &'a str) -> BoxFuture<'a, Result<(usize, usize), HealthError>> {
        Box::pin(async move {
            Ok((
                self.get::<WorkerList>(api, contracts::api::WORKERS_PATH).await?.workers.len(),
                self.get::<DataPlaneList>(api, contracts::api::DATA_PLANES_PATH).await?.data_planes.len(),
            ))
        })
    }

    fn role<'a>(&'a self, api: &'a str) -> BoxFuture<'a, Result<String, HealthError>> {
        Box::pin(async move { Ok(self.get::<Health>(api, contracts::api::HEALTH_PATH).await?.role) })
    }
}

/// Asks `control_plane` at `api` until `workers` workers and `data_planes` data planes have registered.
pub async fn wait_healthy(
    control_plane: &dyn ControlPlane,
    api: &str,
    (workers, data_planes): (usize, usize),
    timeout: Duration,
) -> Result<(), HealthError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match control_plane.registered(api).await {
            Ok((w, d)) if w >= workers && d >= data_planes => return Ok(()),
            Ok((w, d)) => format!("{w} of {workers} workers and {d} of {data_planes} data planes registered"),
            Err(e) => crate::error_chain(&e),
        };
        if Instant::now() >= deadline {
            return Err(HealthError::Unhealthy { timeout, last });
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}
