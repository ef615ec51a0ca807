//! The user-facing HTTP API: Dirigent's `/registerService`, JSON `/v1/functions`, `/health`, `/metrics`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::core::{Core, RegistryError};
use super::function::{FunctionSpec, SpecError};
use super::state::{FunctionCounters, FunctionRecord, SandboxRecord};

/// An API error: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<SpecError> for ApiError {
    fn from(err: SpecError) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: err.to_string() }
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        let status = match err {
            RegistryError::Duplicate(_) => StatusCode::CONFLICT,
            RegistryError::Unknown(_) => StatusCode::NOT_FOUND,
            RegistryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message: err.to_string() }
    }
}

/// The API's routes.
pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/registerService", axum::routing::post(register_service))
        .route("/v1/functions", get(list_functions).post(create_function))
        .route("/v1/functions/{name}", get(get_function).delete(delete_function))
        .route("/v1/workers", get(list_workers))
        .route("/v1/data-planes", get(list_data_planes))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError { status: StatusCode::NOT_FOUND, message: "no such API path".into() } })
        .with_state(core)
}

type Api = AxumState<Arc<Core>>;

/// Runs a registry change to its end even if the HTTP client disconnects (dropping the handler would
/// otherwise stop a deletion between forgetting the function and killing its sandboxes).
async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, RegistryError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(change).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(err) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("registry change failed: {err}"),
        }),
    }
}

/// Dirigent-compatible registration; the reply lists the data planes' proxy addresses, `;`-separated.
async fn register_service(AxumState(core): Api, body: Bytes) -> Result<String, ApiError> {
    let spec = FunctionSpec::from_form(&body)?;
    let registering = Arc::clone(&core);
    detached(async move { registering.register_function(spec).await }).await?;
    Ok(core.proxy_addresses().join(";"))
}

async fn create_function(AxumState(core): Api, body: Bytes) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let spec = FunctionSpec::from_json(&body)?;
    let name = spec.name.clone();
    let registering = Arc::clone(&core);
    detached(async move { registering.register_function(spec).await }).await?;
    let view = function_view(&core, &name).ok_or(RegistryError::Unknown(name))?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_functions(AxumState(core): Api) -> Json<serde_json::Value> {
    let state = core.state();
    Json(json!({ "functions": state.functions.values().map(view).collect::<Vec<_>>() }))
}

async fn get_function(AxumState(core): Api, Path(name): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    function_view(&core, &name).map(Json).ok_or_else(|| RegistryError::Unknown(name).into())
}

async fn delete_function(AxumState(core): Api, Path(name): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let deleting = (Arc::clone(&core), name.clone());
    detached(async move { deleting.0.delete_function(&deleting.1).await }).await?;
    Ok(Json(json!({ "deleted": name })))
}

async fn list_workers(AxumState(core): Api) -> Json<serde_json::Value> {
    let state = core.state();
    let workers: Vec<_> = state
        .workers
        .iter()
        .map(|(name, w)| {
            json!({
                "name": name, "address": w.address, "sandboxes": w.load.sandboxes,
                "cpu_capacity_millis": w.load.cpu_capacity_millis, "cpu_used_millis": w.load.cpu_used_millis,
                "memory_capacity_mib": w.load.memory_capacity_mib, "memory_used_mib": w.load.memory_used_mib,
            })
        })
        .collect();
    Json(json!({ "workers": workers }))
}

async fn list_data_planes(AxumState(core): Api) -> Json<serde_json::Value> {
    let state = core.state();
    let data_planes: Vec<_> = state
        .data_planes
        .iter()
        .map(|(name, d)| json!({ "name": name, "proxy_address": d.proxy_address, "grpc_address": d.grpc_address }))
        .collect();
    Json(json!({ "data_planes": data_planes }))
}

async fn health(AxumState(core): Api) -> Json<serde_json::Value> {
    let state = core.state();
    Json(json!({
        "status": "ok",
        "functions": state.functions.len(),
        "workers": state.workers.len(),
        "data_planes": state.data_planes.len(),
    }))
}

async fn metrics(AxumState(core): Api) -> impl IntoResponse {
    let text = super::metrics::render(&core.state());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// A function as the API shows it: its spec and its live status.
#[derive(Serialize)]
struct FunctionView<'a> {
    #[serde(flatten)]
    spec: &'a FunctionSpec,
    status: StatusView<'a>,
}

#[derive(Serialize)]
struct StatusView<'a> {
    ready: u32,
    creating: u32,
    desired: Option<u32>,
    panicking: bool,
    concurrency: f64,
    queued: u64,
    sandboxes: Vec<&'a SandboxRecord>,
    counters: &'a FunctionCounters,
    last_error: Option<&'a str>,
}

fn view(record: &FunctionRecord) -> serde_json::Value {
    let status = StatusView {
        ready: record.ready(),
        creating: record.creating,
        desired: record.last_decision.map(|d| d.desired),
        panicking: record.last_decision.is_some_and(|d| d.panicking),
        concurrency: record.concurrency(),
        queued: record.queued(),
        sandboxes: record.sandboxes.values().collect(),
        counters: &record.counters,
        last_error: record.last_error.as_deref(),
    };
    serde_json::to_value(FunctionView { spec: &record.spec, status }).unwrap_or_default()
}

fn function_view(core: &Core, name: &str) -> Option<serde_json::Value> {
    core.state().functions.get(name).map(view)
}
