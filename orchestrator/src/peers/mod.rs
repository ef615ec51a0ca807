//! The roles' calls to each other, one small trait per caller and callee: the control plane's calls to
//! workers ([`WorkerPeer`]) and to data planes ([`DataPlanePeer`]), reached through a [`PeerConnector`];
//! the workers' ([`WorkerUplink`]) and data planes' ([`DataPlaneUplink`]) calls to the control plane.
//!
//! Each trait has its gRPC adapter here and a recording fake in `test_util::peers` (feature
//! `test-util`), so the logic that decides what to send is unit-tested without sockets. The messages are
//! the protos': a port is its gRPC service as one side sees it, nothing more.

pub mod attach;
mod control_plane;
mod data_plane;
mod worker;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::net::AddressError;
pub use control_plane::{DataPlaneUplink, GrpcControlPlane, WorkerUplink};
pub use data_plane::{DataPlanePeer, GrpcDataPlane};
pub use worker::{GrpcWorker, WorkerPeer};

/// One call to a peer: its reply, or the status it failed with.
pub type Call<'a, T> = BoxFuture<'a, Result<T, tonic::Status>>;

/// Reaches the workers and data planes that register with the control plane, by their address.
pub trait PeerConnector: Send + Sync + 'static {
    /// The worker whose gRPC service is at `address` (`host:port` or a URI).
    fn worker(&self, address: &str) -> Result<Arc<dyn WorkerPeer>, AddressError>;
    /// The data plane whose gRPC service is at `address`.
    fn data_plane(&self, address: &str) -> Result<Arc<dyn DataPlanePeer>, AddressError>;
}

/// Connects over gRPC, lazily: a channel connects on its first call and reconnects after a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcConnector;

impl PeerConnector for GrpcConnector {
    fn worker(&self, address: &str) -> Result<Arc<dyn WorkerPeer>, AddressError> {
        Ok(Arc::new(GrpcWorker::new(crate::net::channel(address)?)))
    }

    fn data_plane(&self, address: &str) -> Result<Arc<dyn DataPlanePeer>, AddressError> {
        Ok(Arc::new(GrpcDataPlane::new(crate::net::channel(address)?)))
    }
}

/// Calls one unary method on a clone of a tonic client (a clone is a cheap handle on the same channel),
/// answering with the reply message.
macro_rules! unary {
    ($client:expr, $method:ident, $request:expr) => {{
        let mut client = $client.clone();
        let request = $request;
        futures_util::FutureExt::boxed(async move { client.$method(request).await.map(tonic::Response::into_inner) })
    }};
}
use unary;
