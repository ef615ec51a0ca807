//! The proxy over real sockets on 127.0.0.1: a sandbox that refuses connections is failed over, one that may
//! have received the request is not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::data_plane::balancer::LoadBalancing;
use crate::data_plane::endpoints::{EndpointSpec, FunctionTable, Version};
use crate::test_util::cold_starts::FakeColdStarts;

const LONG: Duration = Duration::from_secs(10);

/// Cancels every server of a test when it ends, also when it fails.
struct Servers(CancellationToken);

impl Drop for Servers {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A sandbox-like HTTP server (HTTP/1.1 and h2c) that answers 200 and counts the requests it got.
async fn live_sandbox(shutdown: &CancellationToken) -> (SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let make_handler = move || {
        let calls = Arc::clone(&counted);
        move |_request: Request<Incoming>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"served")))) }
        }
    };
    tokio::spawn(crate::net::serve_http(listener, 0, shutdown.clone(), make_handler));
    (address, calls)
}

/// A port on 127.0.0.1 with nothing listening: connecting is refused.
async fn refusing_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A server that reads a request's headers and then closes the connection without answering: the request
/// may have reached the sandbox. Counts the requests it read.
async fn closing_sandbox(shutdown: &CancellationToken) -> (SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (counted, shutdown) = (Arc::clone(&calls), shutdown.clone());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted { Ok(accepted) => accepted, Err(_) => return },
                () = shutdown.cancelled() => return,
            };
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            drop(stream);
        }
    });
    (address, calls)
}

/// The proxy serving on 127.0.0.1 over a table with function `f` at `endpoints` (concurrency 1 each, least
/// in flight, so the first listed is tried first).
async fn proxy(shutdown: &CancellationToken, endpoints: &[SocketAddr]) -> (SocketAddr, Arc<FunctionTable>) {
    let table = Arc::new(FunctionTable::new(LoadBalancing::LeastInFlight));
    let specs = endpoints
        .iter()
        .enumerate()
        .map(|(i, address)| EndpointSpec {
            sandbox_id: format!("f-{i}"),
            address: *address,
            creation: Duration::ZERO,
            steps: Vec::new(),
        })
        .collect();
    table.sync("f", Version { incarnation: 1, generation: 1 }, 1, specs, LONG).await;
    let cold_starts = Arc::new(FakeColdStarts::default()) as Arc<dyn ColdStartRequester>;
    let proxy = Arc::new(Proxy::new(Arc::clone(&table), cold_starts, LONG, LONG));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let make_handler = move || {
        let proxy = Arc::clone(&proxy);
        move |request| Arc::clone(&proxy).handle(request)
    };
    tokio::spawn(crate::net::serve_http(listener, 0, shutdown.clone(), make_handler));
    (address, table)
}

async fn call(client: &reqwest::Client, proxy: SocketAddr) -> (StatusCode, String) {
    let response = client.get(format!("http://{proxy}/function/f/")).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn every_request_goes_to_the_live_sandbox_when_another_refuses_connections() {
    let http2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    for (protocol, client) in [("HTTP/1.1", reqwest::Client::new()), ("HTTP/2", http2)] {
        let servers = Servers(CancellationToken::new());
        let (live, served) = live_sandbox(&servers.0).await;
        let (proxy, table) = proxy(&servers.0, &[refusing_port().await, live]).await;
        for _ in 0..10 {
            assert_eq!(call(&client, proxy).await, (StatusCode::OK, "served".to_owned()), "{protocol}");
        }
        assert_eq!(served.load(Ordering::SeqCst), 10, "{protocol}: each request reached the live sandbox once");
        let counters = &table.get("f").unwrap().counters;
        let snapshot = counters.take();
        assert_eq!(snapshot.failovers, 1, "{protocol}: the refusing sandbox was tried once, then marked down");
        assert_eq!((snapshot.invocations, snapshot.failures), (10, 0), "{protocol}: a failed-over request counts once");
    }
}

#[tokio::test]
async fn a_request_that_may_have_reached_a_sandbox_is_answered_502_and_not_sent_again() {
    let servers = Servers(CancellationToken::new());
    let (closing, read) = closing_sandbox(&servers.0).await;
    let (live, served) = live_sandbox(&servers.0).await;
    let (proxy, table) = proxy(&servers.0, &[closing, live]).await;
    let (status, _) = call(&reqwest::Client::new(), proxy).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(read.load(Ordering::SeqCst), 1, "the closing sandbox read the request once");
    assert_eq!(served.load(Ordering::SeqCst), 0, "and it went nowhere else");
    let counters = &table.get("f").unwrap().counters;
    let snapshot = counters.take();
    assert_eq!((snapshot.failovers, snapshot.failures), (0, 1));
}
