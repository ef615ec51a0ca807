//! Connections from the proxy to sandboxes, owned by the proxy so that it knows when a request provably did
//! not reach a sandbox (and may go to another one) and when it may have (and must not be sent twice).
//!
//! HTTP/1.1: idle connections are kept per endpoint and reused; a connection goes back to the idle list once
//! hyper says it is ready for the next request (the response body read to its end). HTTP/2 (h2c, gRPC): one
//! shared, multiplexed connection per endpoint. Each connection is driven by a task of its own on the serving
//! thread's runtime. Both kinds of list are bounded, so memory does not grow with the run or the cluster.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Idle HTTP/1.1 connections kept per endpoint; more than this many concurrent requests to one sandbox
/// open connections that close after their request.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// Endpoints with kept connections; past it, lists whose connections all closed are swept, and if none
/// was, a new endpoint's connection is not kept.
const MAX_ENDPOINTS: usize = 4096;

/// The HTTP version a request goes to its sandbox with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, one request at a time per connection.
    Http1,
    /// HTTP/2 without TLS (h2c), multiplexed on one connection.
    Http2,
}

/// Why a request to a sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// connecting to the sandbox failed
    #[error("cannot connect to sandbox at {address}: {source}")]
    Connect {
        /// The sandbox's address.
        address: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// connecting to the sandbox did not finish in time
    #[error("connecting to sandbox at {address} did not finish within {waited:?}")]
    ConnectTimeout {
        /// The sandbox's address.
        address: SocketAddr,
        /// How long the proxy waited.
        waited: Duration,
    },
    /// the HTTP/2 handshake failed
    #[error("HTTP/2 handshake with sandbox at {address} failed (does it speak h2c?): {source}")]
    Handshake {
        /// The sandbox's address.
        address: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
    /// the connection failed while the request was under way or before it started
    #[error("the connection to sandbox at {address} failed: {source}")]
    Exchange {
        /// The sandbox's address.
        address: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
}

/// A request that got no response.
#[derive(Debug)]
pub enum SendError {
    /// The request provably did not reach the sandbox, and the sandbox is unreachable (refused, reset or
    /// unreachable connection, or a new connection closed before the request was written): here it is back.
    NotSent {
        /// The request, untouched (boxed: this is the rare path, and the enum stays small on the common one).
        request: Box<Request<Incoming>>,
        /// What happened.
        cause: UpstreamError,
    },
    /// The request may have reached the sandbox (or failed for a reason of this host's own): never resend it.
    Failed(UpstreamError),
}

/// The proxy's connections to sandboxes, by endpoint address.
#[derive(Default)]
pub struct Upstreams {
    pools: Mutex<Pools>,
}

#[derive(Default)]
struct Pools {
    http1: HashMap<SocketAddr, Vec<http1::SendRequest<Incoming>>>,
    http2: HashMap<SocketAddr, http2::SendRequest<Incoming>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools = self.pools();
        f.debug_struct("Upstreams")
            .field("http1_endpoints", &pools.http1.len())
            .field("http2_endpoints", &pools.http2.len())
            .finish()
    }
}

impl Upstreams {
    /// Sends `request` to the sandbox at `address` over a kept connection or a new one (connecting for up
    /// to `connect_timeout`), and returns its response head.
    ///
    /// The request's URI must be origin-form with a `Host` header for HTTP/1.1, absolute for HTTP/2.
    pub async fn send(
        self: &Arc<Self>,
        protocol: Protocol,
        address: SocketAddr,
        request: Request<Incoming>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        match protocol {
            Protocol::Http1 => self.send_http1(address, request, connect_timeout).await,
            Protocol::Http2 => self.send_http2(address, request, connect_timeout).await,
        }
    }

    async fn send_http1(
        self: &Arc<Self>,
        address: SocketAddr,
        mut request: Request<Incoming>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        // A kept connection the sandbox closed since gives the request back: try the next, then a new one.
        while let Some(mut sender) = self.idle_http1(address) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.recycle_http1(address, sender);
                    return Ok(response);
                }
                Err(err) => request = not_sent_again(address, err)?,
            }
        }
        let stream = match connect(address, connect_timeout).await {
            Ok(stream) => stream,
            Err(cause) => return Err(connect_failed(request, cause)),
        };
        let (mut sender, connection) = match http1::handshake(TokioIo::new(stream)).await {
            Ok(handshaken) => handshaken,
            Err(source) => return Err(SendError::Failed(UpstreamError::Exchange { address, source })),
        };
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%address, %err, "HTTP/1.1 connection to a sandbox ended");
            }
        });
        match sender.try_send_request(request).await {
            Ok(response) => {
                self.recycle_http1(address, sender);
                Ok(response)
            }
            Err(err) => Err(fresh_failed(address, err)),
        }
    }

    async fn send_http2(
        self: &Arc<Self>,
        address: SocketAddr,
        mut request: Request<Incoming>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        if let Some(mut sender) = self.shared_http2(address) {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(err) => {
                    self.pools().http2.remove(&address);
                    request = not_sent_again(address, err)?;
                }
            }
        }
        let stream = match connect(address, connect_timeout).await {
            Ok(stream) => stream,
            Err(cause) => return Err(connect_failed(request, cause)),
        };
        let (mut sender, connection) = match http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await {
            Ok(handshaken) => handshaken,
            Err(source) => return Err(SendError::Failed(UpstreamError::Handshake { address, source })),
        };
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%address, %err, "HTTP/2 connection to a sandbox ended");
            }
        });
        self.keep_http2(address, sender.clone());
        sender.try_send_request(request).await.map_err(|err| fresh_failed(address, err))
    }

    fn pools(&self) -> MutexGuard<'_, Pools> {
        // The lists stay consistent whatever panicked while one was held.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept HTTP/1.1 connection to `address` that is still open, taken off the idle list.
    fn idle_http1(&self, address: SocketAddr) -> Option<http1::SendRequest<Incoming>> {
        let mut pools = self.pools();
        let idle = pools.http1.get_mut(&address)?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        pools.http1.remove(&address);
        None
    }

    /// The shared HTTP/2 connection to `address`, if it is still open.
    fn shared_http2(&self, address: SocketAddr) -> Option<http2::SendRequest<Incoming>> {
        let mut pools = self.pools();
        match pools.http2.get(&address) {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                pools.http2.remove(&address);
                None
            }
            None => None,
        }
    }

    /// Puts the connection back on the idle list once it can take the next request; hyper gets there when
    /// the response body has been read to its end, and never if it was dropped (the connection then closes).
    fn recycle_http1(self: &Arc<Self>, address: SocketAddr, mut sender: http1::SendRequest<Incoming>) {
        let upstreams = Arc::clone(self);
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                upstreams.keep_http1(address, sender);
            }
        });
    }

    fn keep_http1(&self, address: SocketAddr, sender: http1::SendRequest<Incoming>) {
        let mut pools = self.pools();
        if has_room(&mut pools.http1, address, |idle| idle.iter().any(|s| !s.is_closed())) {
            let idle = pools.http1.entry(address).or_default();
            idle.retain(|s| !s.is_closed());
            if idle.len() < MAX_IDLE_PER_ENDPOINT {
                idle.push(sender);
            }
        }
    }

    fn keep_http2(&self, address: SocketAddr, sender: http2::SendRequest<Incoming>) {
        let mut pools = self.pools();
        if has_room(&mut pools.http2, address, |shared| !shared.is_closed()) {
            pools.http2.insert(address, sender);
        }
    }
}

/// Whether `map` may keep connections for `address`; when full, first forgets endpoints with none open.
fn has_room<V>(map: &mut HashMap<SocketAddr, V>, address: SocketAddr, is_open: impl Fn(&V) -> bool) -> bool {
    if map.contains_key(&address) || map.len() < MAX_ENDPOINTS {
        return true;
    }
    map.retain(|_, kept| is_open(kept));
    map.len() < MAX_ENDPOINTS
}

async fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(UpstreamError::Connect { address, source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout { address, waited: timeout }),
    };
    // Requests and responses are small and latency-bound; Nagle would hold them back.
    stream.set_nodelay(true).map_err(|source| UpstreamError::Connect { address, source })?;
    Ok(stream)
}

/// A failed connect: the request was not sent; whether the sandbox is gone depends on why.
fn connect_failed(request: Request<Incoming>, cause: UpstreamError) -> SendError {
    let unreachable = match &cause {
        UpstreamError::Connect { source, .. } => matches!(
            source.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
        ),
        UpstreamError::ConnectTimeout { .. } => true,
        UpstreamError::Handshake { .. } | UpstreamError::Exchange { .. } => false,
    };
    if unreachable { SendError::NotSent { request: Box::new(request), cause } } else { SendError::Failed(cause) }
}

/// A kept connection failed: the request comes back to try a new connection when hyper never started it.
fn not_sent_again(
    address: SocketAddr,
    mut err: TrySendError<Request<Incoming>>,
) -> Result<Request<Incoming>, SendError> {
    match err.take_message() {
        Some(request) => Ok(request),
        None => Err(SendError::Failed(UpstreamError::Exchange { address, source: err.into_error() })),
    }
}

/// A new connection failed: if hyper gives the request back, it never left, and the sandbox is gone.
fn fresh_failed(address: SocketAddr, mut err: TrySendError<Request<Incoming>>) -> SendError {
    let request = err.take_message();
    let cause = UpstreamError::Exchange { address, source: err.into_error() };
    match request {
        Some(request) => SendError::NotSent { request: Box::new(request), cause },
        None => SendError::Failed(cause),
    }
}
