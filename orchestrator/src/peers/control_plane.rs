//! The workers' and data planes' calls to the control plane.

use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::transport::Channel;

use super::Call;
use super::attach::{Attach, Outbound, Replies};
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

/// Both uplinks over the control plane's gRPC service, on one of its replicas' addresses.
///
/// With several addresses the calls go to one of them; a failed attachment moves to the replica a follower
/// named as the leader ([`contracts::config::LEADER_METADATA`]), else to the next address, so the peer's next
/// attempt (the attachment retries with backoff) reaches the leader or the replica that is up.
#[derive(Debug)]
pub struct GrpcControlPlane {
    replicas: Vec<Replica>,
    current: AtomicUsize,
}

#[derive(Debug)]
struct Replica {
    address: String,
    client: ControlPlaneClient<Channel>,
}

impl GrpcControlPlane {
    /// The control plane at `addresses` (one, or its replicas' separated by commas), connected on first use.
    pub fn connect(addresses: &str) -> Result<Self, AddressError> {
        let mut listed: Vec<&str> = contracts::config::control_plane_addresses(addresses).collect();
        if listed.is_empty() {
            // Validation refuses this; `channel` then says what is wrong with it.
            listed.push(addresses);
        }
        let replica = |address: &str| {
            let client = ControlPlaneClient::new(crate::net::channel(address)?);
            Ok(Replica { address: address.to_owned(), client })
        };
        let replicas = listed.into_iter().map(replica).collect::<Result<Vec<_>, AddressError>>()?;
        Ok(Self { replicas, current: AtomicUsize::new(0) })
    }

    /// The address calls go to now.
    pub fn current(&self) -> &str {
        &self.replicas[self.index()].address
    }

    fn index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.replicas.len()
    }

    fn client(&self) -> ControlPlaneClient<Channel> {
        self.replicas[self.index()].client.clone()
    }

    /// After a call to `from` failed with `status`: the leader it named, else the next address. A call that
    /// failed on a replica already left (another call moved first) moves nothing.
    fn follow(&self, from: usize, status: &tonic::Status) {
        let named = status.metadata().get(contracts::config::LEADER_METADATA).and_then(|v| v.to_str().ok());
        let leader = named.and_then(|leader| self.replicas.iter().position(|r| r.address == leader));
        let next = leader.unwrap_or((from + 1) % self.replicas.len());
        if self.current.compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() && next != from {
            tracing::info!(from = %self.replicas[from].address, to = %self.replicas[next].address, %status, "control plane call failed; trying another replica");
        }
    }
}

/// One unary call on the current replica; a failure moves to another replica for the next call.
macro_rules! unary_followed {
    ($self:ident, $method:ident, $request:expr) => {{
        let (from, mut client, request) = ($self.index(), $self.client(), $request);
        futures_util::FutureExt::boxed(async move {
            let answer = client.$method(request).await.map(tonic::Response::into_inner);
            if let Err(status) = &answer {
                $self.follow(from, status);
            }
            answer
        })
    }};
}

impl Attach for GrpcControlPlane {
    fn attach(&self, messages: Outbound) -> Call<'_, Replies> {
        let (from, mut client) = (self.index(), self.client());
        futures_util::FutureExt::boxed(async move {
            let replies = match client.attach(messages).await {
                Ok(replies) => replies.into_inner(),
                Err(status) => {
                    self.follow(from, &status);
                    return Err(status);
                }
            };
            Ok(futures_util::StreamExt::boxed(replies))
        })
    }
}

impl WorkerUplink for GrpcControlPlane {
    fn register_worker(&self, info: WorkerInfo) -> Call<'_, Ack> {
        unary_followed!(self, register_worker, info)
    }

    fn worker_heartbeat(&self, heartbeat: WorkerHeartbeatRequest) -> Call<'_, Ack> {
        unary_followed!(self, worker_heartbeat, heartbeat)
    }

    fn report_sandbox_exit(&self, exit: SandboxExit) -> Call<'_, Ack> {
        unary_followed!(self, report_sandbox_exit, exit)
    }
}

impl DataPlaneUplink for GrpcControlPlane {
    fn register_data_plane(&self, info: DataPlaneInfo) -> Call<'_, Ack> {
        unary_followed!(self, register_data_plane, info)
    }

    fn report_load(&self, report: LoadReport) -> Call<'_, Ack> {
        unary_followed!(self, report_load, report)
    }

    fn request_cold_start(&self, request: ColdStartRequest) -> Call<'_, Ack> {
        unary_followed!(self, request_cold_start, request)
    }
}

#[cfg(test)]
mod tests {
    use contracts::config::{ControlPlaneConfig, LEADER_METADATA, StoreConfig};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::control_plane::ControlPlane;

    fn named(leader: &str) -> tonic::Status {
        let mut status = tonic::Status::failed_precondition("not the leader");
        status.metadata_mut().insert(LEADER_METADATA, leader.parse().unwrap());
        status
    }

    #[tokio::test]
    async fn a_failed_call_moves_to_the_named_leader_else_to_the_next_replica() {
        let uplink = GrpcControlPlane::connect("127.0.0.1:1, 127.0.0.1:2,127.0.0.1:3").unwrap();
        assert_eq!(uplink.current(), "127.0.0.1:1");
        uplink.follow(0, &named("127.0.0.1:3"));
        assert_eq!(uplink.current(), "127.0.0.1:3", "to the leader a follower named");
        uplink.follow(2, &tonic::Status::unavailable("connection refused"));
        assert_eq!(uplink.current(), "127.0.0.1:1", "else round to the next");
        uplink.follow(2, &tonic::Status::unavailable("a late failure from the replica already left"));
        assert_eq!(uplink.current(), "127.0.0.1:1", "a stale failure moves nothing");
        uplink.follow(0, &named("10.0.0.9:9090"));
        assert_eq!(uplink.current(), "127.0.0.1:2", "a leader not in the list: the next one");
    }

    #[tokio::test]
    async fn a_dead_address_first_in_the_list_costs_one_failed_call() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let config = ControlPlaneConfig {
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            store: StoreConfig::Memory,
            ..ControlPlaneConfig::default()
        };
        let control_plane = ControlPlane::bind(config).await.unwrap();
        let live = control_plane.grpc_address().to_owned();
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(control_plane.serve(shutdown.clone()));
        let uplink = GrpcControlPlane::connect(&format!("{dead},{live}")).unwrap();
        let info = WorkerInfo { name: "w".into(), address: "127.0.0.1:1".into(), cpu_millis: 1000, memory_mib: 512 };
        uplink.register_worker(info.clone()).await.expect_err("the dead replica refuses");
        assert_eq!(uplink.current(), live);
        uplink.register_worker(info).await.expect("the live replica registers the worker");
        shutdown.cancel();
        serving.await.unwrap().unwrap();
    }
}
