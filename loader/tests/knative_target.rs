//! The Knative target against a small HTTP server playing the Kubernetes API for the calls it makes (create, list by
//! label, delete), with bodies shaped as the Kubernetes and Knative documentation shows them, and a local HTTP server
//! standing in for the ingress gateway (routing by `Host`, HTTP/1.1 and h2c).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loader::record::Outcome;
use loader::schedule::Invocation;
use loader::target::knative::{
    FUNCTION_LABEL, KnativeConfig, KnativeTarget, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RUN_LABEL, cleanup,
};
use loader::target::{FunctionDeployment, Target, TargetError};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const NAMESPACE: &str = "bench";
const SERVICES: &str = "/apis/serving.knative.dev/v1/namespaces/bench/services";
const TOKEN: &str = "test-token-not-secret";

/// What the fake API server holds and saw.
#[derive(Default)]
struct ApiState {
    services: BTreeMap<String, Value>,
    /// How many list calls each service has been seen in; it turns Ready on its second.
    polls: BTreeMap<String, u32>,
    /// `METHOD path?query` of every request.
    log: Vec<String>,
    /// Every Authorization header seen.
    auth: Vec<String>,
}

fn status_body(code: u16, reason: &str, message: &str, name: &str) -> Value {
    // https://kubernetes.io/docs/reference/using-api/api-concepts/ (Status kind)
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message,
        "reason": reason,
        "details": { "name": name, "group": "serving.knative.dev", "kind": "services" },
        "code": code,
    })
}

/// Moves a stored Service one step along what Knative's controller does: first `Ready=Unknown`, then `Ready=True`
/// with `status.url`; a Service whose image contains `broken` gets `Ready=False`.
fn reconcile(object: &mut Value, polls: u32) {
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let image = object["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string();
    let condition = |ty: &str, status: &str, reason: Option<&str>, message: Option<&str>| {
        let mut c = json!({ "type": ty, "status": status, "lastTransitionTime": "2026-11-27T10:00:00Z" });
        if let Some(reason) = reason {
            c["reason"] = json!(reason);
        }
        if let Some(message) = message {
            c["message"] = json!(message);
        }
        c
    };
    // https://knative.dev/docs/serving/reference/serving-api/#serving.knative.dev/v1.ServiceStatus
    object["status"] = if image.contains("broken") {
        let message = format!("Revision \"{name}-00001\" failed with message: Back-off pulling image \"{image}\".");
        json!({
            "observedGeneration": 1,
            "latestCreatedRevisionName": format!("{name}-00001"),
            "conditions": [
                condition("ConfigurationsReady", "False", Some("RevisionFailed"), Some(&message)),
                condition("Ready", "False", Some("RevisionFailed"), Some(&message)),
                condition("RoutesReady", "False", Some("RevisionFailed"), Some(&message)),
            ],
        })
    } else if polls < 2 {
        json!({
            "observedGeneration": 1,
            "conditions": [
                condition("ConfigurationsReady", "Unknown", None, None),
                condition("Ready", "Unknown", Some("RevisionMissing"), Some("Configuration is waiting for a Revision to become ready.")),
                condition("RoutesReady", "Unknown", Some("RevisionMissing"), None),
            ],
        })
    } else {
        json!({
            "observedGeneration": 1,
            "latestCreatedRevisionName": format!("{name}-00001"),
            "latestReadyRevisionName": format!("{name}-00001"),
            "url": format!("http://{name}.{NAMESPACE}.example.com"),
            "address": { "url": format!("http://{name}.{NAMESPACE}.svc.cluster.local") },
            "traffic": [{ "revisionName": format!("{name}-00001"), "latestRevision": true, "percent": 100 }],
            "conditions": [
                condition("ConfigurationsReady", "True", None, None),
                condition("Ready", "True", None, None),
                condition("RoutesReady", "True", None, None),
            ],
        })
    };
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (key, value) = term.split_once('=').unwrap();
        object["metadata"]["labels"][key] == value
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn handle(state: &Mutex<ApiState>, method: &str, path: &str, query: &str, body: &[u8]) -> (StatusCode, Value) {
    let mut state = state.lock().unwrap();
    let ApiState { services, polls, .. } = &mut *state;
    let name = path.strip_prefix(SERVICES).and_then(|rest| rest.strip_prefix('/'));
    match (method, name) {
        ("POST", None) if path == SERVICES => {
            let mut object: Value = serde_json::from_slice(body).unwrap();
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            if services.contains_key(&name) {
                let message = format!("services.serving.knative.dev \"{name}\" already exists");
                return (StatusCode::CONFLICT, status_body(409, "AlreadyExists", &message, &name));
            }
            let meta = &mut object["metadata"];
            meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", services.len()));
            meta["resourceVersion"] = json!(format!("{}", 1000 + services.len()));
            meta["generation"] = json!(1);
            meta["creationTimestamp"] = json!("2026-11-27T10:00:00Z");
            reconcile(&mut object, 0);
            services.insert(name, object.clone());
            (StatusCode::CREATED, object)
        }
        ("GET", None) if path == SERVICES => {
            let selector = query_param(query, "labelSelector").unwrap_or_default();
            let mut items = Vec::new();
            for (name, object) in services.iter_mut() {
                if matches_selector(object, &selector) {
                    let seen = polls.entry(name.clone()).or_default();
                    *seen += 1;
                    reconcile(object, *seen);
                    items.push(object.clone());
                }
            }
            let list = json!({
                "apiVersion": "serving.knative.dev/v1",
                "kind": "ServiceList",
                "metadata": { "resourceVersion": "2000" },
                "items": items,
            });
            (StatusCode::OK, list)
        }
        ("GET", Some(name)) => match services.get(name) {
            Some(object) => (StatusCode::OK, object.clone()),
            None => not_found(name),
        },
        ("DELETE", Some(name)) => match services.remove(name) {
            Some(object) => {
                let mut status = status_body(200, "", "", name);
                status["details"]["uid"] = object["metadata"]["uid"].clone();
                (StatusCode::OK, status)
            }
            None => not_found(name),
        },
        _ => (
            StatusCode::NOT_FOUND,
            status_body(404, "NotFound", "the server could not find the requested resource", ""),
        ),
    }
}

fn not_found(name: &str) -> (StatusCode, Value) {
    let message = format!("services.serving.knative.dev \"{name}\" not found");
    (StatusCode::NOT_FOUND, status_body(404, "NotFound", &message, name))
}

/// Starts the fake API server on loopback; it stops when the test's runtime ends.
async fn start_api() -> (SocketAddr, Arc<Mutex<ApiState>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(ApiState::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let query = req.uri().query().unwrap_or("").to_string();
                        let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        {
                            let mut s = state.lock().unwrap();
                            s.log.push(format!("{method} {path}?{query}"));
                            s.auth.extend(auth);
                        }
                        let (status, json) = handle(&state, &method, &path, &query, &body);
                        let response = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(json.to_string())))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, state)
}

/// Starts a stand-in for the ingress gateway (HTTP/1.1 and h2c): routes by `Host` to the hosts in `known`, answering
/// as the trace function does; unknown hosts get 404 as from Kourier. Records the Host headers seen.
async fn start_gateway(known: Vec<String>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let seen = hosts.clone();
    let known = Arc::new(known);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (seen, known) = (seen.clone(), known.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (seen, known) = (seen.clone(), known.clone());
                    async move {
                        // HTTP/1.1 carries the Host header; h2c carries it as :authority (the URI's authority).
                        let host = req
                            .headers()
                            .get("host")
                            .map(|v| v.to_str().unwrap().to_string())
                            .or_else(|| req.uri().authority().map(|a| a.to_string()))
                            .unwrap_or_default();
                        seen.lock().unwrap().push(format!("{:?} {host}", req.version()));
                        let cpu: u64 = req.headers()["requested_cpu"].to_str().unwrap().parse().unwrap();
                        let (status, body) = if known.contains(&host) {
                            let function = req.headers()["function"].to_str().unwrap();
                            let reply = json!({ "Status": "OK", "Function": function, "ExecutionTime": cpu * 1000,
                                                "MemoryUsageKb": 2048, "ColdStart": false });
                            (StatusCode::OK, reply.to_string())
                        } else {
                            (StatusCode::NOT_FOUND, String::new())
                        };
                        Ok::<_, Infallible>(
                            Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hosts)
}

/// A kubeconfig naming the fake API server (plain http, a bearer token) in a temporary folder.
fn kubeconfig(dir: &tempfile::TempDir, api: SocketAddr) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{api}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\n\
         users:\n- name: fake\n  user:\n    token: {TOKEN}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn config(dir: &tempfile::TempDir, api: SocketAddr, gateway: SocketAddr) -> KnativeConfig {
    let mut config = KnativeConfig::new(gateway.to_string(), "docker.io/example/trace-function:latest");
    config.namespace = NAMESPACE.into();
    config.kubeconfig = Some(kubeconfig(dir, api));
    config.max_scale = 10;
    config
}

fn functions(names: &[&str]) -> Vec<FunctionDeployment> {
    names
        .iter()
        .map(|n| FunctionDeployment { name: (*n).into(), max_scale: 10, ..FunctionDeployment::default() })
        .collect()
}

fn invocation() -> Invocation {
    Invocation::single(25, 128)
}

#[tokio::test]
async fn deploys_waits_for_ready_invokes_by_host_and_tears_down() {
    for http2 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (api, state) = start_api().await;
        let known = vec![format!("f-a.{NAMESPACE}.example.com"), format!("f-b.{NAMESPACE}.example.com")];
        let (gateway, seen_hosts) = start_gateway(known.clone()).await;
        let mut config = config(&dir, api, gateway);
        config.http2 = http2;
        let target = KnativeTarget::new(config, Some(Duration::from_secs(30)))
            .unwrap()
            .with_poll_interval(Duration::from_millis(10))
            .with_run_id("r-test");
        target.deploy(&functions(&["f-a", "f-b"])).await.unwrap();

        {
            let s = state.lock().unwrap();
            assert!(s.auth.iter().all(|a| a == &format!("Bearer {TOKEN}")) && !s.auth.is_empty(), "{:?}", s.auth);
            let stored = &s.services["f-a"];
            assert_eq!(stored["metadata"]["labels"][RUN_LABEL], "r-test");
            assert_eq!(stored["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY_VALUE);
            assert_eq!(stored["metadata"]["labels"][FUNCTION_LABEL], "f-a");
            assert_eq!(stored["spec"]["template"]["spec"]["containerConcurrency"], 1);
            let port = &stored["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"];
            assert_eq!(port, if http2 { "h2c" } else { "http1" });
            let lists: Vec<&String> = s.log.iter().filter(|l| l.starts_with(&format!("GET {SERVICES}?"))).collect();
            assert!(lists.len() >= 2, "{:?}", s.log);
            assert!(lists.iter().all(|l| l.contains("labelSelector=faas-loader%2Frun%3Dr-test")), "{lists:?}");
        }
        assert_eq!(target.host("f-a").as_deref(), Some(known[0].as_str()));

        let response = target.invoke("f-a", &invocation()).await;
        assert_eq!(response.outcome, Outcome::Ok);
        assert_eq!(response.actual_duration_us, Some(25_000));
        assert_eq!(response.actual_memory_mib, Some(2));
        assert_eq!(response.cold_start, Some(false));
        let version = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert_eq!(seen_hosts.lock().unwrap().as_slice(), [format!("{version} {}", known[0])]);

        let missing = target.invoke("f-zzz", &invocation()).await;
        assert!(matches!(&missing.outcome, Outcome::ConnectionFailed(m) if m.contains("f-zzz")), "{missing:?}");

        target.teardown().await.unwrap();
        let s = state.lock().unwrap();
        assert!(s.services.is_empty(), "{:?}", s.services.keys());
        assert!(s.log.contains(&format!("DELETE {SERVICES}/f-b?")), "{:?}", s.log);
    }
}

#[tokio::test]
async fn a_failed_revision_fails_the_deploy_and_deletes_what_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let (api, state) = start_api().await;
    let (gateway, _) = start_gateway(Vec::new()).await;
    let target =
        KnativeTarget::new(config(&dir, api, gateway), None).unwrap().with_poll_interval(Duration::from_millis(10));
    let mut deployments = functions(&["f-ok", "f-bad"]);
    deployments[1].image = Some("docker.io/example/broken:1".into());
    let err = target.deploy(&deployments).await.unwrap_err();
    match &err {
        TargetError::Deploy { function, message } => {
            assert_eq!(function, "f-bad");
            assert!(message.contains("RevisionFailed") && message.contains("Back-off pulling image"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(state.lock().unwrap().services.is_empty());
}

#[tokio::test]
async fn the_ready_deadline_names_the_functions_still_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (api, state) = start_api().await;
    let (gateway, _) = start_gateway(Vec::new()).await;
    let mut config = config(&dir, api, gateway);
    config.ready_timeout = Duration::ZERO;
    let target = KnativeTarget::new(config, None).unwrap();
    let err = target.deploy(&functions(&["f-slow"])).await.unwrap_err().to_string();
    assert!(err.contains("f-slow") && err.contains("ready_timeout") && err.contains("RevisionMissing"), "{err}");
    assert!(state.lock().unwrap().services.is_empty());
}

#[tokio::test]
async fn a_name_clash_is_reported_and_the_other_service_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (api, state) = start_api().await;
    let (gateway, _) = start_gateway(Vec::new()).await;
    let config = config(&dir, api, gateway);
    let first = KnativeTarget::new(config.clone(), None).unwrap().with_run_id("r-first");
    let second = KnativeTarget::new(config, None).unwrap().with_run_id("r-second");
    let _ = first.with_poll_interval(Duration::from_millis(10)).deploy(&functions(&["f-x"])).await;
    let err = second.deploy(&functions(&["f-x"])).await.unwrap_err().to_string();
    assert!(err.contains("f-x") && err.contains("already exists") && err.contains("loader cleanup"), "{err}");
    // The clashing Service belongs to the first run: the second must not delete it.
    assert_eq!(state.lock().unwrap().services["f-x"]["metadata"]["labels"][RUN_LABEL], "r-first");
}

/// `loader cleanup` (the command) deletes every Service of the toolkit, from any run, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_every_service_of_the_toolkit_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (api, state) = start_api().await;
    let (gateway, _) = start_gateway(Vec::new()).await;
    let config = config(&dir, api, gateway);
    // Two interrupted runs' leftovers: deployed, never torn down.
    for (run, names) in [("r-1", ["f-a", "f-b"]), ("r-2", ["f-c", "f-d"])] {
        let target = KnativeTarget::new(config.clone(), None)
            .unwrap()
            .with_run_id(run)
            .with_poll_interval(Duration::from_millis(10));
        target.deploy(&functions(&names)).await.unwrap();
    }
    // Somebody else's Service in the same namespace.
    let other = json!({ "apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": { "name": "hello", "namespace": NAMESPACE, "labels": { "app": "hello" } } });
    state.lock().unwrap().services.insert("hello".into(), other);

    let run_config = dir.path().join("run.yaml");
    let target = format!(
        "target: {{ kind: knative, gateway: '{gateway}', image: example/trace-function, namespace: {NAMESPACE}, \
         kubeconfig: '{}' }}\n",
        config.kubeconfig.as_ref().unwrap().display()
    );
    std::fs::write(&run_config, target).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_loader")).args(["cleanup", "--config"]).arg(&run_config).output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let mut deleted: Vec<&str> = stdout.lines().filter_map(|line| line.strip_prefix("deleted ")).collect();
    deleted.sort();
    assert_eq!(deleted, ["f-a", "f-b", "f-c", "f-d"], "{stdout}");
    {
        let s = state.lock().unwrap();
        assert_eq!(s.services.keys().collect::<Vec<_>>(), ["hello"]);
        let selector = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dfaas-loader";
        assert!(s.log.iter().any(|l| l.contains(selector)), "{:?}", s.log);
    }
    assert!(cleanup(&config).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreadable_kubeconfig_names_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = KnativeConfig::new("127.0.0.1:1", "img");
    config.kubeconfig = Some(dir.path().join("missing-kubeconfig"));
    let err = cleanup(&config).await.unwrap_err().to_string();
    assert!(err.contains("target.kubeconfig") && err.contains("missing-kubeconfig"), "{err}");
}
