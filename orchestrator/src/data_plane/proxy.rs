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
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::endpoints::{AcquireError, ColdStart, FunctionEntry, FunctionTable, Grant, Lease};
use super::timing::server_timing;

/// Response body of the proxy: a sandbox's streamed body, or the proxy's own JSON.
pub type ProxyBody = Either<Full<Bytes>, LeasedBody<Incoming>>;

const SERVER_TIMING: HeaderName = HeaderName::from_static(contracts::server_timing::HEADER);
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
    http1: Client<HttpConnector, Incoming>,
    http2: Client<HttpConnector, Incoming>,
}

impl Proxy {
    /// A proxy over `table`: requests wait up to `queue_timeout` for a sandbox, then up to `upstream_timeout`
    /// for its response head.
    pub fn new(
        table: Arc<FunctionTable>,
        cold_starts: Arc<dyn ColdStartRequester>,
        queue_timeout: Duration,
        upstream_timeout: Duration,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new()).build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new()).http2_only(true).build(connector);
        Self { table, cold_starts, queue_timeout, upstream_timeout, http1, http2 }
    }

    /// Serves one request; never fails (errors become JSON responses).
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let arrived = Instant::now();
        let Admitted { function, path, grant } = match self.admit(&request, arrived).await {
            Ok(admitted) => admitted,
            Err(answer) => return Ok(answer),
        };
        let scheduling = arrived.elapsed();
        let cold = grant.cold_start != ColdStart::None;
        // Counted once the sandbox answered: a request that never reached one is a failure, not an invocation.
        Ok(match self.forward(request, path, grant, arrived).await {
            Ok(response) => {
                function.counters.record_invocation(scheduling, cold);
                response
            }
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

    async fn forward(
        &self,
        request: Request<Incoming>,
        path: Option<String>,
        grant: Grant,
        arrived: Instant,
    ) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
        let Grant { lease, queued, cold_start } = grant;
        let address = lease.endpoint().address;
        let (mut parts, body) = request.into_parts();
        let path_and_query = match path {
            Some(path) => http::uri::PathAndQuery::try_from(path).map_err(http::Error::from),
            None => {
                Ok(parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")))
            }
        };
        parts.uri = path_and_query
            .and_then(|pq| {
                let authority = lease.endpoint().authority.clone();
                Uri::builder().scheme("http").authority(authority).path_and_query(pq).build()
            })
            .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("cannot forward the request path: {e}")))?;
        for name in HOP_BY_HOP {
            parts.headers.remove(name);
        }
        // HTTP/2 in (gRPC among it) goes out as HTTP/2, so trailers survive; everything else as HTTP/1.1.
        let client = if parts.version == Version::HTTP_2 { &self.http2 } else { &self.http1 };
        if parts.version != Version::HTTP_2 {
            parts.version = Version::HTTP_11;
        }
        let upstream_start = Instant::now();
        let sandbox = &lease.endpoint().sandbox_id;
        let response =
            match tokio::time::timeout(self.upstream_timeout, client.request(Request::from_parts(parts, body))).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    return Err(error(StatusCode::BAD_GATEWAY, &format!("sandbox {sandbox} at {address} failed: {e}")));
                }
                Err(_) => {
                    let message =
                        format!("sandbox {sandbox} at {address} did not answer within {:?}", self.upstream_timeout);
                    return Err(error(StatusCode::GATEWAY_TIMEOUT, &message));
                }
            };
        let upstream = upstream_start.elapsed();
        let creation = cold_start.is_cold().then(|| lease.endpoint().creation);
        let (mut parts, body) = response.into_parts();
        let timing = server_timing(queued, cold_start, creation, arrived.elapsed().saturating_sub(queued + upstream));
        if let Ok(value) = HeaderValue::try_from(timing.header_value()) {
            parts.headers.append(SERVER_TIMING, value);
        }
        Ok(Response::from_parts(parts, Either::Right(LeasedBody { inner: body, lease: Some(lease) })))
    }
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
