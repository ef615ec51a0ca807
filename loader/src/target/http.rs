//! A plain HTTP target: any endpoint addressed by a URL template (and optionally a `Host` header template) with the
//! function name, speaking the vHive/In-Vitro workload-function headers.
//!
//! For the bundled orchestrator's data plane use URL `http://127.0.0.1:8080/` and Host `{function}`; for an
//! OpenFaaS-like gateway use URL `http://127.0.0.1:8080/function/{function}` and no Host template.

use std::time::Duration;

use bytes::Bytes;
use contracts::server_timing::{self, ColdStart, ServerTiming};
use contracts::workload::{Parameters, ReceivedReply};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::record::Outcome;
use crate::schedule::Invocation;

/// Placeholder replaced by the function name in URL and Host templates.
pub const FUNCTION_PLACEHOLDER: &str = "{function}";
/// Longest excerpt of a failed response's body kept in [`Outcome::Status`], in characters.
pub const BODY_EXCERPT_CHARS: usize = 200;

/// Settings of an [`HttpTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTargetConfig {
    /// URL with optional `{function}`, e.g. `http://127.0.0.1:8080/function/{function}`.
    pub url_template: String,
    /// `Host` header with optional `{function}`; `None` keeps the URL's host.
    pub host_template: Option<String>,
    /// Per-request timeout (to the end of the body); `None` waits forever.
    pub request_timeout: Option<Duration>,
    /// Speak HTTP/2 without TLS from the first byte (h2c prior knowledge) instead of HTTP/1.1.
    pub http2_prior_knowledge: bool,
    /// Most idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl HttpTargetConfig {
    /// A configuration for `url_template` with no Host template, no timeout, HTTP/1.1 and a large pool.
    pub fn new(url_template: impl Into<String>) -> Self {
        HttpTargetConfig {
            url_template: url_template.into(),
            host_template: None,
            request_timeout: None,
            http2_prior_knowledge: false,
            pool_max_idle_per_host: 4096,
        }
    }
}

/// Cuts a response body to at most [`BODY_EXCERPT_CHARS`] characters of (lossy) UTF-8.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// A plain HTTP target over a pooled hyper client (keep-alive, `TCP_NODELAY`, optional h2c).
pub struct HttpTarget {
    config: HttpTargetConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget").field("config", &self.config).finish_non_exhaustive()
    }
}

impl HttpTarget {
    /// Builds the target; the URL template must give a valid URI once `{function}` is filled in.
    pub fn new(config: HttpTargetConfig) -> Result<Self, TargetError> {
        let probe = config.url_template.replace(FUNCTION_PLACEHOLDER, "f");
        let uri: http::Uri = probe
            .parse()
            .map_err(|e| TargetError::Config(format!("url template '{}' is not a URI: {e}", config.url_template)))?;
        if uri.scheme_str() != Some("http") {
            return Err(TargetError::Config(format!(
                "url template '{}' must start with http:// (TLS is not supported)",
                config.url_template
            )));
        }
        if let Some(host) = &config.host_template {
            HeaderValue::from_str(&host.replace(FUNCTION_PLACEHOLDER, "f"))
                .map_err(|e| TargetError::Config(format!("host template '{host}' is not a header value: {e}")))?;
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.set_connect_timeout(config.request_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(config.http2_prior_knowledge)
            .build(connector);
        Ok(HttpTarget { config, client })
    }

    /// The configuration this target was built with.
    pub fn config(&self) -> &HttpTargetConfig {
        &self.config
    }

    /// Invokes `function_name` with the `Host` header set to `host` (instead of the Host template), as a gateway
    /// that routes by host name wants it (Knative's ingress); timeout and recording as [`Target::invoke`].
    pub fn invoke_with_host<'a>(
        &'a self,
        function_name: &'a str,
        host: &'a str,
        invocation: &'a Invocation,
    ) -> BoxFuture<'a, TargetResponse> {
        Box::pin(self.invoke_timed(function_name, Some(host), invocation))
    }

    async fn invoke_timed(&self, function_name: &str, host: Option<&str>, invocation: &Invocation) -> TargetResponse {
        let attempt = async { self.attempt(function_name, host, invocation).await.into_response() };
        match self.config.request_timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| TargetResponse::from_outcome(Outcome::Timeout)),
            None => attempt.await,
        }
    }

    fn build_request(
        &self,
        function_name: &str,
        host: Option<&str>,
        invocation: &Invocation,
    ) -> Result<Request<Empty<Bytes>>, String> {
        let url = self.config.url_template.replace(FUNCTION_PLACEHOLDER, function_name);
        let mut builder = Request::builder().method(Method::GET).uri(url);
        for (name, value) in Parameters::trace(function_name, invocation.runtime_ms, invocation.memory_mib).pairs() {
            builder = builder.header(name, value);
        }
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        } else if let Some(host) = &self.config.host_template {
            builder = builder.header(http::header::HOST, host.replace(FUNCTION_PLACEHOLDER, function_name));
        }
        builder.body(Empty::new()).map_err(|e| format!("cannot build request for '{function_name}': {e}"))
    }

    /// Sends one request without a timeout (the caller bounds it) and tells whether it provably never left: a
    /// failed connect, which a caller with several endpoints may retry elsewhere.
    pub(crate) async fn attempt(&self, function_name: &str, host: Option<&str>, invocation: &Invocation) -> Attempt {
        let request = match self.build_request(function_name, host, invocation) {
            Ok(request) => request,
            Err(message) => return Attempt::Done(TargetResponse::from_outcome(Outcome::ConnectionFailed(message))),
        };
        let response = match self.client.request(request).await {
            Ok(response) => response,
            // Only the connector failed: no byte of the request was written, so nothing can have run.
            Err(e) if e.is_connect() => return Attempt::NotSent(contracts::error_chain(&e)),
            Err(e) => {
                return Attempt::Done(TargetResponse::from_outcome(Outcome::ConnectionFailed(contracts::error_chain(
                    &e,
                ))));
            }
        };
        let status = response.status();
        let breakdown = response
            .headers()
            .get_all(server_timing::HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let breakdown = ServerTiming::parse(&breakdown);
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Attempt::Done(TargetResponse::from_outcome(Outcome::ConnectionFailed(format!(
                    "response body broke: {}",
                    contracts::error_chain(&e)
                ))));
            }
        };
        Attempt::Done(reply_to_response(status, &body, breakdown))
    }
}

/// How one request to one endpoint went.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Answered, or failed after the request may have reached the endpoint (never to be sent again).
    Done(TargetResponse),
    /// The connection could not be made, so the request was provably not sent; the connect error.
    NotSent(String),
}

impl Attempt {
    /// The response, a request not sent being a failed connection.
    pub(crate) fn into_response(self) -> TargetResponse {
        match self {
            Attempt::Done(response) => response,
            Attempt::NotSent(message) => TargetResponse::from_outcome(Outcome::ConnectionFailed(message)),
        }
    }
}

fn reply_to_response(status: StatusCode, body: &[u8], breakdown: crate::record::PlatformBreakdown) -> TargetResponse {
    let reply = ReceivedReply::parse(body);
    let outcome = if !status.is_success() || !reply.status_ok() {
        Outcome::Status(status.as_u16(), body_excerpt(body))
    } else {
        Outcome::Ok
    };
    let cold_start = reply.cold_start.or_else(|| breakdown.cold_start_kind().map(ColdStart::is_cold));
    TargetResponse {
        outcome,
        actual_duration_us: reply.execution_time,
        actual_memory_mib: reply.memory_mib(),
        cold_start,
        breakdown,
        failovers: 0,
    }
}

impl Target for HttpTarget {
    fn deploy<'a>(&'a self, _functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async { Ok(()) })
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        Box::pin(self.invoke_timed(function_name, None, invocation))
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PlatformBreakdown;

    #[test]
    fn maps_status_and_cold_start() {
        let ok = reply_to_response(StatusCode::OK, br#"{"Status":"OK - EMPTY","ExecutionTime":0}"#, Default::default());
        assert_eq!(ok.outcome, Outcome::Ok);
        assert_eq!(ok.actual_duration_us, Some(0));

        let bad = reply_to_response(StatusCode::OK, br#"{"Status":"FAILED"}"#, Default::default());
        assert!(matches!(bad.outcome, Outcome::Status(200, _)));

        let long = "x".repeat(1000);
        let err = reply_to_response(StatusCode::SERVICE_UNAVAILABLE, long.as_bytes(), Default::default());
        match err.outcome {
            Outcome::Status(503, excerpt) => assert_eq!(excerpt.chars().count(), BODY_EXCERPT_CHARS + 3),
            other => panic!("unexpected {other:?}"),
        }

        let breakdown = PlatformBreakdown { cold_start: Some("waited".into()), ..Default::default() };
        assert_eq!(reply_to_response(StatusCode::OK, b"{}", breakdown).cold_start, Some(true));
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(HttpTarget::new(HttpTargetConfig::new("not a uri {function}")).is_err());
        assert!(HttpTarget::new(HttpTargetConfig::new("https://x/{function}")).is_err());
        let mut config = HttpTargetConfig::new("http://127.0.0.1:1/");
        config.host_template = Some("bad\nhost".into());
        assert!(HttpTarget::new(config).is_err());
    }

    #[tokio::test]
    async fn request_carries_vhive_headers() {
        let mut config = HttpTargetConfig::new("http://127.0.0.1:8080/");
        config.host_template = Some("{function}.example".into());
        let target = HttpTarget::new(config).unwrap();
        let invocation = Invocation::single(25, 128);
        let request = target.build_request("fn-a", None, &invocation).unwrap();
        let h = request.headers();
        assert_eq!(h["workload"], "trace");
        assert_eq!(h["function"], "fn-a");
        assert_eq!(h["requested_cpu"], "25");
        assert_eq!(h["requested_memory"], "128");
        assert_eq!(h["host"], "fn-a.example");
        let request = target.build_request("fn-a", Some("fn-a.ns.example.com"), &invocation).unwrap();
        assert_eq!(request.headers()["host"], "fn-a.ns.example.com");
        assert_eq!(request.headers()["function"], "fn-a");
    }
}
