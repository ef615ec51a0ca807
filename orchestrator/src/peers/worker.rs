//! The control plane's calls to a worker.

use tonic::transport::Channel;

use super::{Call, unary};
use crate::proto::dirigent::worker_client::WorkerClient;
use crate::proto::dirigent::{Ack, CreateSandboxReply, CreateSandboxRequest, KillSandboxRequest, SandboxList};

/// What the control plane asks of one worker.
pub trait WorkerPeer: Send + Sync + 'static {
    /// Creates a sandbox; answers once it is ready.
    fn create_sandbox(&self, request: CreateSandboxRequest) -> Call<'_, CreateSandboxReply>;
    /// Kills a sandbox (one already gone counts as killed).
    fn kill_sandbox(&self, request: KillSandboxRequest) -> Call<'_, Ack>;
    /// The sandboxes alive on the worker.
    fn list_sandboxes(&self) -> Call<'_, SandboxList>;
}

/// [`WorkerPeer`] over the worker's gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcWorker(WorkerClient<Channel>);

impl GrpcWorker {
    /// A worker reached through `channel`.
    pub fn new(channel: Channel) -> Self {
        Self(WorkerClient::new(channel))
    }
}

impl WorkerPeer for GrpcWorker {
    fn create_sandbox(&self, request: CreateSandboxRequest) -> Call<'_, CreateSandboxReply> {
        unary!(self.0, create_sandbox, request)
    }

    fn kill_sandbox(&self, request: KillSandboxRequest) -> Call<'_, Ack> {
        unary!(self.0, kill_sandbox, request)
    }

    fn list_sandboxes(&self) -> Call<'_, SandboxList> {
        unary!(self.0, list_sandboxes, Ack {})
    }
}
