//! The monolithic control plane: function registry, worker and data-plane registry, per-function
//! autoscaler, placement and sandbox lifecycle.

pub mod api;
pub mod autoscaler;
pub mod core;
pub mod grpc;
pub mod metrics;
pub mod placement;
pub mod replication;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use contracts::config::{RoleConfig, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, MonotonicClock};
use crate::net::{self, BindError};
use crate::peers::{GrpcConnector, PeerConnector};
use crate::proto::dirigent::control_plane_server::ControlPlaneServer;
use crate::proto::dirigent::raft_server::RaftServer;
use crate::supervise;
use replication::{RaftService, ReplicatedStore};
use store::{RegistryStore, StoreError};

pub use self::core::{Core, Membership};
/// The settings (YAML) are the contracts', shared with `experiments`, which writes them.
pub use contracts::config::ControlPlaneConfig;

/// Starting the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// a listening socket could not be bound
    #[error(transparent)]
    Bind(#[from] BindError),
    /// the configuration is invalid
    #[error("invalid control plane config: {0}")]
    Config(contracts::config::InvalidConfig),
    /// the registry store failed
    #[error(transparent)]
    Store(#[from] StoreError),
    /// the gRPC server failed
    #[error("control plane gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// the HTTP API server failed
    #[error("control plane HTTP API failed: {0}")]
    Http(#[source] std::io::Error),
    /// a control loop stopped
    #[error(transparent)]
    Stopped(#[from] crate::supervise::TaskStopped),
}

/// A control plane whose sockets are bound, ready to serve.
pub struct ControlPlane {
    core: Arc<Core>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_address: String,
    http_address: String,
    /// This control plane's replica of the registry, when it is one of several (served on the gRPC server).
    replica: Option<Arc<ReplicatedStore>>,
}

impl ControlPlane {
    /// Binds the sockets and builds the core with the store the config names (with `replication`, this
    /// replica of the replicated registry), the real clock and gRPC peers.
    pub async fn bind(config: ControlPlaneConfig) -> Result<Self, ControlPlaneError> {
        config.validate().map_err(ControlPlaneError::Config)?;
        let replica = start_replica(&config).await?;
        let store = match &replica {
            Some(replica) => Arc::clone(replica) as Arc<dyn RegistryStore>,
            None => store::open_store(&config.store)?,
        };
        match Self::bind_with(config, Arc::new(MonotonicClock::new()), store, Arc::new(GrpcConnector)).await {
            Ok(bound) => Ok(Self { replica, ..bound }),
            Err(error) => {
                // Its Raft node would go on calling the other replicas.
                if let Some(replica) = replica {
                    replica.shutdown().await;
                }
                Err(error)
            }
        }
    }

    /// Binds with a given clock, store and way of reaching workers and data planes.
    pub async fn bind_with(
        config: ControlPlaneConfig,
        clock: Arc<dyn Clock>,
        store: Arc<dyn store::RegistryStore>,
        peers: Arc<dyn PeerConnector>,
    ) -> Result<Self, ControlPlaneError> {
        config.validate().map_err(ControlPlaneError::Config)?;
        let grpc_listener = net::bind("control-plane gRPC", config.grpc_listen).await?;
        let http_listener = net::bind("control-plane HTTP API", config.http_listen).await?;
        let grpc_address = net::advertised(&grpc_listener, &config.advertise_host);
        let http_address = net::advertised(&http_listener, &config.advertise_host);
        let core = Arc::new(Core::new(config, clock, store, peers)?);
        Ok(Self { core, grpc_listener, http_listener, grpc_address, http_address, replica: None })
    }

    /// The gRPC address workers and data planes connect to.
    pub fn grpc_address(&self) -> &str {
        &self.grpc_address
    }

    /// The HTTP API's address.
    pub fn http_address(&self) -> &str {
        &self.http_address
    }

    /// The core (for in-process use: membership watching, tests).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// This control plane's replica of the registry, when `replication` is set.
    pub fn replica(&self) -> Option<&Arc<ReplicatedStore>> {
        self.replica.as_ref()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ControlPlaneError> {
        let core = self.core;
        let raft = self.replica.as_ref().map(|replica| RaftServer::new(RaftService::new(replica.raft().clone())));
        let store_writes = tokio::spawn({
            let core = Arc::clone(&core);
            async move { core.store_peers().await }
        });
        let loops = supervise::spawn("the control plane's autoscaler and peer expiry", shutdown.clone(), {
            let (core, shutdown) = (Arc::clone(&core), shutdown.clone());
            async move { run_loops(core, shutdown).await }
        });
        let api = axum::serve(self.http_listener, api::router(Arc::clone(&core)))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let api = tokio::spawn(async move { api.await.map_err(ControlPlaneError::Http) });
        tracing::info!(grpc = %self.grpc_address, api = %self.http_address, "control plane up");
        let grpc = tonic::transport::Server::builder()
            .add_service(ControlPlaneServer::new(grpc::ControlPlaneService {
                core: Arc::clone(&core),
                shutdown: shutdown.clone(),
                api_address: self.http_address.clone(),
            }))
            .add_optional_service(raft)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(self.grpc_listener).with_nodelay(Some(true)),
                shutdown.clone().cancelled_owned(),
            )
            .await;
        shutdown.cancel();
        if let Some(replica) = &self.replica {
            replica.shutdown().await;
        }
        let loops = supervise::join("the control plane's autoscaler and peer expiry", loops).await;
        store_writes.abort();
        let api = api.await.unwrap_or(Ok(()));
        loops?;
        grpc?;
        api
    }
}

/// This control plane's replica of the registry, when `replication` is set (validation refuses it over any store
/// but SQLite).
async fn start_replica(config: &ControlPlaneConfig) -> Result<Option<Arc<ReplicatedStore>>, StoreError> {
    match (&config.replication, &config.store) {
        (Some(replication), StoreConfig::Sqlite(sqlite)) => {
            Ok(Some(Arc::new(ReplicatedStore::start_over_grpc(replication, sqlite).await?)))
        }
        _ => Ok(None),
    }
}

/// The autoscaler tick and the peer-expiry check.
async fn run_loops(core: Arc<Core>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(core.config.autoscaler.tick);
    let mut expiry = tokio::time::interval(expiry_period(&core.config));
    for interval in [&mut ticks, &mut expiry] {
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // Only the leader acts (with one control plane, this one: it takes the lead at the first check).
    let (mut leading, mut followed) = (false, false);
    loop {
        tokio::select! {
            _ = ticks.tick() => if leading { core.tick().await },
            _ = expiry.tick() => {
                leading = follow_leadership(&core, leading, &mut followed).await;
                if leading {
                    core.expire_peers().await;
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether this control plane leads now; on becoming the leader it rebuilds the cluster state first, after
/// reading the registry again if it `followed` another replica meanwhile (its core read it only at its start).
async fn follow_leadership(core: &Arc<Core>, was_leading: bool, followed: &mut bool) -> bool {
    let claimed = core.leadership() == store::Leadership::This;
    let leading = claimed && (was_leading || core.confirm_leadership().await);
    if leading && !was_leading {
        tracing::info!("this control plane leads: rebuilding the cluster state");
        core.begin_leading();
        if *followed {
            core.take_leadership().await;
        } else {
            core.reconstruct().await;
        }
    } else if !leading {
        *followed = true;
    }
    if was_leading && !leading {
        tracing::warn!("this control plane no longer leads: its autoscaler and peer expiry pause");
        core.stop_leading();
    }
    leading
}

/// How often heartbeat deadlines are checked: often enough that a silent peer is dropped within about its
/// timeout (a quarter of the shorter one), and at least every 50 ms.
fn expiry_period(config: &ControlPlaneConfig) -> Duration {
    let shorter = config.worker_timeout.min(config.data_plane_timeout);
    (shorter / 4).clamp(Duration::from_millis(1), Duration::from_millis(50))
}
