//! The workers' and data planes' calls to the control plane.

use tonic::transport::Channel;

use super::attach::{Attach, Outbound, Replies};
use super::{Call, unary};
use crate::net::AddressError;
use crate::proto::dirigent::control_plane_client::ControlPlaneClient;
use crate::proto::dirigent::{
    Ack, ColdStartRequest, DataPlaneInfo, LoadReport, SandboxExit, WorkerHeartbeatRequest, WorkerInfo,
};

/// What a worker tells the control plane; it registers and heartbeats on its [`Attach`]ment.
pub trait WorkerUplink: Attach {
    /// Announces the worker (again after the control plane forgot it).
    fn register_worker(&self, info: WorkerInfo) -> Call<'_, Ack>;
    /// Says the worker is alive, with its sandbox count; `NotFound` means register again.
    fn worker_heartbeat(&self, heartbeat: WorkerHeartbeatRequest) -> Call<'_, Ack>;
    /// Reports a sandbox that exited without being asked to.
    fn report_sandbox_exit(&self, exit: SandboxExit) -> Call<'_, Ack>;
}

/// What a data plane tells the control plane; it registers and heartbeats on its [`Attach`]ment.
pub trait DataPlaneUplink: Attach {
    /// Announces the data plane; the control plane answers with a full resync.
    fn register_data_plane(&self, info: DataPlaneInfo) -> Call<'_, Ack>;
    /// Per-function load since the last report (the data plane's heartbeat); `NotFound` means register again.
    fn report_load(&self, report: LoadReport) -> Call<'_, Ack>;
    /// Asks for a sandbox of a function at zero, now rather than at the next autoscaler tick.
    fn request_cold_start(&self, request: ColdStartRequest) -> Call<'_, Ack>;
}

/// Both uplinks over the control plane's gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcControlPlane(ControlPlaneClient<Channel>);

impl GrpcControlPlane {
    /// The control plane at `address`, connected on first use.
    pub fn connect(address: &str) -> Result<Self, AddressError> {
        Ok(Self(ControlPlaneClient::new(crate::net::channel(address)?)))
    }
}

impl Attach for GrpcControlPlane {
    fn attach(&self, messages: Outbound) -> Call<'_, Replies> {
        let mut client = self.0.clone();
        futures_util::FutureExt::boxed(async move {
            let replies = client.attach(messages).await?.into_inner();
            Ok(futures_util::StreamExt::boxed(replies))
        })
    }
}

impl WorkerUplink for GrpcControlPlane {
    fn register_worker(&self, info: WorkerInfo) -> Call<'_, Ack> {
        unary!(self.0, register_worker, info)
    }

    fn worker_heartbeat(&self, heartbeat: WorkerHeartbeatRequest) -> Call<'_, Ack> {
        unary!(self.0, worker_heartbeat, heartbeat)
    }

    fn report_sandbox_exit(&self, exit: SandboxExit) -> Call<'_, Ack> {
        unary!(self.0, report_sandbox_exit, exit)
    }
}

impl DataPlaneUplink for GrpcControlPlane {
    fn register_data_plane(&self, info: DataPlaneInfo) -> Call<'_, Ack> {
        unary!(self.0, register_data_plane, info)
    }

    fn report_load(&self, report: LoadReport) -> Call<'_, Ack> {
        unary!(self.0, report_load, report)
    }

    fn request_cold_start(&self, request: ColdStartRequest) -> Call<'_, Ack> {
        unary!(self.0, request_cold_start, request)
    }
}
