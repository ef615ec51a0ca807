//! Transport helpers shared by the roles: HTTP serving with graceful shutdown, gRPC channels, addresses.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binding a listening socket failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({what}): {source}")]
pub struct BindError {
    /// What was to listen there.
    pub what: &'static str,
    /// The address.
    pub address: SocketAddr,
    /// The cause.
    pub source: std::io::Error,
}

/// Binds `address` for `what`, naming both in the error.
pub async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(address).await.map_err(|source| BindError { what, address, source })
}

/// The address peers should use: the bound port, with `host` when listening on all interfaces.
pub fn advertised(listener: &TcpListener, host: &str) -> String {
    let bound = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    if bound.ip().is_unspecified() { format!("{host}:{}", bound.port()) } else { bound.to_string() }
}

/// Serves HTTP/1.1 and h2c on `listener` until `shutdown`, then lets open connections finish.
///
/// One task accepts; `threads` single-threaded runtimes, each on its own OS thread, serve the connections
/// (handed out in turn); with `threads` 0 the caller's runtime serves them. A connection's request handling and the handler's own upstream connections then
/// stay on one thread, with no wake-ups across cores on the per-request path. `make_handler` builds one
/// handler per thread, so per-thread state such as connection pools is not shared.
pub async fn serve_http<H, F, Fut, B>(
    listener: TcpListener,
    threads: usize,
    shutdown: CancellationToken,
    make_handler: H,
) where
    H: Fn() -> F,
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, std::convert::Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut lanes = Vec::new();
    let mut finished = Vec::new();
    if threads == 0 {
        // No threads of its own: connections are served by the caller's runtime.
        let (lane, connections) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (handler, shutdown) = (make_handler(), shutdown.clone());
        tokio::spawn(async move {
            serve_lane(connections, shutdown, handler).await;
            let _ = done.send(());
        });
        lanes.push(lane);
        finished.push(done_rx);
    }
    for index in 0..threads {
        let (lane, connections) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (handler, shutdown) = (make_handler(), shutdown.clone());
        let spawned = std::thread::Builder::new().name(format!("http-{index}")).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(serve_lane(connections, shutdown, handler)),
                Err(err) => tracing::error!(%err, "cannot start an HTTP serving thread"),
            }
            let _ = done.send(());
        });
        match spawned {
            Ok(_) => {
                lanes.push(lane);
                finished.push(done_rx);
            }
            Err(err) => tracing::error!(%err, "cannot start an HTTP serving thread"),
        }
    }
    accept_into(&listener, &lanes, &shutdown).await;
    drop(lanes);
    for done in finished {
        let _ = done.await;
    }
}

/// Accepts connections and hands them to the lanes in turn until `shutdown`.
async fn accept_into(
    listener: &TcpListener,
    lanes: &[tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>],
    shutdown: &CancellationToken,
) {
    let mut next = 0;
    while !lanes.is_empty() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let stream = match accepted.and_then(|(stream, _)| {
            stream.set_nodelay(true)?;
            stream.into_std()
        }) {
            Ok(stream) => stream,
            Err(err) => {
                // Running out of file descriptors is transient; back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = lanes[next % lanes.len()].send(stream);
        next += 1;
    }
}

/// One serving thread's loop: serve the connections it is handed, then drain them at shutdown.
async fn serve_lane<F, Fut, B>(
    mut connections: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, std::convert::Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            stream = connections.recv() => match stream { Some(stream) => stream, None => break },
            () = shutdown.cancelled() => break,
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { continue };
        let connection = builder.serve_connection(TokioIo::new(stream), service_fn(handler.clone())).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::debug!("connections still open at shutdown");
    }
}

/// A peer's address is not a valid URI.
#[derive(Debug, thiserror::Error)]
#[error("invalid address '{address}': {source}")]
pub struct AddressError {
    /// The address.
    pub address: String,
    /// The cause.
    pub source: tonic::transport::Error,
}

/// A gRPC channel to `address` (`host:port` or a URI) that connects on first use and reconnects.
pub fn channel(address: &str) -> Result<tonic::transport::Channel, AddressError> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|source| AddressError { address: address.to_owned(), source })?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}

/// Exponential backoff for retry loops against a peer that may not be up yet.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at 20 ms and doubles up to `max`.
    pub fn new(max: Duration) -> Self {
        Self { next: Duration::from_millis(20), max }
    }

    /// Waits the current delay (or until `shutdown`); returns false when shut down.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = shutdown.cancelled() => false,
        }
    }
}
