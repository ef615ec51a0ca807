//! The dirigent target against fake data planes and a fake control plane on 127.0.0.1: invocations spread over
//! every proxy, a refused connection fails over to the next one (and is counted), a request that reached a proxy is
//! never sent again, the control plane's data-plane list is used, and every API call is bounded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use contracts::api::{DataPlaneList, DataPlaneView};
use contracts::run_folder::RunSummary;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loader::config::{RpsWorkload, RunConfig, TargetConfig, Workload};
use loader::driver::StopSignal;
use loader::record::Outcome;
use loader::schedule::Invocation;
use loader::target::dirigent::{DirigentConfig, DirigentTarget};
use loader::target::{FunctionDeployment, Target};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A task that is aborted when the test ends, also on failure.
struct Served(JoinHandle<()>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fake server: where it listens and how many requests it read.
struct Fake {
    address: String,
    requests: Arc<AtomicUsize>,
    _served: Served,
}

impl Fake {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves `answer` over HTTP/1.1 and h2 on a free port; listening when this returns.
async fn serve<F>(answer: F) -> Fake
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let (answer, counted) = (Arc::new(answer), requests.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answer, counted) = (answer.clone(), counted.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let response = answer(&request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Fake { address, requests, _served: Served(task) }
}

/// A data plane: answers like the workload function behind it, naming itself in the reply.
async fn data_plane() -> Fake {
    serve(|request| {
        let cpu: u64 = request
            .headers()
            .get("requested_cpu")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = format!(r#"{{"Status":"OK","ExecutionTime":{},"MemoryUsageKb":1024}}"#, cpu * 1000);
        Response::builder()
            .header("server-timing", r#"queue;dur=0.1, coldstart;desc="none", proxy;dur=0.1"#)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    })
    .await
}

/// A proxy that reads a whole request head and then resets the connection: the request reached it.
async fn resetting_proxy() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                stream.set_zero_linger().unwrap();
            });
        }
    });
    Fake { address, requests, _served: Served(task) }
}

/// An address where nothing listens (bound once, then released).
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    address.to_string()
}

/// A control plane that registers everything and lists the data planes at `proxies`.
async fn control_plane(proxies: Vec<String>) -> Fake {
    let list = DataPlaneList {
        data_planes: proxies
            .into_iter()
            .enumerate()
            .map(|(i, proxy_address)| DataPlaneView { name: format!("dp-{i}"), proxy_address, ..Default::default() })
            .collect(),
    };
    let list = serde_json::to_string(&list).unwrap();
    serve(move |request| {
        let (status, body) = match (request.method().as_str(), request.uri().path()) {
            ("GET", "/v1/data-planes") => (StatusCode::OK, list.clone()),
            ("POST", "/v1/functions") => (StatusCode::CREATED, "{}".into()),
            ("DELETE", _) => (StatusCode::OK, r#"{"deleted":"f"}"#.into()),
            _ => (StatusCode::NOT_FOUND, r#"{"error":"no such path"}"#.into()),
        };
        Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
    })
    .await
}

fn target(api: &Fake, proxies: &[&str]) -> DirigentTarget {
    let mut config =
        DirigentConfig::new(vec![api.address.clone()], proxies.iter().map(|p| p.to_string()).collect(), "image");
    config.request_timeout = Some(Duration::from_secs(30));
    DirigentTarget::new(config).unwrap()
}

fn function() -> Vec<FunctionDeployment> {
    vec![FunctionDeployment { name: "f".into(), ..FunctionDeployment::default() }]
}

/// Invokes `target` `times` times one after the other; the outcomes and the failovers summed.
async fn invoke(target: &DirigentTarget, times: usize) -> (Vec<Outcome>, u32) {
    let invocation = Invocation::single(1, 1);
    let mut outcomes = Vec::new();
    let mut failovers = 0;
    for _ in 0..times {
        let response = target.invoke("f", &invocation).await;
        outcomes.push(response.outcome);
        failovers += response.failovers;
    }
    (outcomes, failovers)
}

#[tokio::test]
async fn invocations_spread_over_every_proxy() {
    let (a, b) = (data_plane().await, data_plane().await);
    let api = control_plane(Vec::new()).await;
    let target = target(&api, &[&a.address, &b.address]);
    target.deploy(&function()).await.unwrap();
    let (outcomes, failovers) = invoke(&target, 10).await;
    assert!(outcomes.iter().all(Outcome::is_ok), "{outcomes:?}");
    assert_eq!((a.requests(), b.requests(), failovers), (5, 5, 0), "round robin, one after the other");
}

#[tokio::test]
async fn a_refused_connection_fails_over_to_the_next_proxy_and_is_counted() {
    let (closed, b) = (closed_address(), data_plane().await);
    let api = control_plane(Vec::new()).await;
    let target = target(&api, &[&closed, &b.address]);
    target.deploy(&function()).await.unwrap();
    let (outcomes, failovers) = invoke(&target, 10).await;
    assert!(outcomes.iter().all(Outcome::is_ok), "every invocation succeeds on the live proxy: {outcomes:?}");
    assert_eq!(b.requests(), 10);
    assert!(failovers > 0, "the first turn of the closed proxy failed over");
}

#[tokio::test]
async fn a_request_that_reached_a_proxy_is_failed_not_sent_again() {
    let (reset, b) = (resetting_proxy().await, data_plane().await);
    let api = control_plane(Vec::new()).await;
    let target = target(&api, &[&reset.address, &b.address]);
    target.deploy(&function()).await.unwrap();
    let response = target.invoke("f", &Invocation::single(1, 1)).await;
    assert!(matches!(response.outcome, Outcome::ConnectionFailed(_)), "{:?}", response.outcome);
    assert_eq!((reset.requests(), b.requests(), response.failovers), (1, 0, 0), "not retried on the other proxy");
}

#[tokio::test]
async fn every_data_plane_the_control_plane_lists_is_used() {
    let (a, b) = (data_plane().await, data_plane().await);
    let api = control_plane(vec![a.address.clone(), b.address.clone()]).await;
    let target = target(&api, &[&a.address]);
    target.deploy(&function()).await.unwrap();
    assert_eq!(target.proxies(), [a.address.clone(), b.address.clone()], "the configured one is not doubled");
    let (outcomes, _) = invoke(&target, 4).await;
    assert!(outcomes.iter().all(Outcome::is_ok), "{outcomes:?}");
    assert_eq!((a.requests(), b.requests()), (2, 2));
}

/// A server that accepts connections and holds them open without ever answering.
async fn silent_server() -> (String, Served) {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let held = Served(tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    }));
    (address, held)
}

#[tokio::test]
async fn a_failover_is_counted_also_when_the_next_proxy_times_out() {
    let (silent, _held) = silent_server().await;
    let api = control_plane(Vec::new()).await;
    let mut config = DirigentConfig::new(vec![api.address.clone()], vec![closed_address(), silent], "image");
    config.request_timeout = Some(Duration::from_millis(200));
    let target = DirigentTarget::new(config).unwrap();
    let response = target.invoke("f", &Invocation::single(1, 1)).await;
    assert_eq!((response.outcome, response.failovers), (Outcome::Timeout, 1));
}

#[tokio::test]
async fn a_control_plane_that_never_answers_fails_the_deploy_after_the_api_timeout() {
    let (address, _held) = silent_server().await;
    let mut config = DirigentConfig::new(vec![address], vec![closed_address()], "image");
    config.api_timeout = Duration::from_millis(200);
    let error = DirigentTarget::new(config).unwrap().deploy(&function()).await.unwrap_err().to_string();
    assert!(error.contains("did not answer within") && error.contains("driver.api_timeout"), "{error}");
}

#[tokio::test]
async fn a_reply_larger_than_the_cap_is_not_buffered() {
    let huge = "x".repeat(loader::target::dirigent::API_BODY_LIMIT + 1);
    let api = serve(move |_| {
        Response::builder().status(StatusCode::BAD_REQUEST).body(Full::new(Bytes::from(huge.clone()))).unwrap()
    })
    .await;
    let error = target(&api, &[&closed_address()]).deploy(&function()).await.unwrap_err().to_string();
    assert!(error.contains("at most"), "{error}");
}

/// A whole run through the loader with one proxy dead: every invocation succeeds and the summary counts the
/// failovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_dead_data_plane_succeeds_and_counts_failovers_in_the_summary() {
    let (closed, b) = (closed_address(), data_plane().await);
    let api = control_plane(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = RunConfig {
        workload: Workload::Rps(RpsWorkload {
            rate: 20.0,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            functions: 2,
            arrivals: Default::default(),
            runtime_ms: 1,
            memory_mib: 1,
        }),
        target: TargetConfig::Dirigent {
            api: api.address.clone(),
            proxy: format!("{closed};{}", b.address),
            image: "image".into(),
            min_scale: 0,
            max_scale: 0,
        },
        output: dir.path().join("run"),
        ..RunConfig::default()
    };
    let report = loader::run::run(&config, StopSignal::new()).await.unwrap();
    assert!(report.replay.sent > 0);
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    let counts = &summary.overall.counts;
    assert_eq!(counts.ok, counts.measured, "{counts:?}");
    assert!(counts.failovers > 0, "{counts:?}");
    let per_function: u64 = summary.functions.iter().map(|f| f.counts.failovers).sum();
    assert_eq!(per_function, counts.failovers, "the functions' failovers add up to the run's");
}
