//! A follower's user API: every request but `/health` and `/metrics` goes on to the leader's API, so a client may
//! use any replica. Raft tells a follower only the leader's gRPC address; the leader's API address is asked for
//! once over gRPC (`DescribeApi`) and kept until forwarding there fails. While no leader is elected, or when the
//! leader cannot be reached, the answer is 503 and the client tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::transport::Endpoint;

use super::ApiError;
use crate::control_plane::Core;
use crate::control_plane::store::Leadership;
use crate::proto::dirigent::Ack;
use crate::proto::dirigent::control_plane_client::ControlPlaneClient;

/// Set on a forwarded request: a replica that gets one while it does not lead answers 503 instead of forwarding
/// it again (two replicas that each think the other leads would pass it back and forth).
pub const FORWARDED_HEADER: &str = "dirigent-forwarded";

/// The largest request body forwarded (axum's own default limit for a body read whole).
const BODY_LIMIT: usize = 2 << 20;

/// Bounds asking the leader for its API address, and connecting to that API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds a forwarded request until the leader's answer starts: a registration waits for its Raft commit, far
/// less than this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Served by every replica, leader or not: what `/health` and `/metrics` say is this replica's own.
const LOCAL_PATHS: [&str; 2] = [contracts::api::HEALTH_PATH, contracts::api::METRICS_PATH];

/// Forwards a follower's user API requests to the leader's API.
pub struct Forwarder {
    core: Arc<Core>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The leader's API address by the leader's gRPC address.
    apis: Mutex<HashMap<String, String>>,
}

impl Forwarder {
    /// Forwarding for the control plane `core`.
    pub fn new(core: Arc<Core>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Arc::new(Forwarder { core, client, apis: Mutex::default() })
    }

    /// The API address of the leader at gRPC address `leader`, asked for once.
    async fn leader_api(&self, leader: &str) -> Result<String, ApiError> {
        if let Some(api) = self.apis.lock().unwrap_or_else(|e| e.into_inner()).get(leader) {
            return Ok(api.clone());
        }
        let unreachable = |why: String| unavailable(format!("cannot ask the leader at {leader} for its API: {why}"));
        let endpoint = Endpoint::from_shared(format!("http://{leader}")).map_err(|e| unreachable(e.to_string()))?;
        let channel = endpoint.connect_timeout(CONNECT_TIMEOUT).timeout(CONNECT_TIMEOUT).connect_lazy();
        let described = ControlPlaneClient::new(channel).describe_api(Ack {}).await;
        let api = described.map_err(|status| unreachable(status.message().to_owned()))?.into_inner().http;
        self.apis.lock().unwrap_or_else(|e| e.into_inner()).insert(leader.to_owned(), api.clone());
        Ok(api)
    }

    /// Sends `request` to the API of the leader at gRPC address `leader` and answers what it answers.
    async fn forward(&self, leader: &str, request: Request) -> Result<Response, ApiError> {
        let api = self.leader_api(leader).await?;
        let (mut parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body could not be read whole (at most {BODY_LIMIT} bytes): {e}"),
        })?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(format!("http://{api}{path}")).map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the leader's API address '{api}' makes no URI: {e}"),
        })?;
        let host = HeaderValue::try_from(api.as_str()).ok();
        parts.headers.remove(header::HOST);
        parts.headers.extend(host.map(|host| (header::HOST, host)));
        parts.headers.insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
        let sent = tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(Request::from_parts(parts, body.into())));
        match sent.await {
            Ok(Ok(answer)) => Ok(answer.map(Body::new)),
            Ok(Err(error)) => {
                // Perhaps the leader moved to new ports after a restart: ask again next time.
                self.apis.lock().unwrap_or_else(|e| e.into_inner()).remove(leader);
                Err(unavailable(format!("forwarding to the leader's API at {api} failed: {error}")))
            }
            Err(_) => Err(ApiError {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!("the leader's API at {api} did not answer within {ANSWER_TIMEOUT:?}"),
            }),
        }
    }
}

/// 503 with `message`: the client may try again (the leader is being elected, or is out of reach for now).
fn unavailable(message: String) -> ApiError {
    ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message }
}

/// The API's middleware: the leader (or the only control plane) serves; a follower forwards to the leader.
pub async fn to_leader(State(forwarder): State<Arc<Forwarder>>, request: Request, next: Next) -> Response {
    if LOCAL_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match forwarder.core.leadership() {
        Leadership::This if forwarder.core.leads() => next.run(request).await,
        // Elected but not yet confirmed by the others, or not yet done rebuilding: as good as an election.
        Leadership::This | Leadership::Unknown => {
            unavailable("no control-plane leader is elected yet; try again in a second".into()).into_response()
        }
        Leadership::Other(leader) if request.headers().contains_key(FORWARDED_HEADER) => unavailable(format!(
            "forwarded here as to the leader, but this replica follows {leader}; try again in a second"
        ))
        .into_response(),
        Leadership::Other(leader) => {
            forwarder.forward(&leader, request).await.unwrap_or_else(IntoResponse::into_response)
        }
    }
}
