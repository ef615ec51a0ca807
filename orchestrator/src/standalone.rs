//! `dirigent standalone`: every role in one process, talking real gRPC over loopback.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::StandaloneConfig;
use crate::control_plane::{ControlPlane, ControlPlaneError, Membership};
use crate::data_plane::{DataPlane, DataPlaneError};
use crate::worker::{Worker, WorkerError};

/// Starting or running the standalone cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// the control plane failed
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// the data plane failed
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    /// a worker failed
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// a role's task panicked
    #[error(transparent)]
    Panicked(#[from] crate::supervise::TaskStopped),
    /// the roles did not find each other in time
    #[error("the data plane and {workers} workers did not register within {timeout:?}")]
    NotReady {
        /// Workers expected.
        workers: u32,
        /// How long it waited.
        timeout: Duration,
    },
}

/// Where a started cluster can be reached.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Addresses {
    /// The control plane's HTTP API.
    pub api: String,
    /// The control plane's gRPC service.
    pub grpc: String,
    /// The data plane's proxy.
    pub proxy: String,
}

/// All roles, bound and ready to serve.
pub struct Standalone {
    control_plane: ControlPlane,
    data_plane: DataPlane,
    workers: Vec<Worker>,
}

impl Standalone {
    /// Binds every role's sockets; the data plane and workers point at this control plane.
    pub async fn bind(mut config: StandaloneConfig) -> Result<Self, StandaloneError> {
        let control_plane = ControlPlane::bind(config.control_plane.clone()).await?;
        config.data_plane.control_plane = control_plane.grpc_address().to_owned();
        let data_plane = DataPlane::bind(config.data_plane.clone()).await?;
        let mut workers = Vec::new();
        for index in 0..config.workers {
            let mut worker = config.worker.clone();
            worker.control_plane = control_plane.grpc_address().to_owned();
            if worker.listen.port() != 0 {
                let port = u16::try_from(u32::from(worker.listen.port()) + index).unwrap_or(0);
                worker.listen.set_port(port);
            }
            worker.name = config.worker.name.as_ref().map(|n| format!("{n}-{index}"));
            // Workers on one host must not hand out the same sandbox ports.
            worker.sandbox_ports = config.worker.sandbox_ports.slice(config.workers, index);
            workers.push(Worker::bind(worker).await?);
        }
        Ok(Self { control_plane, data_plane, workers })
    }

    /// Where the cluster can be reached.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            api: self.control_plane.http_address().to_owned(),
            grpc: self.control_plane.grpc_address().to_owned(),
            proxy: self.data_plane.proxy_address().to_owned(),
        }
    }

    /// Serves until `shutdown`; calls `on_ready` once the data plane and every worker have registered.
    pub async fn serve(self, shutdown: CancellationToken, on_ready: impl FnOnce()) -> Result<(), StandaloneError> {
        let expected = Membership { workers: self.workers.len(), data_planes: 1 };
        let mut membership = self.control_plane.core().membership();
        let control_plane = spawn_role(&shutdown, self.control_plane.serve(shutdown.clone()));
        let data_plane = spawn_role(&shutdown, self.data_plane.serve(shutdown.clone()));
        let workers: Vec<_> =
            self.workers.into_iter().map(|w| spawn_role(&shutdown, w.serve(shutdown.clone()))).collect();
        let timeout = Duration::from_secs(10);
        // `wait_for` hands back a read guard on the membership value: it must go at once, or every later
        // membership change (a worker expiring or registering again) blocks forever on the write lock.
        let ready = matches!(tokio::time::timeout(timeout, membership.wait_for(|m| *m == expected)).await, Ok(Ok(_)));
        let result = if ready {
            on_ready();
            shutdown.cancelled().await;
            Ok(())
        } else {
            Err(StandaloneError::NotReady { workers: u32::try_from(expected.workers).unwrap_or(0), timeout })
        };
        shutdown.cancel();
        // Workers first in the error report: their shutdown is what kills the sandboxes.
        for worker in workers {
            joined("a worker", worker).await?;
        }
        joined("the data plane", data_plane).await?;
        joined("the control plane", control_plane).await?;
        result
    }
}

/// Spawns a role whose end, by return or by panic, stops the others.
fn spawn_role<T: Send + 'static>(
    shutdown: &CancellationToken,
    role: impl std::future::Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    let stops_the_others = shutdown.clone().drop_guard();
    tokio::spawn(async move {
        let _stops_the_others = stops_the_others;
        role.await
    })
}

/// A role's result; a panic is an error, not a clean stop.
async fn joined<E>(role: &'static str, handle: JoinHandle<Result<(), E>>) -> Result<(), StandaloneError>
where
    StandaloneError: From<E>,
{
    match handle.await {
        Ok(result) => result.map_err(StandaloneError::from),
        Err(err) => Err(crate::supervise::TaskStopped { task: role, reason: err.to_string() }.into()),
    }
}
