//! The function as an AWS Lambda custom runtime (`provided.al2023`, the binary packaged as `bootstrap`): when
//! `AWS_LAMBDA_RUNTIME_API` is set, `trace-function` loops over the Lambda Runtime API — `GET
//! /2018-06-01/runtime/invocation/next`, run the requested work, `POST .../invocation/{id}/response` with the same
//! JSON reply the HTTP front end gives (`ColdStart` true on the first invocation of the process), or `POST
//! .../invocation/{id}/error` when the parameters are invalid or the work fails.
//!
//! The invocation payload is a JSON object with the HTTP parameters as keys: `workload`, `function`,
//! `requested_cpu`, `requested_memory`, `multiplier` (numbers or numeric strings); see [`Invocation::from_json`].

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::instance::Instance;
use super::params::Invocation;

/// The Runtime API version prefix.
const RUNTIME_PATH: &str = "/2018-06-01/runtime";
/// The header carrying the invocation's request id.
const REQUEST_ID_HEADER: &str = "lambda-runtime-aws-request-id";

/// The runtime loop cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum LambdaRuntimeError {
    /// The Runtime API did not answer or answered unexpectedly.
    #[error("Lambda Runtime API at {api}: {message}")]
    Api {
        /// `AWS_LAMBDA_RUNTIME_API` (`host:port`).
        api: String,
        /// What went wrong.
        message: String,
    },
}

/// Serves invocations from the Runtime API at `api` (`host:port`) until it fails.
pub async fn run(api: &str) -> Result<(), LambdaRuntimeError> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let instance = Instance::default();
    let fail = |message: String| LambdaRuntimeError::Api { api: api.to_string(), message };
    loop {
        let next = format!("http://{api}{RUNTIME_PATH}/invocation/next");
        let (status, headers, payload) = call(&client, Method::GET, &next, Bytes::new()).await.map_err(fail)?;
        if !status.is_success() {
            return Err(fail(format!("GET {next} answered {status}")));
        }
        let id = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| fail(format!("GET {next} answered without {REQUEST_ID_HEADER}")))?;
        let result = match Invocation::from_json(&payload) {
            Ok(invocation) => instance
                .invoke(invocation.clone())
                .await
                .map(|completed| super::http::reply(&instance, invocation, completed))
                .map_err(|e| ("Runtime.WorkFailed", e.to_string())),
            Err(e) => Err(("Runtime.InvalidParameters", e.to_string())),
        };
        let (url, body) = match result {
            Ok(reply) => (
                format!("http://{api}{RUNTIME_PATH}/invocation/{id}/response"),
                serde_json::to_vec(&reply).unwrap_or_default(),
            ),
            Err((kind, message)) => {
                tracing::warn!(request_id = %id, %message, "invocation failed");
                (
                    format!("http://{api}{RUNTIME_PATH}/invocation/{id}/error"),
                    serde_json::to_vec(&serde_json::json!({ "errorMessage": message, "errorType": kind }))
                        .unwrap_or_default(),
                )
            }
        };
        let (status, _, answer) = call(&client, Method::POST, &url, Bytes::from(body)).await.map_err(fail)?;
        if !status.is_success() {
            return Err(fail(format!("POST {url} answered {status}: {}", String::from_utf8_lossy(&answer))));
        }
    }
}

async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
    let request = Request::builder()
        .method(method.clone())
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let response = client.request(request).await.map_err(|e| format!("{method} {url}: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("{method} {url}: {e}"))?.to_bytes();
    Ok((parts.status, parts.headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::params::{ParamError, Workload};

    #[test]
    fn payload_parses_numbers_and_strings() {
        let invocation =
            Invocation::from_json(br#"{"workload":"trace","function":"f","requested_cpu":25,"requested_memory":"3"}"#)
                .unwrap();
        assert_eq!((invocation.requested_cpu_ms, invocation.requested_memory_mib), (25, 3));
        assert_eq!(invocation.function, "f");
        assert_eq!(Invocation::from_json(b"").unwrap(), Invocation::default());
        assert_eq!(Invocation::from_json(b"{}").unwrap(), Invocation::default());
        assert_eq!(Invocation::from_json(br#"{"workload":"empty"}"#).unwrap().workload, Workload::Empty);
    }

    #[test]
    fn payload_errors_name_the_parameter() {
        let err = Invocation::from_json(br#"{"requested_cpu":"abc"}"#).unwrap_err().to_string();
        assert!(err.contains("requested_cpu"), "{err}");
        let err = Invocation::from_json(br#"{"requested_memory":99999999}"#).unwrap_err().to_string();
        assert!(err.contains("requested_memory"), "{err}");
        let err = Invocation::from_json(br#"{"workload":"other"}"#).unwrap_err().to_string();
        assert!(err.contains("workload"), "{err}");
        assert!(Invocation::from_json(b"{oops").is_err());
    }

    #[test]
    fn null_means_absent() {
        assert_eq!(Invocation::from_json(b"null").unwrap(), Invocation::default());
        let all_null =
            br#"{"workload":null,"function":null,"requested_cpu":null,"requested_memory":null,"multiplier":null}"#;
        assert_eq!(Invocation::from_json(all_null).unwrap(), Invocation::default());
        let invocation =
            Invocation::from_json(br#"{"function":"f","requested_cpu":null,"requested_memory":7}"#).unwrap();
        assert_eq!(
            (invocation.function.as_str(), invocation.requested_cpu_ms, invocation.requested_memory_mib),
            ("f", 0, 7)
        );
    }

    #[test]
    fn payloads_other_than_objects_are_refused() {
        for payload in [&b"[1]"[..], b"5", br#""trace""#, b"true"] {
            let err = Invocation::from_json(payload).unwrap_err();
            assert!(matches!(err, ParamError::Invalid { name: "payload", expected: "a JSON object", .. }), "{err}");
            assert!(err.to_string().contains("expected a JSON object"), "{err}");
        }
        let err = Invocation::from_json(br#"{"requested_cpu":"#).unwrap_err();
        assert!(matches!(err, ParamError::Invalid { name: "payload", expected: "complete JSON", .. }), "{err}");
        // Values that are neither numbers nor numeric strings are refused by name, as over HTTP.
        let err = Invocation::from_json(br#"{"requested_cpu":[1]}"#).unwrap_err();
        assert!(matches!(err, ParamError::Invalid { name: "requested_cpu", .. }), "{err}");
        let err = Invocation::from_json(br#"{"requested_cpu":-1}"#).unwrap_err();
        assert!(matches!(err, ParamError::Invalid { name: "requested_cpu", .. }), "{err}");
    }
}
