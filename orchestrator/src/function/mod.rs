//! The workload function every benchmark deploys (binary `trace-function`).
//!
//! One port serves HTTP/1.1, cleartext HTTP/2 (prior knowledge) and gRPC (`faas.Executor/Execute`). `GET /health`
//! is the readiness probe; any other request is an invocation whose parameters come from the headers (or the query)
//! named in [`contracts::workload`]: spin the CPU for `requested_cpu` ms against the clock while holding `requested_memory` MiB with
//! every page written, then reply with Dirigent's JSON ([`contracts::workload::FunctionReply`]).

mod grpc;
mod http;
pub mod instance;
pub mod lambda;
pub mod params;
pub mod work;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::proto::faas::executor_server::ExecutorServer;
pub use instance::{Instance, InvokeError};
pub use params::{Invocation, ParamError, Workload};

/// Why the function stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The listener has no local address (it is not bound).
    #[error("cannot read the listener's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// The server failed while accepting or serving connections.
    #[error("serving on {addr} failed: {source}")]
    Serve {
        /// The address served.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The function's routes (HTTP and gRPC) for a fresh process state, to embed the function in another server.
pub fn router() -> axum::Router {
    router_for(Arc::new(Instance::default()))
}

/// The function's routes (HTTP and gRPC) serving `instance`.
pub fn router_for(instance: Arc<Instance>) -> axum::Router {
    let grpc = ExecutorServer::new(grpc::FaasExecutor::new(Arc::clone(&instance)));
    // tonic's router answers its own paths and falls back to the HTTP routes for everything else.
    Routes::new(grpc).into_axum_router().fallback_service(http::routes(instance))
}

/// Serves the function on `listener` until `shutdown` completes, then waits for in-flight invocations.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FunctionError> {
    let addr = listener.local_addr().map_err(FunctionError::LocalAddr)?;
    tracing::info!(%addr, "trace-function serving HTTP/1.1, h2c and gRPC");
    let listener = listener.tap_io(|stream| {
        // Replies are small and latency is what the benchmarks measure.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| FunctionError::Serve { addr, source })
}
