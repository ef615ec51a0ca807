//! The control plane's gRPC service, called by workers and data planes.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::core::{Core, PeerError};
use crate::proto::dirigent::control_plane_server::ControlPlane as ControlPlaneRpc;
use crate::proto::dirigent::{
    Ack, ColdStartRequest, DataPlaneInfo, LoadReport, SandboxExit, WorkerHeartbeatRequest, WorkerInfo,
};

/// Adapts gRPC calls to the core.
pub struct ControlPlaneService {
    /// The core.
    pub core: Arc<Core>,
}

fn status(err: PeerError) -> Status {
    match err {
        // NotFound tells the peer to register again.
        PeerError::Unknown(_) => Status::not_found(err.to_string()),
        PeerError::Address(_) => Status::invalid_argument(err.to_string()),
    }
}

#[tonic::async_trait]
impl ControlPlaneRpc for ControlPlaneService {
    async fn register_worker(&self, request: Request<WorkerInfo>) -> Result<Response<Ack>, Status> {
        self.core.register_worker(request.into_inner()).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn worker_heartbeat(&self, request: Request<WorkerHeartbeatRequest>) -> Result<Response<Ack>, Status> {
        let heartbeat = request.into_inner();
        self.core.worker_heartbeat(&heartbeat.name, heartbeat.sandboxes).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_sandbox_exit(&self, request: Request<SandboxExit>) -> Result<Response<Ack>, Status> {
        let exit = request.into_inner();
        self.core.sandbox_exited(&exit.function, &exit.sandbox_id, &exit.reason).await;
        Ok(Response::new(Ack {}))
    }

    async fn register_data_plane(&self, request: Request<DataPlaneInfo>) -> Result<Response<Ack>, Status> {
        self.core.register_data_plane(request.into_inner()).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_load(&self, request: Request<LoadReport>) -> Result<Response<Ack>, Status> {
        self.core.report_load(request.into_inner()).map_err(status)?;
        Ok(Response::new(Ack {}))
    }

    async fn request_cold_start(&self, request: Request<ColdStartRequest>) -> Result<Response<Ack>, Status> {
        self.core.request_cold_start(&request.into_inner().function);
        Ok(Response::new(Ack {}))
    }
}
