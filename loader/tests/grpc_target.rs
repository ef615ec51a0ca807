//! The grpc target against a real `faas.Executor` server on loopback.

use std::time::Duration;

use loader::record::Outcome;
use loader::schedule::Invocation;
use loader::target::Target;
use loader::target::grpc::faas::executor_server::{Executor, ExecutorServer};
use loader::target::grpc::faas::{FaasReply, FaasRequest};
use loader::target::grpc::{GrpcTarget, GrpcTargetConfig};
use tonic::{Request, Response, Status};

struct Echo;

#[tonic::async_trait]
impl Executor for Echo {
    async fn execute(&self, request: Request<FaasRequest>) -> Result<Response<FaasReply>, Status> {
        let request = request.into_inner();
        if request.memory_in_mebi_bytes > 1000 {
            return Err(Status::resource_exhausted("too much memory"));
        }
        Ok(Response::new(FaasReply {
            message: format!("OK - {}", request.message),
            duration_in_micro_sec: request.runtime_in_milli_sec * 1000,
            memory_usage_in_kb: request.memory_in_mebi_bytes * 1024,
        }))
    }
}

fn invocation(runtime_ms: u32, memory_mib: u32) -> Invocation {
    Invocation::single(runtime_ms, memory_mib)
}

#[tokio::test]
async fn executes_maps_errors_and_reports_unreachable_servers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ExecutorServer::new(Echo))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let config = GrpcTargetConfig {
        address_template: format!("http://{address}"),
        request_timeout: Some(Duration::from_secs(10)),
    };
    let target = GrpcTarget::new(config).unwrap();
    let ok = target.invoke("f-1", &invocation(25, 64)).await;
    assert_eq!(ok.outcome, Outcome::Ok);
    assert_eq!(ok.actual_duration_us, Some(25_000));
    assert_eq!(ok.actual_memory_mib, Some(64));
    let refused = target.invoke("f-1", &invocation(1, 2000)).await;
    assert!(matches!(refused.outcome, Outcome::Status(429, _)), "{:?}", refused.outcome);

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let config = GrpcTargetConfig { address_template: format!("http://{closed}"), request_timeout: None };
    let unreachable = GrpcTarget::new(config).unwrap().invoke("f-1", &invocation(1, 1)).await;
    assert!(matches!(unreachable.outcome, Outcome::ConnectionFailed(_)), "{:?}", unreachable.outcome);
}
