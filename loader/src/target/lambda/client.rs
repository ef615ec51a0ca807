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
    /// The error type (`x-amzn-ErrorType` without its URL suffix, else the body's `__type`/`Type`) and a short
    /// message (see [`short_message`]).
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
        let message = text("message").or_else(|| text("Message"));
        let message = short_message(message.as_deref().unwrap_or(&String::from_utf8_lossy(&self.body)));
        (kind, message)
    }
}

/// Where AWS signature-error messages start quoting the signed request, whose headers include the session token.
const QUOTED_REQUEST_MARKERS: [&str; 2] = ["The Canonical String", "The String-to-Sign"];

/// Stands in for a credential in an error answer.
const REDACTED: &str = "** redacted **";

/// An error message fit for a record: cut before any quoted request (see [`QUOTED_REQUEST_MARKERS`]) and to
/// [`crate::target::http::BODY_EXCERPT_CHARS`] characters, since it ends up in `invocations.csv` once per call.
fn short_message(message: &str) -> String {
    let cut = QUOTED_REQUEST_MARKERS.iter().filter_map(|marker| message.find(marker)).min().unwrap_or(message.len());
    crate::target::http::body_excerpt(&message.as_bytes()[..cut])
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
    /// The credential strings, as sent and JSON-escaped, longest first: removed from error answers.
    secrets: Vec<String>,
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
        // A JSON body may escape `/` (frequent in secret keys and session tokens) as `\/`.
        let mut secrets: Vec<String> = credentials
            .secret_strings()
            .into_iter()
            .filter(|secret| !secret.is_empty())
            .flat_map(|secret| [secret.to_string(), secret.replace('/', "\\/")])
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Ok(LambdaClient {
            http,
            endpoint: format!("{scheme}://{}", uri.authority().map(|a| a.as_str()).unwrap_or_default()),
            region: region.to_string(),
            identity: credentials.identity(),
            secrets,
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
            Ok(self.redacted(ApiResponse { status: parts.status, headers: parts.headers, body }))
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

    /// `response` with every credential string in its body replaced by [`REDACTED`] when it is an error answer:
    /// AWS quotes the signed request (with the session token) and the access key id in its own 4xx/5xx answers,
    /// while a 2xx body is the function's reply and is left as it is, unscanned.
    fn redacted(&self, mut response: ApiResponse) -> ApiResponse {
        if response.status.is_success() {
            return response;
        }
        let text = String::from_utf8_lossy(&response.body);
        if self.secrets.iter().any(|secret| text.contains(secret.as_str())) {
            let clean =
                self.secrets.iter().fold(text.into_owned(), |clean, secret| clean.replace(secret.as_str(), REDACTED));
            response.body = Bytes::from(clean);
        }
        response
    }

    fn transport(&self, method: &Method, path: &str, error: &(dyn std::error::Error + 'static)) -> ApiError {
        let message = contracts::error_chain(error);
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

    /// An `InvalidSignatureException` as AWS words it: the message quotes the canonical request, session token
    /// included, and the string to sign.
    fn signature_error(token: &str) -> String {
        format!(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
             Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String \
             for this request should have been\n'POST\n/2015-03-31/functions/f/invocations\n\n\
             content-type:application/json\nhost:lambda.us-east-1.amazonaws.com\nx-amz-date:20240101T000000Z\n\
             x-amz-security-token:{token}\n\ncontent-type;host;x-amz-date;x-amz-security-token\n\
             0123456789abcdef'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20240101T000000Z\n\
             20240101/us-east-1/lambda/aws4_request\nfedcba9876543210'\n"
        )
    }

    fn answer(status: StatusCode, kind: &str, body: String) -> ApiResponse {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-errortype", kind.parse().unwrap());
        ApiResponse { status, headers, body: Bytes::from(body) }
    }

    #[test]
    fn error_answers_lose_the_quoted_request_and_every_credential() {
        let token = "IQoJb3JpZ2luX2VjEXAMPLE/session+token==";
        let credentials = AwsCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", Some(token.into()), "test");
        let client = LambdaClient::new("http://127.0.0.1:9", "us-east-1", &credentials, 1).unwrap();
        let secrets = credentials.secret_strings();
        let leaked = |text: &str| secrets.iter().find(|secret| text.contains(*secret)).map(|s| s.to_string());

        let body = serde_json::json!({ "message": signature_error(token) }).to_string();
        assert!(body.contains(token), "the test must quote the token");
        let response = client.redacted(answer(StatusCode::FORBIDDEN, "InvalidSignatureException", body));
        let (kind, message) = response.error();
        assert_eq!(kind, "InvalidSignatureException");
        assert!(message.starts_with("The request signature we calculated does not match"), "{message}");
        assert!(!message.contains("Canonical") && !message.contains("x-amz-security-token"), "{message}");
        assert_eq!(leaked(&message), None, "{message}");
        assert_eq!(leaked(&String::from_utf8_lossy(&response.body)), None);

        // Credentials outside a quoted request, JSON-escaped (`\/`) or in a body that is not JSON, are replaced too.
        let escaped =
            format!(r#"{{"message":"{} AKIDEXAMPLE {}"}}"#, token.replace('/', "\\/"), "wJalrXUtnFEMI\\/K7MDENG");
        for body in [escaped, format!("<Error>the token {token} is invalid</Error>")] {
            let response = client.redacted(answer(StatusCode::FORBIDDEN, "UnrecognizedClientException", body));
            let (_, message) = response.error();
            assert!(message.contains(REDACTED), "{message}");
            assert_eq!(leaked(&message), None, "{message}");
            assert_eq!(leaked(&String::from_utf8_lossy(&response.body)), None);
        }

        // Without the client (or its credentials) the quoted request is still cut, and the message stays short.
        let body = serde_json::json!({ "message": format!("{}{}", "x".repeat(1000), signature_error(token)) });
        let (_, message) = answer(StatusCode::FORBIDDEN, "InvalidSignatureException", body.to_string()).error();
        assert!(!message.contains(token), "{message}");
        assert!(message.chars().count() <= crate::target::http::BODY_EXCERPT_CHARS + 3, "{message}");
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
