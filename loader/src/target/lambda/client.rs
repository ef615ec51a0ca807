//! A small SigV4-signed client for the Lambda REST API (hyper, rustls with ring for https, plain http for an
//! endpoint override such as moto or a VPC endpoint).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::credentials::AwsCredentials;

/// The signing name of the Lambda service.
const SERVICE: &str = "lambda";

/// A Lambda API answer: status, headers and the whole body.
#[derive(Debug, Clone)]
pub(crate) struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    /// The error type (`x-amzn-ErrorType` without its URL suffix, else the body's `__type`/`Type`) and message.
    pub fn error(&self) -> (String, String) {
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let kind = self
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_string())
            .or_else(|| text("__type").map(|t| t.rsplit('#').next().unwrap_or(&t).to_string()))
            .or_else(|| text("Type"))
            .unwrap_or_else(|| format!("HTTP {}", self.status.as_u16()));
        let message = text("message")
            .or_else(|| text("Message"))
            .unwrap_or_else(|| crate::target::http::body_excerpt(&self.body));
        (kind, message)
    }
}

/// A request that got no answer: names the host, never the request's headers.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ApiError {
    /// No answer within the deadline.
    #[error("{method} {host}{path}: no answer within {timeout:?}")]
    Timeout { method: Method, host: String, path: String, timeout: Duration },
    /// Connecting, sending or reading failed.
    #[error("{method} {host}{path}: {message}")]
    Transport { method: Method, host: String, path: String, message: String },
    /// The request could not be built or signed.
    #[error("{method} {host}{path}: cannot sign the request: {message}")]
    Sign { method: Method, host: String, path: String, message: String },
}

/// Signs and sends Lambda API requests for one region and endpoint.
pub(crate) struct LambdaClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `scheme://authority`, no trailing slash.
    endpoint: String,
    region: String,
    identity: aws_smithy_runtime_api::client::identity::Identity,
}

impl std::fmt::Debug for LambdaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaClient")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl LambdaClient {
    /// A client for `endpoint` (`https://lambda.REGION.amazonaws.com` or an override) signing for `region`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: &AwsCredentials,
        pool_max_idle: usize,
    ) -> Result<Self, String> {
        let uri: http::Uri = endpoint.parse().map_err(|e| format!("endpoint_url '{endpoint}' is not a URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if !matches!(scheme, "http" | "https") || uri.authority().is_none() {
            return Err(format!("endpoint_url '{endpoint}' must be http://HOST[:PORT] or https://HOST[:PORT]"));
        }
        if !uri.path().trim_end_matches('/').is_empty() || uri.query().is_some() {
            return Err(format!("endpoint_url '{endpoint}' must not have a path or query"));
        }
        let provider = rustls::crypto::ring::default_provider();
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            // Without system certificates plain http still works (moto, a VPC endpoint without TLS).
            Err(_) if scheme == "http" => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider.into())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS setup: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
            Err(e) => return Err(format!("cannot load the system's TLS root certificates for {endpoint}: {e}")),
        };
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let connector = builder.https_or_http().enable_http1().wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(LambdaClient {
            http,
            endpoint: format!("{scheme}://{}", uri.authority().map(|a| a.as_str()).unwrap_or_default()),
            region: region.to_string(),
            identity: credentials.identity(),
        })
    }

    /// The endpoint, `scheme://authority`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one signed request (`path` with its query, already percent-encoded) and reads the whole answer, within
    /// `timeout` when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<ApiResponse, ApiError> {
        let request = self.signed(method.clone(), path, body)?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| self.transport(&method, path, &e))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| self.transport(&method, path, &e))?.to_bytes();
            Ok(ApiResponse { status: parts.status, headers: parts.headers, body })
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, exchange).await.map_err(|_| ApiError::Timeout {
                method: method.clone(),
                host: self.endpoint.clone(),
                path: path.to_string(),
                timeout: limit,
            })?,
            None => exchange.await,
        }
    }

    /// Builds the request and adds the SigV4 headers (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token`).
    pub fn signed(&self, method: Method, path: &str, body: Bytes) -> Result<Request<Full<Bytes>>, ApiError> {
        let sign_error = |message: String| ApiError::Sign {
            method: method.clone(),
            host: self.endpoint.clone(),
            path: path.to_string(),
            message,
        };
        let uri = format!("{}{path}", self.endpoint);
        let content_type = "application/json";
        let settings = SigningSettings::default();
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| sign_error(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            uri.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| sign_error(e.to_string()))?;
        // aws-sigv4 traces its inputs (the access key id, the canonical request with the session token): sign
        // with tracing switched off so that no log level lets a credential out.
        let signed =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || sign(signable, &params));
        let (instructions, _signature) = signed.map_err(|e| sign_error(e.to_string()))?.into_parts();
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body.clone()))
            .map_err(|e| sign_error(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        // The access key id is in the Authorization header: keep it out of any Debug output of the request.
        for value in request.headers_mut().values_mut() {
            value.set_sensitive(true);
        }
        Ok(request)
    }

    fn transport(&self, method: &Method, path: &str, error: &(dyn std::error::Error + 'static)) -> ApiError {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ApiError::Transport { method: method.clone(), host: self.endpoint.clone(), path: path.to_string(), message }
    }
}

/// Percent-encodes `value` for a URL query (RFC 3986 unreserved characters stay).
pub(crate) fn query_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(query_encode("fn-1_x.y~"), "fn-1_x.y~");
    }

    #[tokio::test]
    async fn requests_carry_sigv4_headers_and_no_secret_in_debug() {
        let credentials = AwsCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI", Some("tok".into()), "test");
        let client = LambdaClient::new("http://127.0.0.1:9", "eu-west-1", &credentials, 1).unwrap();
        let request = client.signed(Method::GET, "/2015-03-31/functions/f", Bytes::new()).unwrap();
        let auth = request.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/eu-west-1/lambda/aws4_request"), "{auth}");
        assert!(request.headers().contains_key("x-amz-date"));
        assert_eq!(request.headers()["x-amz-security-token"], "tok");
        let debug = format!("{client:?} {:?}", request.headers());
        assert!(!debug.contains("wJalrXUtnFEMI") && !debug.contains("AKIDEXAMPLE"), "{debug}");
    }

    #[test]
    fn rejects_bad_endpoints() {
        let credentials = AwsCredentials::new("a", "b", None, "test");
        for bad in ["ftp://x", "127.0.0.1:5005", "http://x/path"] {
            let err = LambdaClient::new(bad, "us-east-1", &credentials, 1).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
