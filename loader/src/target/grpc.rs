//! vHive's `faas.Executor/Execute` as a target: one gRPC channel per function address, the request's
//! runtime and memory in the message, the function's measured duration from the reply.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use tonic::transport::{Channel, Endpoint};

use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::record::Outcome;
use crate::schedule::Invocation;

/// Generated client (and, for tests, server) of vHive's faas.proto.
pub use contracts::proto::faas;

use faas::FaasRequest;
use faas::executor_client::ExecutorClient;

/// Where the functions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTargetConfig {
    /// Address template with optional `{function}`, e.g. `http://127.0.0.1:50051`.
    pub address_template: String,
    /// Per-request timeout.
    pub request_timeout: Option<Duration>,
}

/// vHive's gRPC workload interface as a target.
pub struct GrpcTarget {
    config: GrpcTargetConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcTarget {
    /// A target for `config`; channels connect lazily, on first use.
    pub fn new(config: GrpcTargetConfig) -> Result<Self, TargetError> {
        Endpoint::from_shared(config.address_template.replace("{function}", "function"))
            .map_err(|e| TargetError::Config(format!("address '{}': {e}", config.address_template)))?;
        Ok(Self { config, channels: Mutex::default() })
    }

    fn channel(&self, function: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(function) {
            return Ok(channel.clone());
        }
        let address = self.config.address_template.replace("{function}", function);
        let mut endpoint = Endpoint::from_shared(address.clone()).map_err(|e| format!("{address}: {e}"))?;
        endpoint = endpoint.tcp_nodelay(true);
        if let Some(timeout) = self.config.request_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        let channel = endpoint.connect_lazy();
        channels.insert(function.to_owned(), channel.clone());
        Ok(channel)
    }

    async fn execute(&self, function: &str, invocation: &Invocation) -> TargetResponse {
        let channel = match self.channel(function) {
            Ok(channel) => channel,
            Err(message) => return TargetResponse::from_outcome(Outcome::ConnectionFailed(message)),
        };
        let request = FaasRequest {
            message: function.to_owned(),
            runtime_in_milli_sec: invocation.runtime_ms,
            memory_in_mebi_bytes: invocation.memory_mib,
        };
        match ExecutorClient::new(channel).execute(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                let mut response = TargetResponse::from_outcome(Outcome::Ok);
                response.actual_duration_us = Some(u64::from(reply.duration_in_micro_sec));
                response.actual_memory_mib = Some(reply.memory_usage_in_kb.div_ceil(1024));
                response
            }
            Err(status) => TargetResponse::from_outcome(outcome_of(&status)),
        }
    }
}

/// Maps a gRPC status onto the record's outcomes (HTTP-like codes keep the CSV's `http-<code>` labels usable).
fn outcome_of(status: &tonic::Status) -> Outcome {
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Outcome::Timeout,
        tonic::Code::Unavailable => Outcome::ConnectionFailed(status.message().to_owned()),
        code => Outcome::Status(grpc_as_http(code), format!("{code:?}: {}", status.message())),
    }
}

fn grpc_as_http(code: tonic::Code) -> u16 {
    match code {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::FailedPrecondition => 400,
        tonic::Code::NotFound => 404,
        tonic::Code::ResourceExhausted => 429,
        tonic::Code::Unimplemented => 501,
        _ => 500,
    }
}

impl Target for GrpcTarget {
    fn deploy<'a>(&'a self, _functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        async { Ok(()) }.boxed()
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        self.execute(function_name, invocation).boxed()
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome_of(&tonic::Status::deadline_exceeded("slow")), Outcome::Timeout);
        assert!(matches!(outcome_of(&tonic::Status::unavailable("down")), Outcome::ConnectionFailed(_)));
        assert!(matches!(outcome_of(&tonic::Status::invalid_argument("x")), Outcome::Status(400, _)));
        assert!(matches!(outcome_of(&tonic::Status::internal("x")), Outcome::Status(500, _)));
    }

    #[test]
    fn bad_addresses_are_config_errors() {
        let config = GrpcTargetConfig { address_template: "not a uri".into(), request_timeout: None };
        assert!(matches!(GrpcTarget::new(config), Err(TargetError::Config(_))));
    }
}
