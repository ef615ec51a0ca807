//! [`ReplicatedStore`]: the registry store of a control plane that is one of several replicas. A change is
//! committed through Raft on the leader (a majority of replicas has it in its log before it is acknowledged)
//! and every replica's state machine applies it; a follower refuses changes, naming the leader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use contracts::config::{ReplicationConfig, SqliteStoreConfig};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, RaftNetworkFactory};

use super::log::LogStore;
use super::network::GrpcNetworkFactory;
use super::state::StateMachine;
use super::types::{NodeId, Raft, TypeConfig};
use crate::control_plane::store::sqlite::Database;
use crate::control_plane::store::{Leadership, RegistryStore, StoreChange, StoreError, StoreFuture, StoredRegistry};

/// How long a leader's snapshot chunk may take to reach a follower: a whole registry (thousands of entries,
/// megabytes of JSON) is a few chunks, far slower than a heartbeat.
const INSTALL_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long confirming the leadership may take: a heartbeat round to a majority, far less when they answer.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// One replica of the registry: its Raft node, and its state machine's file to load from.
pub struct ReplicatedStore {
    id: NodeId,
    raft: Raft,
    path: PathBuf,
    writes: AtomicU64,
}

impl ReplicatedStore {
    /// Starts replica `config.id` with its log and registry in `sqlite.path`, reaching the other replicas over
    /// gRPC at their `peers` addresses.
    pub async fn start_over_grpc(config: &ReplicationConfig, sqlite: &SqliteStoreConfig) -> Result<Self, StoreError> {
        // Under the shortest election timeout: a connection slower than that is as good as a dead replica, and
        // a replica back from the dead hears from the leader before it would stand for election.
        let network = GrpcNetworkFactory::new(config.id, config.election_timeout_min / 2);
        Self::start(config, sqlite, network).await
    }

    /// Starts replica `config.id` on `network`; on first start (empty files) it proposes `peers` as the
    /// cluster's members, which every replica may do: openraft accepts the same proposal from several.
    pub async fn start<N>(
        config: &ReplicationConfig,
        sqlite: &SqliteStoreConfig,
        network: N,
    ) -> Result<Self, StoreError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let failed = |action, reason: String| StoreError::Replication { replica: config.id, action, reason };
        let log = LogStore::open(&sqlite.path, sqlite.synchronous)?;
        let state = StateMachine::open(&sqlite.path, sqlite.synchronous)?;
        let settings = raft_config(config).map_err(|e| failed("checking the Raft settings", e))?;
        let raft = Raft::new(config.id, Arc::new(settings), network, log, state)
            .await
            .map_err(|e| failed("starting the Raft node", e.to_string()))?;
        propose_members(&raft, config).await.map_err(|(action, reason)| failed(action, reason))?;
        Ok(Self { id: config.id, raft, path: sqlite.path.clone(), writes: AtomicU64::new(0) })
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft node: to serve it to the other replicas, and to watch its metrics (leader, term, applied).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Stops the Raft node; changes fail from then on.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(replica = self.id, %error, "the Raft node stopped with an error");
        }
    }

    /// Commits `change` as [`RegistryStore::apply`] does, answering the log index it was committed at (what
    /// another replica has applied once its metrics show that index applied).
    pub async fn write(&self, change: StoreChange) -> Result<u64, StoreError> {
        match self.raft.client_write(change).await {
            Ok(written) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                Ok(written.log_id.index)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(StoreError::NotLeader { leader: forward.leader_id.zip(forward.leader_node.map(|node| node.addr)) })
            }
            Err(e) => {
                Err(StoreError::Replication { replica: self.id, action: "committing a change", reason: e.to_string() })
            }
        }
    }
}

impl RegistryStore for ReplicatedStore {
    /// Resolves once the change is committed (in a majority's logs) and applied to this replica's registry.
    fn apply(&self, change: StoreChange) -> StoreFuture<'_> {
        Box::pin(async move { self.write(change).await.map(drop) })
    }

    /// This replica's registry as applied so far (a follower's may trail the leader's by the changes in flight).
    fn load(&self) -> Result<StoredRegistry, StoreError> {
        Database::read_only(&self.path)?.load()
    }

    /// Changes this replica committed as leader (those it applied from another leader do not count).
    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn replicated(&self) -> bool {
        true
    }

    /// Asks a majority, bounded by [`CONFIRM_TIMEOUT`]: a replica restarted with its own committed vote in its
    /// log believes it leads until it hears of a newer term, and must not act on that belief meanwhile.
    fn confirm_leadership(&self) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(async move {
            match tokio::time::timeout(CONFIRM_TIMEOUT, self.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => true,
                Ok(Err(error)) => {
                    tracing::info!(replica = self.id, %error, "the replicas do not confirm this one leads");
                    false
                }
                Err(_) => false,
            }
        })
    }

    /// The leader as this replica's Raft node last saw it.
    fn leadership(&self) -> Leadership {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        match metrics.current_leader {
            Some(leader) if leader == self.id => Leadership::This,
            Some(leader) => metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map_or(Leadership::Unknown, |node| Leadership::Other(node.addr.clone())),
            None => Leadership::Unknown,
        }
    }
}

/// Proposes `peers` as the members unless this replica has a log already: then the members (and their addresses)
/// are those its log holds, whatever `peers` says now.
async fn propose_members(raft: &Raft, config: &ReplicationConfig) -> Result<(), (&'static str, String)> {
    // Asked first: openraft logs a refused proposal as an error, and a restart is no error.
    if raft.is_initialized().await.map_err(|e| ("reading the Raft state", e.to_string()))? {
        return Ok(());
    }
    match raft.initialize(members(config)).await {
        // Another replica's proposal reached this one first.
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(("proposing the members", e.to_string())),
    }
}

/// Every replica as a voting member, reached at its address.
fn members(config: &ReplicationConfig) -> BTreeMap<NodeId, BasicNode> {
    config.peers.iter().map(|(id, address)| (*id, BasicNode::new(address))).collect()
}

/// openraft's settings from ours (which are checked to be whole, non-zero milliseconds).
fn raft_config(config: &ReplicationConfig) -> Result<openraft::Config, String> {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    openraft::Config {
        cluster_name: "dirigent-registry".into(),
        heartbeat_interval: millis(config.heartbeat_interval),
        election_timeout_min: millis(config.election_timeout_min),
        election_timeout_max: millis(config.election_timeout_max),
        install_snapshot_timeout: millis(INSTALL_SNAPSHOT_TIMEOUT),
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| e.to_string())
}
