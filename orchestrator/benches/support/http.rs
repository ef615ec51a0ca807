//! The benchmark's HTTP client: one pooled keep-alive HTTP/1.1 connection per client task, the same for
//! the data-plane path and the direct path, reading the `Server-Timing` header with the contract's parser.

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use contracts::server_timing::{self, ServerTiming};
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const WORKLOAD: HeaderName = HeaderName::from_static(contracts::workload::WORKLOAD);
const EMPTY: HeaderValue = HeaderValue::from_static(contracts::workload::WORKLOAD_EMPTY);
const SERVER_TIMING: HeaderName = HeaderName::from_static(server_timing::HEADER);

/// Where an invocation goes: a sandbox directly, or the data plane with the function in `Host`.
#[derive(Debug, Clone)]
pub struct Target {
    uri: Uri,
    host: Option<HeaderValue>,
}

impl Target {
    /// The sandbox at `address` (`ip:port`).
    pub fn direct(address: &str) -> anyhow::Result<Self> {
        Ok(Self { uri: root_uri(address)?, host: None })
    }

    /// Function `function` through the data plane proxy at `proxy`.
    pub fn proxied(proxy: &str, function: &str) -> anyhow::Result<Self> {
        let host = HeaderValue::try_from(function).with_context(|| format!("function name {function:?}"))?;
        Ok(Self { uri: root_uri(proxy)?, host: Some(host) })
    }
}

fn root_uri(address: &str) -> anyhow::Result<Uri> {
    format!("http://{address}/").parse().with_context(|| format!("address {address:?} is not host:port"))
}

/// One invocation's outcome.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Response status.
    pub status: StatusCode,
    /// From sending the request to the last byte of the response, µs.
    pub latency_us: f64,
    /// The data plane's breakdown, when it sent one.
    pub timing: Option<ServerTiming>,
    /// The response body (for error messages).
    pub body: Bytes,
}

impl Reply {
    /// Fails unless the status is 2xx, quoting the body.
    pub fn ensure_success(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.status.is_success(),
            "invocation failed with {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        Ok(())
    }
}

/// A keep-alive HTTP/1.1 client with `TCP_NODELAY` and its own connection pool (so one closed-loop task
/// keeps one connection).
#[derive(Clone)]
pub struct Invoker {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Invoker {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector) }
    }
}

impl Invoker {
    /// Invokes `target` with `workload: empty` and reads the whole response.
    pub async fn invoke(&self, target: &Target) -> anyhow::Result<Reply> {
        let mut request = Request::get(target.uri.clone()).header(WORKLOAD, EMPTY);
        if let Some(host) = &target.host {
            request = request.header(HOST, host);
        }
        let request = request.body(Empty::new())?;
        let sent = Instant::now();
        let response = self.client.request(request).await.with_context(|| format!("calling {}", target.uri))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.with_context(|| format!("reading the reply of {}", target.uri))?.to_bytes();
        let latency_us = sent.elapsed().as_secs_f64() * 1e6;
        let timing = parts.headers.get(SERVER_TIMING).and_then(|v| v.to_str().ok()).map(ServerTiming::parse);
        Ok(Reply { status: parts.status, latency_us, timing, body })
    }

    /// Opens (or reuses) the pooled connection to `target` with its `GET /health`, unmeasured.
    pub async fn connect(&self, target: &Target) -> anyhow::Result<()> {
        let uri: Uri = format!("{}health", target.uri).parse()?;
        let response = self.client.request(Request::get(uri.clone()).body(Empty::new())?).await?;
        let status = response.status();
        response.into_body().collect().await?;
        anyhow::ensure!(status.is_success(), "GET {uri} answered {status}");
        Ok(())
    }
}
