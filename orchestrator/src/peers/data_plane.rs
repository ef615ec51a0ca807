//! The control plane's calls to a data plane.

use tonic::transport::Channel;

use super::{Call, unary};
use crate::proto::dirigent::data_plane_client::DataPlaneClient;
use crate::proto::dirigent::{Ack, FunctionFailure, FunctionRef, FunctionSet, FunctionState};

/// What the control plane tells one data plane.
pub trait DataPlanePeer: Send + Sync + 'static {
    /// Replaces one function's settings and endpoint set; answers once removed endpoints have drained.
    fn sync_function(&self, state: FunctionState) -> Call<'_, Ack>;
    /// Removes a deleted function.
    fn remove_function(&self, removal: FunctionRef) -> Call<'_, Ack>;
    /// Keeps exactly these functions (a resync's first step).
    fn retain_functions(&self, set: FunctionSet) -> Call<'_, Ack>;
    /// Fails the function's queued requests: no sandbox can be created.
    fn fail_queued(&self, failure: FunctionFailure) -> Call<'_, Ack>;
}

/// [`DataPlanePeer`] over the data plane's gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcDataPlane(DataPlaneClient<Channel>);

impl GrpcDataPlane {
    /// A data plane reached through `channel`.
    pub fn new(channel: Channel) -> Self {
        Self(DataPlaneClient::new(channel))
    }
}

impl DataPlanePeer for GrpcDataPlane {
    fn sync_function(&self, state: FunctionState) -> Call<'_, Ack> {
        unary!(self.0, sync_function, state)
    }

    fn remove_function(&self, removal: FunctionRef) -> Call<'_, Ack> {
        unary!(self.0, remove_function, removal)
    }

    fn retain_functions(&self, set: FunctionSet) -> Call<'_, Ack> {
        unary!(self.0, retain_functions, set)
    }

    fn fail_queued(&self, failure: FunctionFailure) -> Call<'_, Ack> {
        unary!(self.0, fail_queued, failure)
    }
}
