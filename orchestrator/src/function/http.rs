//! The HTTP front end: `GET /health` and invocations on every other path and method.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, Uri, header};
use http_body_util::BodyExt;

use super::instance::{Completed, Instance};
use super::params::{Invocation, Workload};
use contracts::workload::{self, ErrorReply, FunctionReply};

/// The HTTP routes; every request that is not a health probe is an invocation.
pub(super) fn routes(instance: Arc<Instance>) -> Router {
    Router::new().route(workload::HEALTH_PATH, get(health).fallback(invoke)).fallback(invoke).with_state(instance)
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn invoke(State(instance): State<Arc<Instance>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    if is_grpc(&headers) {
        // A gRPC client calling another service must get a gRPC status, not a JSON body it cannot decode.
        return tonic::Status::unimplemented(format!("no gRPC method {}", uri.path())).into_http::<Body>();
    }
    if let Err(error) = drain(body).await {
        return error_reply(StatusCode::BAD_REQUEST, format!("cannot read the request body: {error}"));
    }
    let invocation = match Invocation::from_http(&headers, &uri) {
        Ok(invocation) => invocation,
        Err(error) => {
            tracing::debug!(%uri, %error, "rejected invocation");
            return error_reply(StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    match instance.invoke(invocation.clone()).await {
        Ok(completed) => Json(reply(&instance, invocation, completed)).into_response(),
        Err(error) => {
            tracing::warn!(%uri, %error, "invocation failed");
            error_reply(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
    }
}

/// Reads and discards the body (a loader may send a payload): an HTTP/1.1 connection whose request body was not
/// read cannot be reused, and the data plane pools its connections.
async fn drain(mut body: Body) -> Result<(), axum::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The JSON reply for a completed invocation (also the Lambda runtime's response).
pub(super) fn reply(instance: &Instance, invocation: Invocation, completed: Completed) -> FunctionReply {
    let status = match invocation.workload {
        Workload::Trace => workload::STATUS_OK,
        Workload::Empty => workload::STATUS_OK_EMPTY,
    };
    FunctionReply {
        status: status.to_owned(),
        function: instance.function_name(invocation.function),
        machine_name: instance.hostname().to_owned(),
        execution_time: u64::try_from(completed.outcome.elapsed.as_micros()).unwrap_or(u64::MAX),
        requested_cpu_ms: invocation.requested_cpu_ms,
        requested_memory_mib: invocation.requested_memory_mib,
        memory_usage_kb: (completed.outcome.memory_bytes / 1024) as u64,
        multiplier: invocation.multiplier,
        cold_start: completed.cold_start,
    }
}

fn error_reply(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorReply { error })).into_response()
}
