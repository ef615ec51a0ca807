//! The gRPC front end: vHive's `faas.Executor/Execute`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::instance::{Instance, InvokeError};
use super::params::{Invocation, Workload};
use crate::proto::faas::executor_server::Executor;
use crate::proto::faas::{FaasReply, FaasRequest};
use contracts::workload;

/// Serves `Execute` with the same work as an HTTP invocation.
#[derive(Debug, Clone)]
pub(super) struct FaasExecutor {
    instance: Arc<Instance>,
}

impl FaasExecutor {
    pub(super) fn new(instance: Arc<Instance>) -> Self {
        Self { instance }
    }
}

#[tonic::async_trait]
impl Executor for FaasExecutor {
    async fn execute(&self, request: Request<FaasRequest>) -> Result<Response<FaasReply>, Status> {
        let invocation = Invocation::from_grpc(request.metadata().as_ref(), request.get_ref())
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let completed = self.instance.invoke(invocation.clone()).await.map_err(status)?;
        let outcome = completed.outcome;
        Ok(Response::new(FaasReply {
            message: message(&invocation, self.instance.hostname()),
            duration_in_micro_sec: u32::try_from(outcome.elapsed.as_micros()).unwrap_or(u32::MAX),
            memory_usage_in_kb: u32::try_from(outcome.memory_bytes / 1024).unwrap_or(u32::MAX),
        }))
    }
}

/// Dirigent's gRPC function says `OK - <host>` (`OK - EMPTY - <host>`); the function name goes in between if known.
fn message(invocation: &Invocation, hostname: &str) -> String {
    let status = match invocation.workload {
        Workload::Trace => workload::STATUS_OK,
        Workload::Empty => workload::STATUS_OK_EMPTY,
    };
    match invocation.function.as_str() {
        "" => format!("{status} - {hostname}"),
        function => format!("{status} - {function} - {hostname}"),
    }
}

fn status(error: InvokeError) -> Status {
    match error {
        InvokeError::Work(error) => Status::resource_exhausted(error.to_string()),
        error @ InvokeError::Aborted => Status::internal(error.to_string()),
    }
}
