//! The user-facing HTTP API: Dirigent's `/registerService`, JSON `/v1/functions`, `/health`, `/metrics`.
//! Its bodies are the `contracts::api` types, the ones its clients read. On a follower, requests go on to the
//! leader (`forward`).

pub mod forward;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use contracts::api::{
    self as wire, DataPlaneList, Deleted, ErrorBody, FunctionList, FunctionSpec, FunctionSpecError, FunctionView,
    Health, ProxyAddresses, WorkerList,
};

use super::core::{Core, RegistryError};
use super::store::StoreError;

/// An API error: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message })).into_response()
    }
}

impl From<FunctionSpecError> for ApiError {
    fn from(err: FunctionSpecError) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: err.to_string() }
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        let status = match err {
            RegistryError::Duplicate(_) => StatusCode::CONFLICT,
            RegistryError::Unknown(_) => StatusCode::NOT_FOUND,
            // Became a follower after the request was let through as the leader's (see `forward`): try again.
            RegistryError::Store(StoreError::NotLeader { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message: err.to_string() }
    }
}

/// The API's routes.
pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route(wire::REGISTER_SERVICE_PATH, axum::routing::post(register_service))
        .route(wire::FUNCTIONS_PATH, get(list_functions).post(create_function))
        .route(&wire::function_path("{name}"), get(get_function).delete(delete_function))
        .route(wire::WORKERS_PATH, get(list_workers))
        .route(wire::DATA_PLANES_PATH, get(list_data_planes))
        .route(wire::HEALTH_PATH, get(health))
        .route(wire::METRICS_PATH, get(metrics))
        .fallback(|| async { ApiError { status: StatusCode::NOT_FOUND, message: "no such API path".into() } })
        .with_state(Arc::clone(&core))
        .layer(axum::middleware::from_fn_with_state(forward::Forwarder::new(core), forward::to_leader))
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
    Ok(ProxyAddresses(core.proxy_addresses()).to_string())
}

async fn create_function(AxumState(core): Api, body: Bytes) -> Result<(StatusCode, Json<FunctionView>), ApiError> {
    let spec = FunctionSpec::from_json(&body)?;
    let name = spec.name.clone();
    let registering = Arc::clone(&core);
    detached(async move { registering.register_function(spec).await }).await?;
    let view = core.function(&name).ok_or(RegistryError::Unknown(name))?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list_functions(AxumState(core): Api) -> Json<FunctionList> {
    Json(FunctionList { functions: core.functions() })
}

async fn get_function(AxumState(core): Api, Path(name): Path<String>) -> Result<Json<FunctionView>, ApiError> {
    core.function(&name).map(Json).ok_or_else(|| RegistryError::Unknown(name).into())
}

async fn delete_function(AxumState(core): Api, Path(name): Path<String>) -> Result<Json<Deleted>, ApiError> {
    let deleting = (Arc::clone(&core), name.clone());
    detached(async move { deleting.0.delete_function(&deleting.1).await }).await?;
    Ok(Json(Deleted { deleted: name }))
}

async fn list_workers(AxumState(core): Api) -> Json<WorkerList> {
    Json(WorkerList { workers: core.workers() })
}

async fn list_data_planes(AxumState(core): Api) -> Json<DataPlaneList> {
    Json(DataPlaneList { data_planes: core.data_planes() })
}

async fn health(AxumState(core): Api) -> Json<Health> {
    Json(core.health())
}

async fn metrics(AxumState(core): Api) -> impl IntoResponse {
    let text = super::metrics::render(&core.overview());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_answers_503_naming_the_leader() {
        let refused = RegistryError::Store(StoreError::NotLeader { leader: Some((2, "10.0.0.2:9090".into())) });
        let answer = ApiError::from(refused);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.message.contains("10.0.0.2:9090"), "{}", answer.message);
        let broken = RegistryError::Store(StoreError::Replication { replica: 1, action: "x", reason: "y".into() });
        assert_eq!(ApiError::from(broken).status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
