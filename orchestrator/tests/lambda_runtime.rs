//! `trace-function` as a Lambda custom runtime, against a small implementation of the Lambda Runtime API
//! (next invocation / response / error) in this test.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use contracts::workload::FunctionReply;
use tokio::sync::mpsc;

/// How long the test waits for each invocation's result.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// Kills and reaps the runtime process on drop, also when the test panics.
struct Runtime(Child);

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone)]
struct Api {
    queue: Arc<Mutex<VecDeque<(String, String)>>>,
    results: mpsc::UnboundedSender<(String, &'static str, Bytes)>,
}

async fn next(State(api): State<Api>) -> impl IntoResponse {
    let item = api.queue.lock().unwrap().pop_front();
    let Some((id, payload)) = item else {
        // No more work: a real Runtime API holds the request until there is some.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", "99999999999999".parse().unwrap());
    (headers, payload)
}

async fn response(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    api.results.send((id, "response", body)).unwrap();
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    api.results.send((id, "error", body)).unwrap();
    StatusCode::ACCEPTED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_runtime_api_with_cold_start_and_errors() {
    let payloads = [
        ("a", r#"{"workload":"trace","function":"fn-a","requested_cpu":20,"requested_memory":4}"#),
        ("b", r#"{"workload":"trace","function":"fn-a","requested_cpu":"1","requested_memory":1}"#),
        ("c", r#"{"requested_cpu":"lots"}"#),
        ("d", r#"{"workload":"empty","function":"fn-a"}"#),
    ];
    let queue = payloads.iter().map(|(id, p)| (id.to_string(), p.to_string())).collect();
    let (results, mut received) = mpsc::unbounded_channel();
    let api = Api { queue: Arc::new(Mutex::new(queue)), results };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let _runtime = Runtime(
        Command::new(env!("CARGO_BIN_EXE_trace-function"))
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // A hang guard, not a timing check: if trace-function dies, no answer ever comes.
    let mut got = Vec::new();
    while got.len() < payloads.len() {
        let answer = tokio::time::timeout(ANSWER_DEADLINE, received.recv()).await.unwrap_or_else(|_| {
            panic!("no answer to invocation {} within {ANSWER_DEADLINE:?} (did trace-function exit?)", got.len())
        });
        got.push(answer.unwrap());
    }
    let ids: Vec<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "invocations are served one after another, in order");

    let first: FunctionReply = serde_json::from_slice(&got[0].2).unwrap();
    assert_eq!(got[0].1, "response");
    assert!(first.is_ok() && first.cold_start, "{first:?}");
    assert_eq!((first.function.as_str(), first.requested_cpu_ms, first.requested_memory_mib), ("fn-a", 20, 4));
    assert!(first.execution_time >= 20_000, "the spin lasts at least the requested time: {first:?}");
    assert!(first.memory_usage_kb >= 4 * 1024, "{first:?}");

    let second: FunctionReply = serde_json::from_slice(&got[1].2).unwrap();
    assert!(second.is_ok() && !second.cold_start, "{second:?}");

    assert_eq!(got[2].1, "error");
    let failure: serde_json::Value = serde_json::from_slice(&got[2].2).unwrap();
    assert_eq!(failure["errorType"], "Runtime.InvalidParameters");
    assert!(failure["errorMessage"].as_str().unwrap().contains("requested_cpu"), "{failure}");

    let empty: FunctionReply = serde_json::from_slice(&got[3].2).unwrap();
    assert_eq!((empty.status.as_str(), empty.cold_start), ("OK - EMPTY", false));
}
