//! The invocation proxy: HTTP/1.1 and h2c on one port, the function chosen by `Host` or `/function/{name}`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::endpoints::{AcquireError, ColdStart, EndpointSlot, FunctionEntry, FunctionTable, Grant, Lease};
use super::timing::server_timing;
use super::upstream::{Protocol, SendError, Upstreams};

/// Response body of the proxy: a sandbox's streamed body, or the proxy's own JSON.
pub type ProxyBody = Either<Full<Bytes>, LeasedBody<Incoming>>;

const SERVER_TIMING: HeaderName = HeaderName::from_static(contracts::server_timing::HEADER);
/// The least time a connect to a sandbox gets, even when the request has used up its `queue_timeout`: a
/// sandbox on a reachable host accepts within a millisecond or refuses, so this only bounds a silent host.
const CONNECT_FLOOR: Duration = Duration::from_secs(1);

const HOP_BY_HOP: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

/// A response body that holds the sandbox lease until the last byte is through, so that a sandbox with
/// concurrency 1 really serves one request at a time.
#[derive(Debug)]
pub struct LeasedBody<B> {
    inner: B,
    lease: Option<Lease>,
}

impl<B: Body + Unpin> Body for LeasedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.lease = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Asks the control plane for a sandbox of a function at zero.
pub trait ColdStartRequester: Send + Sync + 'static {
    /// Requests a cold start of `function`; must not block.
    fn request(&self, function: &str);
}

/// The proxy's request handler.
pub struct Proxy {
    table: Arc<FunctionTable>,
    cold_starts: Arc<dyn ColdStartRequester>,
    queue_timeout: Duration,
    upstream_timeout: Duration,
    upstreams: Arc<Upstreams>,
}

impl Proxy {
    /// A proxy over `table`: requests wait up to `queue_timeout` for a sandbox (moving on from any that turns
    /// out unreachable), then up to `upstream_timeout` for its response head.
    pub fn new(
        table: Arc<FunctionTable>,
        cold_starts: Arc<dyn ColdStartRequester>,
        queue_timeout: Duration,
        upstream_timeout: Duration,
    ) -> Self {
        Self { table, cold_starts, queue_timeout, upstream_timeout, upstreams: Arc::default() }
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let arrived = Instant::now();
        let Admitted { function, path, grant } = match self.admit(&request, arrived).await {
            Ok(admitted) => admitted,
            Err(answer) => return Ok(answer),
        };
        // Counted once the sandbox answered (in `forward`): a request that never reached one is a failure,
        // not an invocation, and a request failed over to another sandbox counts once.
        Ok(match self.forward(&function, request, path, grant, arrived).await {
            Ok(response) => response,
            Err(response) => {
                function.counters.record_failure();
                response
            }
        })
    }

    /// Finds the request's function and a sandbox for it, queueing when none is free (the request that finds
    /// the function at zero asks for a cold start); otherwise the answer to send instead, such as a 404 for
    /// an unknown function or a 503 when no sandbox came.
    pub(super) async fn admit<B>(
        &self,
        request: &Request<B>,
        arrived: Instant,
    ) -> Result<Admitted, Response<ProxyBody>> {
        let Some(target) = route(request) else {
            if request.uri().path() == "/health" {
                return Err(json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned()));
            }
            return Err(error(
                StatusCode::NOT_FOUND,
                "no function named in the Host header or a /function/{name} path",
            ));
        };
        // Knative-style hosts (`name.namespace.domain`) name the function by their first label.
        let label = target.function.split_once('.').map_or(target.function.as_str(), |(label, _)| label);
        let names = [target.function.as_str(), label];
        let function = match self.table.lookup(&names, self.queue_timeout).await {
            Ok(function) => function,
            Err(err) => return Err(error(acquire_status(&err), &err.to_string())),
        };
        let remaining = self.queue_timeout.saturating_sub(arrived.elapsed());
        match function.acquire(remaining, || self.cold_starts.request(function.name())).await {
            Ok(grant) => Ok(Admitted { function, path: target.path, grant }),
            Err(err) => {
                function.counters.record_failure();
                Err(error(acquire_status(&err), &err.to_string()))
            }
        }
    }

    /// Sends the request to its sandbox, and on to another one for as long as each one it tries is provably
    /// unreachable (the request never left); counts the invocation once it got an answer.
    async fn forward(
        &self,
        function: &Arc<FunctionEntry>,
        request: Request<Incoming>,
        path: Option<String>,
        grant: Grant,
        arrived: Instant,
    ) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
        let (mut parts, body) = request.into_parts();
        let path_and_query = match path {
            Some(path) => http::uri::PathAndQuery::try_from(path)
                .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("cannot forward the request path: {e}")))?,
            None => parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        };
        for name in HOP_BY_HOP {
            parts.headers.remove(name);
        }
        // HTTP/2 in (gRPC among it) goes out as HTTP/2, so trailers survive; everything else as HTTP/1.1.
        let protocol = if parts.version == Version::HTTP_2 { Protocol::Http2 } else { Protocol::Http1 };
        if protocol == Protocol::Http1 {
            parts.version = Version::HTTP_11;
        }
        // A client's Host goes through (it may name the function); without one, each attempt names its sandbox.
        let set_host = !parts.headers.contains_key(header::HOST);
        let mut request = Request::from_parts(parts, body);
        let Grant { mut lease, mut queued, mut cold_start } = grant;
        loop {
            address_to(&mut request, protocol, lease.endpoint(), &path_and_query, set_host)
                .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("cannot forward the request path: {e}")))?;
            let sent = Instant::now();
            let address = lease.endpoint().address;
            let connect_within = self.queue_timeout.saturating_sub(arrived.elapsed()).max(CONNECT_FLOOR);
            let attempt = self.upstreams.send(protocol, address, request, connect_within);
            let cause = match tokio::time::timeout(self.upstream_timeout, attempt).await {
                Ok(Ok(response)) => {
                    function.counters.record_invocation(sent.duration_since(arrived), cold_start.is_cold());
                    return Ok(self.answer(response, lease, queued, cold_start, arrived, sent));
                }
                Ok(Err(SendError::NotSent { request: unsent, cause })) => {
                    request = *unsent;
                    cause
                }
                Ok(Err(SendError::Failed(cause))) => {
                    let message = format!("sandbox {} at {address} failed: {cause}", lease.endpoint().sandbox_id);
                    return Err(error(StatusCode::BAD_GATEWAY, &message));
                }
                Err(_) => {
                    let (sandbox, waited) = (&lease.endpoint().sandbox_id, self.upstream_timeout);
                    let message = format!("sandbox {sandbox} at {address} did not answer within {waited:?}");
                    return Err(error(StatusCode::GATEWAY_TIMEOUT, &message));
                }
            };
            // Only here, on the rare path: the lease goes to `fail_over`, the message needs the id after.
            let sandbox = lease.endpoint().sandbox_id.clone();
            tracing::debug!(%sandbox, %address, %cause, "request not sent: failing over to another sandbox");
            function.counters.record_failover();
            let remaining = self.queue_timeout.saturating_sub(arrived.elapsed());
            let next = lease.fail_over(remaining, || self.cold_starts.request(function.name())).await;
            let next = next.map_err(|err| {
                let message = format!("sandbox {sandbox} at {address} is unreachable ({cause}), and {err}");
                error(acquire_status(&err), &message)
            })?;
            lease = next.lease;
            queued += next.queued;
            if !cold_start.is_cold() {
                cold_start = next.cold_start;
            }
        }
    }

    /// The sandbox's response with the proxy's `Server-Timing`, its body holding the lease to its end.
    fn answer(
        &self,
        response: Response<Incoming>,
        lease: Lease,
        queued: Duration,
        cold_start: ColdStart,
        arrived: Instant,
        sent: Instant,
    ) -> Response<ProxyBody> {
        let upstream = sent.elapsed();
        let creation = cold_start.is_cold().then(|| (lease.endpoint().creation, lease.endpoint().steps.as_slice()));
        let (mut parts, body) = response.into_parts();
        let timing = server_timing(queued, cold_start, creation, arrived.elapsed().saturating_sub(queued + upstream));
        if let Ok(value) = HeaderValue::try_from(timing.header_value()) {
            parts.headers.append(SERVER_TIMING, value);
        }
        Response::from_parts(parts, Either::Right(LeasedBody { inner: body, lease: Some(lease) }))
    }
}

/// Points `request` at `endpoint`: origin-form for HTTP/1.1 (with `Host` when the proxy sets it), absolute
/// for HTTP/2, whose `:authority` hyper takes from the URI.
fn address_to<B>(
    request: &mut Request<B>,
    protocol: Protocol,
    endpoint: &EndpointSlot,
    path_and_query: &http::uri::PathAndQuery,
    set_host: bool,
) -> Result<(), http::Error> {
    let uri = match protocol {
        Protocol::Http1 => Uri::builder().path_and_query(path_and_query.clone()).build(),
        Protocol::Http2 => Uri::builder()
            .scheme("http")
            .authority(endpoint.authority.clone())
            .path_and_query(path_and_query.clone())
            .build(),
    };
    *request.uri_mut() = uri?;
    if set_host
        && protocol == Protocol::Http1
        && let Ok(host) = HeaderValue::try_from(endpoint.authority.as_str())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    Ok(())
}

/// A request that got a sandbox.
pub(super) struct Admitted {
    /// Its function.
    pub function: Arc<FunctionEntry>,
    /// The path to forward when it came as `/function/{name}/...`.
    pub path: Option<String>,
    /// The sandbox, and how the request came by it.
    pub grant: Grant,
}

/// Which function a request is for, and the path to forward when it came as `/function/{name}/...`.
struct Target {
    function: String,
    path: Option<String>,
}

fn route<B>(request: &Request<B>) -> Option<Target> {
    if let Some(rest) = request.uri().path().strip_prefix("/function/") {
        let (name, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
        if !name.is_empty() {
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            return Some(Target { function: name.to_owned(), path: Some(format!("/{tail}{query}")) });
        }
    }
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| request.uri().host())?;
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let is_address = name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.starts_with('[');
    (!is_address && !name.is_empty()).then(|| Target { function: name.to_owned(), path: None })
}

fn acquire_status(err: &AcquireError) -> StatusCode {
    match err {
        AcquireError::UnknownFunction(_) | AcquireError::Deleted(_) => StatusCode::NOT_FOUND,
        AcquireError::Timeout { .. } | AcquireError::CreationFailed { .. } | AcquireError::NotReceived { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod socket_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str, host: Option<&str>) -> Option<(String, Option<String>)> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        route(&builder.body(()).unwrap()).map(|t| (t.function, t.path))
    }

    #[test]
    fn routes_by_host_or_path() {
        assert_eq!(target("/", Some("hello:8080")), Some(("hello".into(), None)));
        assert_eq!(target("/x?y=1", Some("hello")), Some(("hello".into(), None)));
        assert_eq!(target("/function/f", Some("127.0.0.1:8080")), Some(("f".into(), Some("/".into()))));
        assert_eq!(target("/function/f/a/b?q=1", None), Some(("f".into(), Some("/a/b?q=1".into()))));
        assert_eq!(target("/", Some("127.0.0.1:8080")), None);
        assert_eq!(target("/", Some("localhost")), None);
        assert_eq!(target("/", Some("[::1]:8080")), None);
        assert_eq!(target("/function/", None), None);
    }
}
