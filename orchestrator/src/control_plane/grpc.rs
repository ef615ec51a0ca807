//! The control plane's gRPC service, called by workers and data planes.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::core::{Core, Lease, PeerError};
use super::store::Leadership;
use crate::peers::attach::ReceiverStream;
use crate::proto::dirigent::control_plane_server::ControlPlane as ControlPlaneRpc;
use crate::proto::dirigent::{
    Ack, ApiAddress, AttachReply, AttachRequest, ColdStartRequest, DataPlaneInfo, LoadReport, SandboxExit,
    WorkerHeartbeatRequest, WorkerInfo, attach_request,
};

/// Adapts gRPC calls to the core.
pub struct ControlPlaneService {
    /// The core.
    pub core: Arc<Core>,
    /// Ends every attachment: the server's graceful shutdown waits for open streams.
    pub shutdown: CancellationToken,
    /// This control plane's user API address, which followers ask for to forward there.
    pub api_address: String,
}

/// Refuses a peer's call on a replica that does not lead, naming the leader (the peer goes there next).
fn leading(core: &Core) -> Result<(), Status> {
    if core.leads() {
        return Ok(());
    }
    match core.leadership() {
        // Not confirmed yet by the other replicas (or no longer leading): as good as an election.
        Leadership::This => {
            Err(Status::unavailable("this control plane is not confirmed as the leader yet; try again"))
        }
        Leadership::Other(leader) => {
            let mut refused =
                Status::failed_precondition(format!("this control plane is a follower; the leader is {leader}"));
            if let Ok(value) = leader.parse() {
                refused.metadata_mut().insert(contracts::config::LEADER_METADATA, value);
            }
            Err(refused)
        }
        Leadership::Unknown => Err(Status::unavailable("no control-plane leader is elected yet; try again")),
    }
}

fn status(err: PeerError) -> Status {
    match err {
        // NotFound tells the peer to register again.
        PeerError::Unknown(_) => Status::not_found(err.to_string()),
        PeerError::Address(_) => Status::invalid_argument(err.to_string()),
    }
}

/// Replies queued for a peer that stopped reading; a few are plenty, a reply only says "still here".
const QUEUED_REPLIES: usize = 4;

#[tonic::async_trait]
impl ControlPlaneRpc for ControlPlaneService {
    type AttachStream = BoxStream<'static, Result<AttachReply, Status>>;

    async fn attach(&self, request: Request<Streaming<AttachRequest>>) -> Result<Response<Self::AttachStream>, Status> {
        leading(&self.core)?;
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.and_then(|m| m.message);
        let lease = match first {
            Some(attach_request::Message::Worker(info)) => self.core.attach_worker(info),
            Some(attach_request::Message::DataPlane(info)) => self.core.attach_data_plane(info),
            Some(attach_request::Message::Heartbeat(_)) | None => {
                return Err(Status::invalid_argument(
                    "an attachment's first message must be a worker's or data plane's registration",
                ));
            }
        }
        .map_err(status)?;
        let (replies, outbound) = mpsc::channel(QUEUED_REPLIES);
        let _ = replies.try_send(Ok(AttachReply { registration: lease.registration() }));
        let attachment = Attachment { core: Arc::clone(&self.core), lease, replies };
        tokio::spawn(attachment.hold(inbound, self.shutdown.clone()));
        Ok(Response::new(ReceiverStream(outbound).boxed()))
    }

    async fn register_worker(&self, request: Request<WorkerInfo>) -> Result<Response<Ack>, Status> {
        leading(&self.core)?;
        self.core.register_worker(request.into_inner()).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn worker_heartbeat(&self, request: Request<WorkerHeartbeatRequest>) -> Result<Response<Ack>, Status> {
        leading(&self.core)?;
        let heartbeat = request.into_inner();
        self.core.worker_heartbeat(&heartbeat.name, heartbeat.sandboxes).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_sandbox_exit(&self, request: Request<SandboxExit>) -> Result<Response<Ack>, Status> {
        leading(&self.core)?;
        let exit = request.into_inner();
        self.core.sandbox_exited(&exit.function, &exit.sandbox_id, &exit.reason).await;
        Ok(Response::new(Ack {}))
    }

    async fn register_data_plane(&self, request: Request<DataPlaneInfo>) -> Result<Response<Ack>, Status> {
        leading(&self.core)?;
        self.core.register_data_plane(request.into_inner()).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_load(&self, request: Request<LoadReport>) -> Result<Response<Ack>, Status> {
        leading(&self.core)?;
        self.core.report_load(request.into_inner()).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn request_cold_start(&self, request: Request<ColdStartRequest>) -> Result<Response<Ack>, Status> {
        leading(&self.core)?;
        self.core.request_cold_start(&request.into_inner().function);
        Ok(Response::new(Ack {}))
    }

    /// Answered by every replica: a follower asks the leader before forwarding a user API request to it.
    async fn describe_api(&self, _: Request<Ack>) -> Result<Response<ApiAddress>, Status> {
        Ok(Response::new(ApiAddress { http: self.api_address.clone() }))
    }
}

/// One attachment the control plane holds.
struct Attachment {
    core: Arc<Core>,
    lease: Lease,
    replies: mpsc::Sender<Result<AttachReply, Status>>,
}

impl Attachment {
    /// Serves the attachment until it ends, then drops its peer (unless a newer attachment holds it now).
    async fn hold(self, mut inbound: Streaming<AttachRequest>, shutdown: CancellationToken) {
        let (why, answer) = loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                () = self.lease.released() => break ("lost its registration", Some(Status::not_found(format!(
                    "{} was dropped or registered again; attach again", self.lease.peer()
                )))),
                () = self.replies.closed() => break ("stopped reading its attachment", None),
                () = shutdown.cancelled() => {
                    // The peer stays registered: dropping it would empty the data planes' endpoint sets,
                    // which must keep serving while the control plane is away.
                    let _ = self.replies.try_send(Err(Status::unavailable("the control plane shuts down")));
                    return;
                }
            };
            match message {
                Ok(Some(AttachRequest { message: Some(attach_request::Message::Heartbeat(beat)) })) => {
                    if let Err(err) = self.heartbeat(beat.sandboxes) {
                        break ("sent a heartbeat on a stale attachment", Some(err));
                    }
                }
                Ok(Some(_)) => {
                    let refusal =
                        Status::invalid_argument("after the registration, an attachment carries only heartbeats");
                    break ("broke the attachment protocol", Some(refusal));
                }
                Ok(None) => break ("closed its attachment", None),
                Err(_) => break ("lost its connection", None),
            }
        };
        self.core.detach(&self.lease, why);
        if let Some(answer) = answer {
            let _ = self.replies.try_send(Err(answer));
        }
    }

    fn heartbeat(&self, sandboxes: u32) -> Result<(), Status> {
        self.core.attached_heartbeat(&self.lease, sandboxes).map_err(status)?;
        // Full: the peer is not reading replies; its heartbeats say it is alive all the same.
        let _ = self.replies.try_send(Ok(AttachReply { registration: self.lease.registration() }));
        Ok(())
    }
}
