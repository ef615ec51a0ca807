//! Replicas of the registry in one process over real loopback gRPC, each with its SQLite file in a folder the
//! caller owns (a temporary one): start them, find the leader (waiting on openraft's metrics, never on a clock), stop one, restart one
//! from its files. For tests and benchmarks of the replicated registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use contracts::config::{ReplicationConfig, SqliteStoreConfig, Synchronous};
use futures_util::future::select_all;
use openraft::ServerState;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::script::PATIENCE;
use crate::control_plane::replication::types::{NodeId, Raft};
use crate::control_plane::replication::{RaftService, ReplicatedStore};
use crate::proto::dirigent::raft_server::RaftServer;

/// Waits until every one of `rafts` names the same one of them as leader, and that one's own metrics say it
/// leads; panics after [`PATIENCE`], showing what each saw.
pub async fn agreed_leader(rafts: &[&Raft]) -> NodeId {
    let mut watches: Vec<_> = rafts.iter().map(|raft| raft.metrics()).collect();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen: Vec<_> =
            watches.iter().map(|w| (w.borrow().id, w.borrow().current_leader, w.borrow().state)).collect();
        if let Some(leader) = agreed(&seen) {
            return leader;
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        match tokio::time::timeout_at(deadline, changed).await {
            Ok((Ok(()), _, _)) => {}
            Ok((Err(_), _, _)) => panic!("a replica stopped while a leader was awaited; saw {seen:?}"),
            Err(_) => panic!("no leader agreed within {PATIENCE:?}; (id, leader, state) per replica: {seen:?}"),
        }
    }
}

fn agreed(seen: &[(NodeId, Option<NodeId>, ServerState)]) -> Option<NodeId> {
    let leader = seen.first()?.1?;
    let all_agree = seen.iter().all(|(_, named, _)| *named == Some(leader));
    let leads = seen.iter().any(|(id, _, state)| *id == leader && *state == ServerState::Leader);
    (all_agree && leads).then_some(leader)
}

/// A running replica: its store and the gRPC server other replicas call.
struct Running {
    store: Arc<ReplicatedStore>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

/// Replicas `1..=n` on loopback.
pub struct Replicas {
    dir: PathBuf,
    peers: BTreeMap<NodeId, String>,
    running: BTreeMap<NodeId, Running>,
}

impl Replicas {
    /// Starts `n` replicas, each on a port of its own and with its file in `dir`, with the default timings.
    pub async fn start(n: u64, dir: &Path) -> Self {
        let dir = dir.to_owned();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            listeners.insert(id, listener);
        }
        let peers = listeners.iter().map(|(id, l)| (*id, l.local_addr().unwrap().to_string())).collect();
        let mut replicas = Self { dir, peers, running: BTreeMap::new() };
        for (id, listener) in listeners {
            replicas.run(id, listener).await;
        }
        replicas
    }

    /// Replica `id`'s settings.
    pub fn config(&self, id: NodeId) -> ReplicationConfig {
        ReplicationConfig::new(id, self.peers.clone())
    }

    /// Replica `id`'s gRPC address.
    pub fn address(&self, id: NodeId) -> &str {
        &self.peers[&id]
    }

    /// Running replica `id`'s store; panics if it is stopped.
    pub fn store(&self, id: NodeId) -> &Arc<ReplicatedStore> {
        &self.running.get(&id).unwrap_or_else(|| panic!("replica {id} is not running")).store
    }

    /// The running replicas' ids.
    pub fn running(&self) -> Vec<NodeId> {
        self.running.keys().copied().collect()
    }

    /// Waits until every running replica names the same one of them as leader, and that one leads (see
    /// [`agreed_leader`]).
    pub async fn leader(&self) -> NodeId {
        let rafts: Vec<&Raft> = self.running.values().map(|r| r.store.raft()).collect();
        agreed_leader(&rafts).await
    }

    /// Waits until replica `id` has applied the log up to `index`.
    pub async fn applied(&self, id: NodeId, index: u64) {
        let wait = self.store(id).raft().wait(Some(PATIENCE));
        wait.applied_index_at_least(Some(index), format!("replica {id} applies up to {index}")).await.unwrap();
    }

    /// Stops replica `id`: its Raft node, then its server (closing its connections, as a dead process would).
    pub async fn stop(&mut self, id: NodeId) {
        let running = self.running.remove(&id).unwrap_or_else(|| panic!("replica {id} is not running"));
        running.store.shutdown().await;
        running.stop.cancel();
        running.server.await.expect("the server task");
    }

    /// Starts stopped replica `id` again from its files, at its address.
    pub async fn restart(&mut self, id: NodeId) {
        let listener = TcpListener::bind(self.address(id)).await.expect("the replica's port again");
        self.run(id, listener).await;
    }

    /// Stops every replica.
    pub async fn stop_all(&mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }

    async fn run(&mut self, id: NodeId, listener: TcpListener) {
        let sqlite =
            SqliteStoreConfig { path: self.dir.join(format!("replica-{id}.sqlite")), synchronous: Synchronous::Normal };
        let store = ReplicatedStore::start_over_grpc(&self.config(id), &sqlite).await.expect("the replica starts");
        let store = Arc::new(store);
        let stop = CancellationToken::new();
        let service = RaftServer::new(RaftService::new(store.raft().clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let serving = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        let server = tokio::spawn(async move { serving.await.expect("the replica's gRPC server") });
        self.running.insert(id, Running { store, stop, server });
    }
}
