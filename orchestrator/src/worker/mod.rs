//! The worker: the node agent that creates and kills sandboxes, stays attached to the control plane
//! (heartbeats on a stream), and reports sandbox exits.

pub mod runtime;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::net::{self, AddressError, Backoff, BindError};
use crate::peers::attach::{AttachingPeer, Attachment};
use crate::peers::{GrpcControlPlane, WorkerUplink};
use crate::proto::dirigent::worker_server::{Worker as WorkerRpc, WorkerServer};
use crate::proto::dirigent::{
    Ack, CreateSandboxReply, CreateSandboxRequest, CreationStep, Heartbeat, KillSandboxRequest, SandboxExit,
    SandboxInfo as SandboxInfoMsg, SandboxList, WorkerInfo, attach_request,
};
use crate::supervise;
use runtime::process::ProcessRuntime;
use runtime::{RuntimeError, RuntimeKind, SandboxRuntime, SandboxSpec};

/// The settings (YAML) are the contracts', shared with `experiments`, which writes them.
pub use contracts::config::WorkerConfig;

/// Starting the worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// the listening socket could not be bound
    #[error(transparent)]
    Bind(#[from] BindError),
    /// the control plane address is not a valid URI
    #[error("control plane: {0}")]
    ControlPlaneAddress(#[from] AddressError),
    /// the gRPC server failed
    #[error("worker gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// containerd could not be reached (runtime containerd)
    #[error(
        "cannot use containerd at {socket}: {message}; start containerd, or set worker.containerd.socket to its socket"
    )]
    Containerd {
        /// The socket.
        socket: String,
        /// What failed.
        message: String,
    },
    /// a background loop (heartbeats, exit reports) stopped on its own
    #[error(transparent)]
    Stopped(#[from] crate::supervise::TaskStopped),
}

const HEARTBEATS: &str = "the worker's attachment and heartbeats";
const EXIT_REPORTS: &str = "the worker's sandbox exit reports";

/// A worker whose socket is bound, ready to serve.
pub struct Worker {
    config: WorkerConfig,
    info: WorkerInfo,
    listener: TcpListener,
    runtime: Arc<dyn SandboxRuntime>,
    control_plane: Arc<dyn WorkerUplink>,
}

impl Worker {
    /// Binds the worker's socket, builds the runtime the config names and reaches the control plane over gRPC.
    pub async fn bind(config: WorkerConfig) -> Result<Self, WorkerError> {
        let control_plane = Arc::new(GrpcControlPlane::connect(&config.control_plane)?);
        let runtime = runtime_for(&config).await?;
        Self::bind_with(config, runtime, control_plane).await
    }

    /// Binds the worker's socket; sandboxes run in `runtime`, and reports go to `control_plane`.
    pub async fn bind_with(
        config: WorkerConfig,
        runtime: Arc<dyn SandboxRuntime>,
        control_plane: Arc<dyn WorkerUplink>,
    ) -> Result<Self, WorkerError> {
        let listener = net::bind("worker gRPC", config.listen).await?;
        let address = net::advertised(&listener, &config.advertise_host);
        let name = config.name.clone().unwrap_or_else(|| format!("worker-{}", address.replace([':', '.'], "-")));
        let info = WorkerInfo {
            name,
            address,
            cpu_millis: config.cpu_millis.unwrap_or_else(host_cpu_millis),
            memory_mib: config.memory_mib.unwrap_or_else(host_memory_mib),
        };
        Ok(Self { config, info, listener, runtime, control_plane })
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Serves until `shutdown` is cancelled, then destroys every sandbox.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let heartbeat = supervise::spawn(
            HEARTBEATS,
            shutdown.clone(),
            heartbeat(
                Arc::clone(&self.control_plane),
                self.info.clone(),
                Arc::clone(&self.runtime),
                self.config.heartbeat_interval,
                shutdown.clone(),
            ),
        );
        let exits = supervise::spawn(
            EXIT_REPORTS,
            shutdown.clone(),
            report_exits(
                Arc::clone(&self.control_plane),
                self.info.name.clone(),
                Arc::clone(&self.runtime),
                shutdown.clone(),
            ),
        );
        let service = WorkerService { runtime: Arc::clone(&self.runtime), ready_timeout: self.config.ready_timeout };
        tracing::info!(name = %self.info.name, address = %self.info.address, "worker up");
        let served = tonic::transport::Server::builder()
            .add_service(WorkerServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                shutdown.clone().cancelled_owned(),
            )
            .await;
        shutdown.cancel();
        let (heartbeat, exits) =
            tokio::join!(supervise::join(HEARTBEATS, heartbeat), supervise::join(EXIT_REPORTS, exits));
        self.runtime.shutdown().await;
        tracing::info!(name = %self.info.name, "worker stopped, sandboxes destroyed");
        heartbeat?;
        exits?;
        served.map_err(WorkerError::from)
    }
}

/// The runtime `config` names.
pub async fn runtime_for(config: &WorkerConfig) -> Result<Arc<dyn SandboxRuntime>, WorkerError> {
    Ok(match config.runtime {
        RuntimeKind::Process => Arc::new(ProcessRuntime::new(config.sandbox_host, config.sandbox_ports)),
        RuntimeKind::Simulated => Arc::new(
            runtime::simulated::SimulatedRuntime::new(config.sandbox_host, config.sandbox_ports, config.creation_delay)
                .with_addresses(config.sandbox_addresses),
        ),
        RuntimeKind::Containerd => Arc::new(containerd_runtime(config).await?),
    })
}

/// The containerd runtime of `config`, owner of the containers labelled with the worker's name (or, without
/// one, its listening address), which it reaps first.
async fn containerd_runtime(config: &WorkerConfig) -> Result<runtime::containerd::ContainerdRuntime, WorkerError> {
    use runtime::containerd::{ContainerdRuntime, api::GrpcContainerd, network::CniNetwork};
    let settings = &config.containerd;
    let unreachable = |err: runtime::containerd::api::ApiError| WorkerError::Containerd {
        socket: settings.socket.display().to_string(),
        message: err.message,
    };
    let api = GrpcContainerd::connect(&settings.socket, &settings.namespace, &settings.snapshotter)
        .await
        .map_err(unreachable)?;
    // What a restarted worker recognises as its own: its name, else its fixed address, else (several
    // workers of one process on port 0) its slice of sandbox ports.
    let owner = match (&config.name, config.listen.port()) {
        (Some(name), _) => name.clone(),
        (None, 0) => format!("worker-ports-{}", config.sandbox_ports),
        (None, _) => format!("worker-{}", config.listen),
    };
    let network = Arc::new(CniNetwork::new(settings));
    ContainerdRuntime::start(Arc::new(api), network, settings.clone(), &owner).await.map_err(unreachable)
}

/// Stays attached to the control plane: registers on the stream, heartbeats the sandbox count down it, and
/// attaches (so registers) again whenever it ends, the control plane having died or forgotten this worker.
async fn heartbeat(
    client: Arc<dyn WorkerUplink>,
    info: WorkerInfo,
    runtime: Arc<dyn SandboxRuntime>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let peer = AttachingWorker { info, runtime };
    let attached = watch::Sender::new(false);
    let reattach = Notify::new();
    let attachment = Attachment {
        uplink: client.as_ref(),
        peer: &peer,
        interval,
        reattach: &reattach,
        attached: &attached,
        shutdown: &shutdown,
    };
    attachment.stay().await;
}

/// What a worker says on its attachment.
struct AttachingWorker {
    info: WorkerInfo,
    runtime: Arc<dyn SandboxRuntime>,
}

impl AttachingPeer for AttachingWorker {
    fn registration(&self) -> attach_request::Message {
        attach_request::Message::Worker(self.info.clone())
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat { sandboxes: u32::try_from(self.runtime.list().len()).unwrap_or(u32::MAX) }
    }
}

/// Tells the control plane about sandboxes that exited on their own.
async fn report_exits(
    client: Arc<dyn WorkerUplink>,
    worker: String,
    runtime: Arc<dyn SandboxRuntime>,
    shutdown: CancellationToken,
) {
    let mut exits = runtime.exits();
    loop {
        let exited = tokio::select! {
            exited = exits.recv() => exited,
            () = shutdown.cancelled() => return,
        };
        let exited = match exited {
            Ok(exited) => exited,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "missed sandbox exit notifications; the heartbeat's count tells the control plane"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        tracing::info!(sandbox = %exited.id, function = %exited.function, reason = %exited.reason, "sandbox exited");
        let report = SandboxExit {
            worker: worker.clone(),
            sandbox_id: exited.id,
            function: exited.function,
            reason: exited.reason,
        };
        // A lost report would leave a dead endpoint in the data planes until the heartbeat check catches it.
        let mut backoff = Backoff::new(Duration::from_millis(500));
        for attempt in 1..=3 {
            match client.report_sandbox_exit(report.clone()).await {
                Ok(_) => break,
                Err(status) if attempt == 3 => tracing::warn!(%status, "cannot report a sandbox exit"),
                Err(_) => {
                    if !backoff.wait(&shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The gRPC service the control plane calls.
struct WorkerService {
    runtime: Arc<dyn SandboxRuntime>,
    ready_timeout: Duration,
}

fn runtime_status(err: &RuntimeError) -> Status {
    match err {
        RuntimeError::Duplicate(_) => Status::already_exists(err.to_string()),
        RuntimeError::Unknown(_) => Status::not_found(err.to_string()),
        _ => Status::failed_precondition(err.to_string()),
    }
}

#[tonic::async_trait]
impl WorkerRpc for WorkerService {
    async fn create_sandbox(
        &self,
        request: Request<CreateSandboxRequest>,
    ) -> Result<Response<CreateSandboxReply>, Status> {
        let r = request.into_inner();
        let spec = SandboxSpec {
            id: r.sandbox_id,
            function: r.function,
            image: r.image,
            args: r.args,
            env: r.env.into_iter().collect(),
            cpu_millis: r.cpu_millis,
            memory_mib: r.memory_mib,
        };
        let (runtime, ready_timeout) = (Arc::clone(&self.runtime), self.ready_timeout);
        let (reply, created) = tokio::sync::oneshot::channel();
        // Detached, so that a control plane giving up on the call (timeout, lost connection) cannot stop
        // the creation half-way; a sandbox nobody waits for any more is destroyed.
        tokio::spawn(async move {
            let outcome = create_ready(runtime.as_ref(), spec, ready_timeout).await;
            if let Err(Ok(abandoned)) = reply.send(outcome) {
                tracing::info!(sandbox = %abandoned.sandbox_id, "the control plane gave up on this sandbox; destroying it");
                let _ = runtime.destroy(&abandoned.sandbox_id).await;
            }
        });
        let reply =
            created.await.map_err(|_| Status::internal("the sandbox creation task ended without an answer"))??;
        Ok(Response::new(reply))
    }

    async fn kill_sandbox(&self, request: Request<KillSandboxRequest>) -> Result<Response<Ack>, Status> {
        match self.runtime.destroy(&request.into_inner().sandbox_id).await {
            // Killing what is already gone is what the caller wanted.
            Ok(()) | Err(RuntimeError::Unknown(_)) => Ok(Response::new(Ack {})),
            Err(err) => Err(runtime_status(&err)),
        }
    }

    async fn list_sandboxes(&self, _request: Request<Ack>) -> Result<Response<SandboxList>, Status> {
        let sandboxes = self
            .runtime
            .list()
            .into_iter()
            .map(|s| SandboxInfoMsg { sandbox_id: s.id, function: s.function, address: s.address.to_string() })
            .collect();
        Ok(Response::new(SandboxList { sandboxes }))
    }
}

/// Starts a sandbox and waits until it answers its readiness probe; destroys it if it never does.
async fn create_ready(
    runtime: &dyn SandboxRuntime,
    spec: SandboxSpec,
    ready_timeout: Duration,
) -> Result<CreateSandboxReply, Status> {
    let started = Instant::now();
    let sandbox = runtime.create(spec).await.map_err(|e| runtime_status(&e))?;
    let start_micros = started.elapsed().as_micros();
    let probing = Instant::now();
    if let Err(err) = runtime.wait_ready(&sandbox, ready_timeout).await {
        let _ = runtime.destroy(&sandbox.id).await;
        return Err(runtime_status(&err));
    }
    let ready = probing.elapsed();
    let creation_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::debug!(sandbox = %sandbox.id, function = %sandbox.function, start_micros, creation_micros, "sandbox ready");
    let mut steps = runtime.creation_steps(&sandbox.id);
    if !steps.is_empty() {
        steps.push(("ready", ready));
    }
    let steps = steps
        .into_iter()
        .map(|(name, took)| CreationStep {
            name: name.to_owned(),
            micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        })
        .collect();
    Ok(CreateSandboxReply { sandbox_id: sandbox.id, address: sandbox.address.to_string(), creation_micros, steps })
}

fn host_cpu_millis() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000
}

fn host_memory_mib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(1024, |kib| kib / 1024)
}

#[cfg(test)]
mod tests;
