//! A fake of openraft's network port ([`RaftNetwork`]): replicas in one process call each other's Raft node
//! directly, every call is recorded in a [`Journal`], and a replica can be cut off (its calls in and out fail
//! as unreachable, as a dead host's would).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RPCTypes};

use super::lock;
use super::script::Journal;
use crate::control_plane::replication::types::{NodeId, Raft, TypeConfig};

/// One call from a replica to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftCall {
    /// Which RPC.
    pub rpc: RPCTypes,
    /// The caller.
    pub from: NodeId,
    /// The callee.
    pub to: NodeId,
    /// Whether it reached the callee (neither end cut off, the callee registered).
    pub delivered: bool,
}

/// The replicas' shared in-memory network.
#[derive(Clone, Default)]
pub struct FakeRaftNetwork {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    nodes: Mutex<BTreeMap<NodeId, Raft>>,
    cut: Mutex<BTreeSet<NodeId>>,
    journal: Journal<RaftCall>,
}

impl FakeRaftNetwork {
    /// The network as replica `id` calls out on it.
    pub fn factory(&self, id: NodeId) -> FakeRaftFactory {
        FakeRaftFactory { network: self.clone(), from: id }
    }

    /// Makes replica `id` reachable at `raft`.
    pub fn register(&self, id: NodeId, raft: Raft) {
        lock(&self.inner.nodes).insert(id, raft);
    }

    /// Cuts replica `id` off: calls to and from it fail as unreachable.
    pub fn cut(&self, id: NodeId) {
        lock(&self.inner.cut).insert(id);
    }

    /// Every call so far.
    pub fn journal(&self) -> &Journal<RaftCall> {
        &self.inner.journal
    }

    /// The callee's node, if the call may reach it; records the call either way.
    fn route(&self, rpc: RPCTypes, from: NodeId, to: NodeId) -> Option<Raft> {
        let cut = lock(&self.inner.cut);
        let raft = (!cut.contains(&from) && !cut.contains(&to)).then(|| lock(&self.inner.nodes).get(&to).cloned());
        let raft = raft.flatten();
        drop(cut);
        self.inner.journal.record(RaftCall { rpc, from, to, delivered: raft.is_some() });
        raft
    }
}

/// Makes [`FakeRaftClient`]s for one replica.
pub struct FakeRaftFactory {
    network: FakeRaftNetwork,
    from: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for FakeRaftFactory {
    type Network = FakeRaftClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> FakeRaftClient {
        FakeRaftClient { network: self.network.clone(), from: self.from, to: target }
    }
}

/// One replica's calls to another over the fake network.
pub struct FakeRaftClient {
    network: FakeRaftNetwork,
    from: NodeId,
    to: NodeId,
}

type CallError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl FakeRaftClient {
    fn target(&self, rpc: RPCTypes) -> Result<Raft, Unreachable> {
        let unreachable = || Unreachable::new(&NetworkError::new(&std::io::Error::other("cut off")));
        self.network.route(rpc, self.from, self.to).ok_or_else(unreachable)
    }

    // openraft's error type of its network trait, which it defines, not ours to box.
    #[allow(clippy::result_large_err)]
    fn remote<T, E: std::error::Error>(&self, result: Result<T, RaftError<NodeId, E>>) -> Result<T, CallError<E>> {
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

impl RaftNetwork<TypeConfig> for FakeRaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, CallError> {
        let raft = self.target(RPCTypes::AppendEntries)?;
        self.remote(raft.append_entries(rpc).await)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, CallError<InstallSnapshotError>> {
        let raft = self.target(RPCTypes::InstallSnapshot)?;
        self.remote(raft.install_snapshot(rpc).await)
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> Result<VoteResponse<NodeId>, CallError> {
        let raft = self.target(RPCTypes::Vote)?;
        self.remote(raft.vote(rpc).await)
    }
}
