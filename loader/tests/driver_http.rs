//! Replays hand-made schedules through the driver and the HTTP target against a tiny local HTTP server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use loader::driver::{DriverOptions, StopSignal, replay};
use loader::record::{InvocationRecord, Outcome};
use loader::schedule::{Invocation, Phase};
use loader::target::Target;
use loader::target::http::{HttpTarget, HttpTargetConfig};
use tokio::net::TcpListener;

/// How the test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// JSON reply with the requested CPU as ExecutionTime, after `delay`.
    Reply { delay: Duration },
    /// Never answers.
    Hang,
}

struct Server {
    addr: SocketAddr,
    max_concurrent: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

/// Starts a server on 127.0.0.1:0; it is listening when this returns (the socket is bound).
async fn start_server(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let current = Arc::new(AtomicUsize::new(0));
    let max_concurrent = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (cur, max, reqs) = (current.clone(), max_concurrent.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (cur, max, reqs) = (cur.clone(), max.clone(), reqs.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (cur, max, reqs) = (cur.clone(), max.clone(), reqs.clone());
                    async move {
                        reqs.fetch_add(1, Ordering::SeqCst);
                        let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let header = |name: &str| {
                            req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
                        };
                        let (cpu, function, workload) =
                            (header("requested_cpu"), header("function"), header("workload"));
                        match behaviour {
                            Behaviour::Reply { delay } => tokio::time::sleep(delay).await,
                            Behaviour::Hang => std::future::pending::<()>().await,
                        }
                        cur.fetch_sub(1, Ordering::SeqCst);
                        let cpu_ms: u64 = cpu.parse().unwrap_or(0);
                        let body = format!(
                            r#"{{"Status":"OK","Function":"{function}","Workload":"{workload}","ExecutionTime":{},"MemoryUsageKb":2048,"ColdStart":false}}"#,
                            cpu_ms * 1000
                        );
                        let response = Response::builder()
                            .header("server-timing", r#"queue;dur=0.5, coldstart;desc="none", proxy;dur=0.1"#)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Server { addr, max_concurrent, requests }
}

fn invocation(i: u32, functions: u32, offset_us: u64) -> Invocation {
    Invocation {
        function: i % functions,
        minute: 0,
        index_in_minute: i,
        intended_offset_us: offset_us,
        runtime_ms: 1 + i % 5,
        memory_mib: 128,
        phase: if i < 10 { Phase::Warmup } else { Phase::Measured },
    }
}

fn names(n: u32) -> Arc<Vec<String>> {
    Arc::new((0..n).map(|i| format!("fn-{i}")).collect())
}

fn http_target(url: String, timeout: Option<Duration>) -> Arc<dyn Target> {
    let mut config = HttpTargetConfig::new(url);
    config.request_timeout = timeout;
    Arc::new(HttpTarget::new(config).unwrap())
}

async fn run(
    target: Arc<dyn Target>,
    schedule: Vec<Invocation>,
    functions: u32,
    options: DriverOptions,
) -> (loader::driver::ReplayStats, Vec<InvocationRecord>) {
    let mut records = Vec::new();
    let stats = replay(target, names(functions), schedule.into_iter(), options, StopSignal::new(), |r| records.push(r))
        .await
        .unwrap();
    (stats, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_a_steady_schedule_with_one_record_per_invocation() {
    let server = start_server(Behaviour::Reply { delay: Duration::ZERO }).await;
    let target = http_target(format!("http://{}/function/{{function}}", server.addr), Some(Duration::from_secs(30)));
    // 300 invocations over 1.5 s: one every 5 ms, across 3 functions.
    let schedule: Vec<Invocation> = (0..300).map(|i| invocation(i, 3, u64::from(i) * 5_000)).collect();
    let (stats, records) = run(target, schedule.clone(), 3, DriverOptions::default()).await;

    assert_eq!(records.len(), schedule.len());
    assert_eq!(stats.sent, 300);
    assert_eq!(stats.completed, 300);
    assert_eq!(stats.ok, 300);
    assert_eq!(stats.failed, 0);
    assert_eq!(stats.abandoned, 0);
    assert!(!stats.stopped);
    assert_eq!(server.requests.load(Ordering::SeqCst), 300);

    let by_key: HashMap<(u32, u32, u32), &InvocationRecord> =
        records.iter().map(|r| ((r.function, r.minute, r.index_in_minute), r)).collect();
    assert_eq!(by_key.len(), 300, "every invocation exactly once");
    let mut max_lag = 0;
    for inv in &schedule {
        let r = by_key[&(inv.function, inv.minute, inv.index_in_minute)];
        assert_eq!(r.outcome, Outcome::Ok);
        assert_eq!(r.phase, inv.phase);
        assert_eq!(r.intended_unix_us - stats.start_unix_us, inv.intended_offset_us);
        assert!(r.sent_unix_us >= r.intended_unix_us);
        assert_eq!(r.requested_duration_us, u64::from(inv.runtime_ms) * 1000);
        assert_eq!(r.requested_memory_mib, 128);
        assert_eq!(r.actual_duration_us, Some(u64::from(inv.runtime_ms) * 1000), "server echoes requested_cpu");
        assert_eq!(r.actual_memory_mib, Some(2));
        assert_eq!(r.cold_start, Some(false));
        assert_eq!(r.breakdown.queue_us, Some(500));
        assert_eq!(r.breakdown.proxy_us, Some(100));
        // The response ends after it was sent, and response time counts from the intended time.
        assert!(r.intended_unix_us + r.response_time_us >= r.sent_unix_us);
        max_lag = max_lag.max(r.send_lag_us());
    }
    assert_eq!(stats.max_send_lag_us, max_lag);
    eprintln!("steady replay: max send lag {} µs (informational, not asserted)", stats.max_send_lag_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_bound_delays_but_never_drops() {
    let server = start_server(Behaviour::Reply { delay: Duration::from_millis(5) }).await;
    let target = http_target(format!("http://{}/{{function}}", server.addr), None);
    // 100 invocations all due at once, at most 4 in flight.
    let schedule: Vec<Invocation> = (0..100).map(|i| invocation(i, 2, 0)).collect();
    let options = DriverOptions { max_in_flight: 4, ..DriverOptions::default() };
    let (stats, records) = run(target, schedule, 2, options).await;
    assert_eq!(records.len(), 100);
    assert_eq!(stats.ok, 100);
    assert!(server.max_concurrent.load(Ordering::SeqCst) <= 4);
    assert!(stats.max_send_lag_us > 0, "waiting for a slot shows as send lag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_gives_timeouts() {
    let server = start_server(Behaviour::Hang).await;
    let target = http_target(format!("http://{}/{{function}}", server.addr), Some(Duration::from_millis(200)));
    let schedule: Vec<Invocation> = (0..5).map(|i| invocation(i, 1, u64::from(i) * 1_000)).collect();
    let (stats, records) = run(target, schedule, 1, DriverOptions::default()).await;
    assert_eq!(records.len(), 5);
    assert_eq!(stats.failed, 5);
    for r in &records {
        assert_eq!(r.outcome, Outcome::Timeout);
        assert_eq!(r.response_time_us, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_timeout_applies_to_any_target() {
    let server = start_server(Behaviour::Hang).await;
    let target = http_target(format!("http://{}/{{function}}", server.addr), None);
    let schedule: Vec<Invocation> = (0..3).map(|i| invocation(i, 1, 0)).collect();
    let options = DriverOptions { request_timeout: Some(Duration::from_millis(100)), ..DriverOptions::default() };
    let (_, records) = run(target, schedule, 1, options).await;
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.outcome == Outcome::Timeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_gives_connection_failed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let target = http_target(format!("http://{addr}/{{function}}"), Some(Duration::from_secs(10)));
    let schedule: Vec<Invocation> = (0..4).map(|i| invocation(i, 2, u64::from(i) * 1_000)).collect();
    let (stats, records) = run(target, schedule, 2, DriverOptions::default()).await;
    assert_eq!(records.len(), 4);
    assert_eq!(stats.failed, 4);
    for r in &records {
        assert!(matches!(&r.outcome, Outcome::ConnectionFailed(msg) if !msg.is_empty()), "{:?}", r.outcome);
        assert_eq!(r.outcome.label(), "connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_ends_sending_and_drains_in_flight() {
    let server = start_server(Behaviour::Reply { delay: Duration::ZERO }).await;
    let target = http_target(format!("http://{}/{{function}}", server.addr), Some(Duration::from_secs(30)));
    // A schedule far longer than the test: one invocation every 10 ms for 1000 s.
    let schedule = (0..100_000).map(|i| invocation(i, 1, u64::from(i) * 10_000));
    let stop = StopSignal::new();
    let stopper = stop.clone();
    let mut records = Vec::new();
    let stats = replay(target, names(1), schedule, DriverOptions::default(), stop, |r| {
        records.push(r);
        if records.len() == 5 {
            stopper.stop();
        }
    })
    .await
    .unwrap();
    assert!(stats.stopped);
    assert!(records.len() >= 5);
    assert_eq!(stats.sent, records.len() as u64 + stats.abandoned);
    assert!(stats.sent < 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_abandons_after_drain_timeout() {
    let server = start_server(Behaviour::Hang).await;
    let target = http_target(format!("http://{}/{{function}}", server.addr), None);
    let schedule = (0..3).map(|i| invocation(i, 1, 0));
    let stop = StopSignal::new();
    let options = DriverOptions { drain_timeout: Duration::from_millis(100), ..DriverOptions::default() };
    let stopper = stop.clone();
    let requests = server.requests.clone();
    // Fire the stop once the server has seen all three requests.
    tokio::spawn(async move {
        while requests.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        stopper.stop();
    });
    let mut records = Vec::new();
    let stats = replay(target, names(1), schedule, options, stop, |r| records.push(r)).await.unwrap();
    assert!(records.is_empty());
    assert_eq!(stats.sent, 3);
    assert_eq!(stats.abandoned, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_function_index_is_an_error() {
    let server = start_server(Behaviour::Reply { delay: Duration::ZERO }).await;
    let target = http_target(format!("http://{}/{{function}}", server.addr), None);
    let schedule = vec![invocation(0, 1, 0), Invocation { function: 7, ..invocation(1, 1, 0) }];
    let result =
        replay(target, names(1), schedule.into_iter(), DriverOptions::default(), StopSignal::new(), |_| {}).await;
    assert!(matches!(result, Err(loader::driver::DriverError::UnknownFunction { index: 7, known: 1 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_with_host_template() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|v| v.to_str().ok())
                        .or_else(|| req.uri().authority().map(|a| a.as_str()))
                        .unwrap_or("")
                        .to_string();
                    let version = format!("{:?}", req.version());
                    let body = format!(r#"{{"Status":"OK","ExecutionTime":1,"Host":"{host}","Version":"{version}"}}"#);
                    let status = if host == "fn-0" && version == "HTTP/2.0" { 200 } else { 400 };
                    Ok::<_, Infallible>(Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap())
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut config = HttpTargetConfig::new(format!("http://{addr}/"));
    config.host_template = Some("{function}".into());
    config.http2_prior_knowledge = true;
    config.request_timeout = Some(Duration::from_secs(30));
    let target: Arc<dyn Target> = Arc::new(HttpTarget::new(config).unwrap());
    let schedule: Vec<Invocation> = (0..20).map(|i| invocation(i, 1, u64::from(i) * 1_000)).collect();
    let (stats, records) = run(target, schedule, 1, DriverOptions::default()).await;
    assert_eq!(records.len(), 20);
    assert_eq!(stats.ok, 20, "{:?}", records.iter().find(|r| !r.outcome.is_ok()).map(|r| &r.outcome));
}
