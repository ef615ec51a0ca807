//! Raft between replicas over gRPC: [`GrpcNetwork`] calls another replica's `Raft` service (openraft's messages
//! as JSON bytes, see `dirigent.proto`), and [`RaftService`] serves this replica's node on the control plane's
//! gRPC server.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::types::{NodeId, Raft, TypeConfig};
use crate::proto::dirigent::RaftMessage;
use crate::proto::dirigent::raft_client::RaftClient;
use crate::proto::dirigent::raft_server::Raft as RaftRpc;

/// A failed call to another replica, as openraft wants it.
type CallError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// Makes a [`GrpcNetwork`] per replica this one talks to.
#[derive(Debug, Clone)]
pub struct GrpcNetworkFactory {
    id: NodeId,
    patience: Duration,
}

impl GrpcNetworkFactory {
    /// Calls from replica `id`. `patience` bounds making a connection (a host that does not answer at all would
    /// otherwise hold a call until its own deadline) and is the pause after a replica was unreachable: keep it
    /// under the election timeout, so that a replica coming back hears from the leader before it stands for
    /// election itself (openraft 0.9 has no pre-vote, and such an election unseats a healthy leader).
    pub fn new(id: NodeId, patience: Duration) -> Self {
        Self { id, patience }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    /// Connects lazily: a replica that is down now may be up by the first call.
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcNetwork {
        let client = Endpoint::from_shared(format!("http://{}", node.addr))
            .map(|endpoint| RaftClient::new(endpoint.connect_timeout(self.patience).connect_lazy()))
            .map_err(|e| format!("{} is not a gRPC address: {e}", node.addr));
        GrpcNetwork { from: self.id, target, node: node.clone(), client, backoff: self.patience }
    }
}

/// Calls to one other replica.
pub struct GrpcNetwork {
    from: NodeId,
    target: NodeId,
    node: BasicNode,
    /// The address's error when it is not a URI: every call fails with it.
    client: Result<RaftClient<Channel>, String>,
    backoff: Duration,
}

impl GrpcNetwork {
    /// Sends `request` as JSON, within `ttl`, and reads openraft's `Result` back.
    async fn call<Req, Resp, E>(&mut self, rpc: RPCTypes, request: &Req, ttl: Duration) -> Result<Resp, CallError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self.client.as_mut().map_err(|e| RPCError::Unreachable(Unreachable::new(&Message(e.clone()))))?;
        let json = serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut message = Request::new(RaftMessage { json });
        // The replica stops working on a call its caller gave up on.
        message.set_timeout(ttl);
        let sent = async {
            match rpc {
                RPCTypes::Vote => client.vote(message).await,
                RPCTypes::AppendEntries => client.append_entries(message).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        // The gRPC deadline covers the call once sent, not a connection still being made: bound both.
        let sent = tokio::time::timeout(ttl, sent).await.unwrap_or_else(|_| Err(Status::deadline_exceeded("")));
        let reply = sent.map_err(|status| self.failed(rpc, ttl, status))?.into_inner();
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }

    /// A refused or lost connection tells openraft to back off; a deadline is a timeout; the rest a retry.
    fn failed<E: std::error::Error>(&self, rpc: RPCTypes, ttl: Duration, status: Status) -> CallError<E> {
        match status.code() {
            Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            Code::DeadlineExceeded | Code::Cancelled => {
                RPCError::Timeout(Timeout { action: rpc, id: self.from, target: self.target, timeout: ttl })
            }
            _ => RPCError::Network(NetworkError::new(&status)),
        }
    }
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, CallError> {
        self.call(RPCTypes::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, CallError<InstallSnapshotError>> {
        self.call(RPCTypes::InstallSnapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, CallError> {
        self.call(RPCTypes::Vote, &rpc, option.hard_ttl()).await
    }

    /// openraft's default is 500 ms, longer than an election timeout (see [`GrpcNetworkFactory::new`]).
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

/// A plain message as an error.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Serves this replica's Raft node to the other replicas.
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    /// Serves `raft`.
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

/// The request in `message`; a message that is not one is the caller's bug.
fn request<T: DeserializeOwned>(message: Request<RaftMessage>) -> Result<T, Status> {
    serde_json::from_slice(&message.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("not an openraft request of this kind: {e}")))
}

/// openraft's `Result` as the reply.
fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(result).map_err(|e| Status::internal(format!("cannot encode the reply: {e}")))?;
    Ok(Response::new(RaftMessage { json }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, message: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.append_entries(request(message)?).await)
    }

    async fn vote(&self, message: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.vote(request(message)?).await)
    }

    async fn install_snapshot(&self, message: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.install_snapshot(request(message)?).await)
    }
}
