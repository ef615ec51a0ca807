//! The data plane: the invocation proxy, its per-function endpoint sets and cold-start queues, and the
//! load reports that drive the control plane's autoscaler.

pub mod balancer;
pub mod endpoints;
pub mod proxy;
pub mod stats;
pub mod timing;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::net::{self, AddressError, BindError};
use crate::peers::attach::{AttachingPeer, Attachment};
use crate::peers::{DataPlaneUplink, GrpcControlPlane};
use crate::proto::dirigent::data_plane_server::{DataPlane as DataPlaneRpc, DataPlaneServer};
use crate::proto::dirigent::{
    Ack, ColdStartRequest, DataPlaneInfo, FunctionFailure, FunctionLoad, FunctionRef, FunctionSet, FunctionState,
    Heartbeat, LoadReport, attach_request,
};
use crate::supervise::{self, TaskStopped};
use endpoints::{EndpointSpec, FunctionTable, Version};
use proxy::{ColdStartRequester, Proxy};
use stats::CounterSnapshot;

/// The settings (YAML) are the contracts', shared with `experiments`, which writes them.
pub use contracts::config::DataPlaneConfig;

/// Starting the data plane failed.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// a listening socket could not be bound
    #[error(transparent)]
    Bind(#[from] BindError),
    /// the control plane address is not a valid URI
    #[error("control plane: {0}")]
    ControlPlaneAddress(#[from] AddressError),
    /// the gRPC server failed
    #[error("data plane gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// a background loop (attachment and load reports, cold-start requests) stopped on its own
    #[error(transparent)]
    Stopped(#[from] crate::supervise::TaskStopped),
}

const REPORTS: &str = "the data plane's attachment and load reports";
const COLD_STARTS: &str = "the data plane's cold-start requests";

/// A data plane whose sockets are bound, ready to serve.
pub struct DataPlane {
    config: DataPlaneConfig,
    name: String,
    table: Arc<FunctionTable>,
    proxy_listener: TcpListener,
    grpc_listener: TcpListener,
    proxy_address: String,
    grpc_address: String,
    control_plane: Arc<dyn DataPlaneUplink>,
}

impl DataPlane {
    /// Binds the proxy and gRPC sockets.
    pub async fn bind(config: DataPlaneConfig) -> Result<Self, DataPlaneError> {
        let proxy_listener = net::bind("data-plane proxy", config.proxy_listen).await?;
        let grpc_listener = net::bind("data-plane gRPC", config.grpc_listen).await?;
        let proxy_address = net::advertised(&proxy_listener, &config.advertise_host);
        let grpc_address = net::advertised(&grpc_listener, &config.advertise_host);
        let name =
            config.name.clone().unwrap_or_else(|| format!("data-plane-{}", proxy_address.replace([':', '.'], "-")));
        let control_plane = Arc::new(GrpcControlPlane::connect(&config.control_plane)?);
        Ok(Self {
            table: Arc::new(FunctionTable::new(config.load_balancing)),
            config,
            name,
            proxy_listener,
            grpc_listener,
            proxy_address,
            grpc_address,
            control_plane,
        })
    }

    /// The proxy's address as users should call it.
    pub fn proxy_address(&self) -> &str {
        &self.proxy_address
    }

    /// The gRPC address the control plane pushes to.
    pub fn grpc_address(&self) -> &str {
        &self.grpc_address
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), DataPlaneError> {
        let (cold_starts, requests) =
            spawn_cold_start_requester(Arc::clone(&self.control_plane), self.name.clone(), shutdown.clone());
        let (table, config) = (Arc::clone(&self.table), self.config.clone());
        let requester = Arc::clone(&cold_starts);
        let make_handler = move || {
            let proxy = Arc::new(Proxy::new(
                Arc::clone(&table),
                Arc::clone(&requester),
                config.queue_timeout,
                config.upstream_timeout,
            ));
            move |request| Arc::clone(&proxy).handle(request)
        };
        let threads =
            self.config.proxy_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let http = tokio::spawn(net::serve_http(self.proxy_listener, threads, shutdown.clone(), make_handler));
        let reporter = Reporter {
            client: Arc::clone(&self.control_plane),
            table: Arc::clone(&self.table),
            info: DataPlaneInfo {
                name: self.name.clone(),
                grpc_address: self.grpc_address.clone(),
                proxy_address: self.proxy_address.clone(),
            },
            interval: self.config.report_interval,
            heartbeat_interval: self.config.heartbeat_interval,
            cold_starts: Arc::clone(&cold_starts),
        };
        let reporting = supervise::spawn(REPORTS, shutdown.clone(), reporter.run(shutdown.clone()));
        let service = DataPlaneService { table: Arc::clone(&self.table), drain_timeout: self.config.drain_timeout };
        tracing::info!(name = %self.name, proxy = %self.proxy_address, grpc = %self.grpc_address, "data plane up");
        let grpc = tonic::transport::Server::builder()
            .add_service(DataPlaneServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.grpc_listener).with_nodelay(Some(true)),
                shutdown.clone().cancelled_owned(),
            )
            .await;
        shutdown.cancel();
        let (_, reporting, requests) =
            tokio::join!(http, supervise::join(REPORTS, reporting), supervise::join(COLD_STARTS, requests));
        reporting?;
        requests?;
        grpc.map_err(DataPlaneError::from)
    }
}

/// Forwards cold-start requests to the control plane without blocking the proxy.
struct ChannelRequester(mpsc::Sender<String>);

impl ColdStartRequester for ChannelRequester {
    fn request(&self, function: &str) {
        // A full channel means the control plane is far behind; the next request for the function asks again.
        let _ = self.0.try_send(function.to_owned());
    }
}

fn spawn_cold_start_requester(
    client: Arc<dyn DataPlaneUplink>,
    data_plane: String,
    shutdown: CancellationToken,
) -> (Arc<dyn ColdStartRequester>, JoinHandle<Result<(), TaskStopped>>) {
    let (tx, mut rx) = mpsc::channel::<String>(4096);
    let task = supervise::spawn(COLD_STARTS, shutdown.clone(), async move {
        loop {
            let function = tokio::select! {
                received = rx.recv() => match received { Some(f) => f, None => return },
                () = shutdown.cancelled() => return,
            };
            let client = Arc::clone(&client);
            let request = ColdStartRequest { function, data_plane: data_plane.clone() };
            tokio::spawn(async move {
                if let Err(status) = client.request_cold_start(request.clone()).await {
                    tracing::warn!(function = %request.function, %status, "cold-start request failed");
                }
            });
        }
    });
    (Arc::new(ChannelRequester(tx)), task)
}

/// Stays attached to the control plane (registered, heartbeating) and reports load until shutdown.
struct Reporter {
    client: Arc<dyn DataPlaneUplink>,
    table: Arc<FunctionTable>,
    info: DataPlaneInfo,
    /// How often load reports go out.
    interval: Duration,
    /// How often heartbeats go down the attachment.
    heartbeat_interval: Duration,
    /// Asks again for the cold starts a control plane that was away may have missed.
    cold_starts: Arc<dyn ColdStartRequester>,
}

impl Reporter {
    async fn run(self, shutdown: CancellationToken) {
        let (attached, reattach) = (watch::Sender::new(false), Notify::new());
        let peer = AttachingDataPlane {
            info: self.info.clone(),
            table: Arc::clone(&self.table),
            cold_starts: Arc::clone(&self.cold_starts),
        };
        let attachment = Attachment {
            uplink: self.client.as_ref(),
            peer: &peer,
            interval: self.heartbeat_interval,
            reattach: &reattach,
            attached: &attached,
            shutdown: &shutdown,
        };
        tokio::join!(attachment.stay(), self.report(&attached, &reattach, &shutdown));
    }

    /// Reports load every interval while attached; a report the control plane refuses as from an unknown
    /// data plane makes it attach (register) again.
    async fn report(&self, attached: &watch::Sender<bool>, reattach: &Notify, shutdown: &CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            // Detached, a report would be refused: its counts wait for the next one.
            if !*attached.borrow() {
                continue;
            }
            let report = LoadReport { data_plane: self.info.name.clone(), functions: self.loads() };
            let Err(status) = self.client.report_load(report.clone()).await else { continue };
            self.restore(&report);
            if status.code() == tonic::Code::NotFound {
                // No more reports until attached again; the stored permit ends the attachment even if
                // the attacher is not waiting for it right now.
                attached.send_replace(false);
                reattach.notify_one();
            } else {
                tracing::warn!(%status, "load report failed; its counts go into the next one");
            }
        }
    }

    fn restore(&self, report: &LoadReport) {
        for load in &report.functions {
            let Some(entry) = self.table.get(&load.function) else { continue };
            entry.counters.restore(&CounterSnapshot {
                invocations: load.invocations,
                cold_starts: load.cold_starts,
                failures: load.failures,
                failovers: load.failovers,
                latency_buckets: load.latency_buckets.clone(),
                latency_sum_seconds: load.latency_sum_seconds,
            });
        }
    }

    fn loads(&self) -> Vec<FunctionLoad> {
        self.table
            .all()
            .into_iter()
            .map(|entry| {
                let (average_concurrency, queued) = entry.take_load();
                let counters = entry.counters.take();
                FunctionLoad {
                    function: entry.name().to_owned(),
                    average_concurrency,
                    queued,
                    invocations: counters.invocations,
                    cold_starts: counters.cold_starts,
                    failures: counters.failures,
                    failovers: counters.failovers,
                    latency_buckets: counters.latency_buckets,
                    latency_sum_seconds: counters.latency_sum_seconds,
                }
            })
            .collect()
    }
}

/// What a data plane says on its attachment, and does around each one.
struct AttachingDataPlane {
    info: DataPlaneInfo,
    table: Arc<FunctionTable>,
    cold_starts: Arc<dyn ColdStartRequester>,
}

impl AttachingPeer for AttachingDataPlane {
    fn registration(&self) -> attach_request::Message {
        attach_request::Message::DataPlane(self.info.clone())
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat { sandboxes: 0 }
    }

    fn attaching(&self) {
        // The control plane we register with answers with a full resync, which is the truth even if its
        // clock (its incarnation) is behind its predecessor's; the predecessor sends nothing any more.
        self.table.reset_versions();
    }

    fn attached(&self) {
        // A cold start asked for while the control plane was away (or that it lost when it died) would
        // never come: the queued requests ask again, and are served within their queue timeout.
        for entry in self.table.all() {
            if entry.queued() > 0 {
                tracing::info!(function = %entry.name(), "asking again for a cold start of a function with queued requests");
                self.cold_starts.request(entry.name());
            }
        }
    }
}

/// The gRPC service the control plane calls.
struct DataPlaneService {
    table: Arc<FunctionTable>,
    drain_timeout: Duration,
}

#[tonic::async_trait]
impl DataPlaneRpc for DataPlaneService {
    async fn sync_function(&self, request: Request<FunctionState>) -> Result<Response<Ack>, Status> {
        let state = request.into_inner();
        let endpoints = state
            .endpoints
            .into_iter()
            .map(|e| {
                let address = e.address.parse().map_err(|err| {
                    Status::invalid_argument(format!(
                        "sandbox {} has a bad address '{}': {err}",
                        e.sandbox_id, e.address
                    ))
                })?;
                Ok(EndpointSpec {
                    sandbox_id: e.sandbox_id,
                    address,
                    creation: Duration::from_micros(e.creation_micros),
                    steps: e.steps.into_iter().map(|step| (step.name, step.micros)).collect(),
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let version = Version { incarnation: state.incarnation, generation: state.generation };
        self.table.sync(&state.name, version, state.container_concurrency, endpoints, self.drain_timeout).await;
        Ok(Response::new(Ack {}))
    }

    async fn remove_function(&self, request: Request<FunctionRef>) -> Result<Response<Ack>, Status> {
        let removal = request.into_inner();
        let version = Version { incarnation: removal.incarnation, generation: removal.generation };
        self.table.remove(&removal.name, version, self.drain_timeout).await;
        Ok(Response::new(Ack {}))
    }

    async fn retain_functions(&self, request: Request<FunctionSet>) -> Result<Response<Ack>, Status> {
        let set = request.into_inner();
        let version = Version { incarnation: set.incarnation, generation: set.generation };
        let keep: std::collections::HashSet<String> = set.names.into_iter().collect();
        self.table.retain(&keep, version, self.drain_timeout).await;
        Ok(Response::new(Ack {}))
    }

    async fn fail_queued(&self, request: Request<FunctionFailure>) -> Result<Response<Ack>, Status> {
        let failure = request.into_inner();
        self.table.fail_queued(&failure.name, &failure.message);
        Ok(Response::new(Ack {}))
    }
}

#[cfg(test)]
mod tests;
