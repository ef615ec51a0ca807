//! Liveness by attachment: a worker or data plane registers on a long-lived stream and stays registered
//! while the stream lasts. Each attachment holds a numbered lease on its peer's registration, so that the
//! end of a stream a newer one replaced (the peer reconnected) leaves the newer registration alone, and a
//! registration dropped for any reason (deadline, replacement) ends the stream that held it.

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Core, PeerError};
use crate::proto::dirigent::{DataPlaneInfo, WorkerInfo};

/// The peer a lease is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeasedPeer {
    /// A worker, by name.
    Worker(String),
    /// A data plane, by name.
    DataPlane(String),
}

impl fmt::Display for LeasedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Worker(name) => write!(f, "worker {name}"),
            Self::DataPlane(name) => write!(f, "data plane {name}"),
        }
    }
}

/// One attachment's hold on its peer's registration.
#[derive(Debug, Clone)]
pub struct Lease {
    peer: LeasedPeer,
    registration: u64,
    released: CancellationToken,
}

impl Lease {
    /// Who holds it.
    pub fn peer(&self) -> &LeasedPeer {
        &self.peer
    }

    /// Its number; a newer registration of the same peer has a larger one.
    pub fn registration(&self) -> u64 {
        self.registration
    }

    /// Resolves once the registration is gone: dropped (deadline, stream end) or replaced by a newer one.
    pub async fn released(&self) {
        self.released.cancelled().await;
    }
}

/// The members' side of a lease: dropping it (with the member's record) releases the lease.
pub(super) struct HeldLease {
    registration: u64,
    _release: DropGuard,
}

impl HeldLease {
    /// A held lease and the attachment's handle on it.
    pub(super) fn new(peer: LeasedPeer, registration: u64) -> (Self, Lease) {
        let released = CancellationToken::new();
        let lease = Lease { peer, registration, released: released.clone() };
        (Self { registration, _release: released.drop_guard() }, lease)
    }

    pub(super) fn registration(&self) -> u64 {
        self.registration
    }
}

impl Core {
    /// Registers (or re-registers) a worker for an attachment; the lease lasts until the registration goes.
    pub fn attach_worker(self: &Arc<Self>, info: WorkerInfo) -> Result<Lease, PeerError> {
        let peer = LeasedPeer::Worker(info.name.clone());
        self.register_worker(info)?;
        self.lease(peer)
    }

    /// Registers (or re-registers) a data plane for an attachment; the lease lasts until the registration goes.
    pub fn attach_data_plane(self: &Arc<Self>, info: DataPlaneInfo) -> Result<Lease, PeerError> {
        let peer = LeasedPeer::DataPlane(info.name.clone());
        self.register_data_plane(info)?;
        self.lease(peer)
    }

    fn lease(&self, peer: LeasedPeer) -> Result<Lease, PeerError> {
        // Gone already only if dropped in between, by a racing attachment's end or an expiry.
        let lease = self.locked().members.lease(&peer);
        lease.ok_or_else(|| PeerError::Unknown(peer.to_string()))
    }

    /// Notes a heartbeat on an attachment; `Unknown` when its lease no longer holds the registration.
    pub fn attached_heartbeat(self: &Arc<Self>, lease: &Lease, sandboxes: u32) -> Result<(), PeerError> {
        let now = self.clock.now();
        let reconcile = self.locked().members.leased_heartbeat(lease, sandboxes, now)?;
        if let (true, LeasedPeer::Worker(name)) = (reconcile, lease.peer()) {
            let (core, name) = (Arc::clone(self), name.clone());
            tokio::spawn(async move { core.reconcile_worker(&name).await });
        }
        Ok(())
    }

    /// An attachment ended (`why`): its peer is dropped at once, as an expired one is, unless a newer
    /// registration replaced the one it held.
    pub fn detach(self: &Arc<Self>, lease: &Lease, why: &str) {
        let mut state = self.locked();
        let dropped = state.members.remove_leased(lease);
        self.forget_peers(&mut state, &dropped, why);
    }
}
