//! Sandbox runtimes behind one trait: create, readiness, destroy, list, exit notifications.

pub mod containerd;
pub mod ports;
pub mod process;
pub mod readiness;
pub mod simulated;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

/// Which runtime a worker uses (a config key, so the contracts' type; `worker::runtime_for` maps it to an
/// implementation).
pub use contracts::config::RuntimeKind;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Unique id chosen by the control plane.
    pub id: String,
    /// The function it serves.
    pub function: String,
    /// The image; for the process runtime, an executable path.
    pub image: String,
    /// Arguments to the image's entry point.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// CPU request, millicores.
    pub cpu_millis: u64,
    /// Memory request, MiB.
    pub memory_mib: u64,
}

/// A started sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// Its id.
    pub id: String,
    /// The function it serves.
    pub function: String,
    /// Where it serves HTTP.
    pub address: SocketAddr,
}

/// The steps of a sandbox's creation, in order, with how long each took (`image`, `snapshot`, ...).
pub type Steps = Vec<(&'static str, Duration)>;

/// A sandbox ended without being destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxExited {
    /// Its id.
    pub id: String,
    /// The function it served.
    pub function: String,
    /// Exit status or signal, as text.
    pub reason: String,
}

/// A runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// the image could not be started
    #[error("cannot start sandbox {id} from image '{image}': {source}")]
    Start {
        /// The sandbox.
        id: String,
        /// The image.
        image: String,
        /// The cause.
        source: std::io::Error,
    },
    /// no free port for the sandbox
    #[error("no free port for sandbox {id}: {source}")]
    Port {
        /// The sandbox.
        id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// the sandbox exited before it became ready
    #[error("sandbox {id} exited before it became ready: {reason}")]
    ExitedEarly {
        /// The sandbox.
        id: String,
        /// Exit status.
        reason: String,
    },
    /// the sandbox did not answer its readiness probe in time
    #[error("sandbox {id} did not answer its health probe at {address} within {timeout:?}")]
    NotReady {
        /// The sandbox.
        id: String,
        /// The probed address.
        address: SocketAddr,
        /// The deadline.
        timeout: Duration,
    },
    /// a sandbox with this id already exists
    #[error("a sandbox with id {0} already exists")]
    Duplicate(String),
    /// no sandbox with this id exists
    #[error("no sandbox with id {0}")]
    Unknown(String),
    /// the sandbox could not be killed
    #[error("cannot kill sandbox {id}: {source}")]
    Kill {
        /// The sandbox.
        id: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// How a worker runs sandboxes.
pub trait SandboxRuntime: Send + Sync + 'static {
    /// Starts a sandbox; returns once it is started, not yet ready.
    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxInfo, RuntimeError>>;

    /// Returns once the sandbox answers its readiness probe, or fails at `timeout` or when it exits.
    fn wait_ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> BoxFuture<'_, Result<(), RuntimeError>>;

    /// Stops a sandbox and everything it started, and reaps it.
    fn destroy(&self, id: &str) -> BoxFuture<'_, Result<(), RuntimeError>>;

    /// The sandboxes alive now.
    fn list(&self) -> Vec<SandboxInfo>;

    /// Notifications of sandboxes that exited without `destroy`; a lagging receiver should `list`.
    fn exits(&self) -> broadcast::Receiver<SandboxExited>;

    /// How the creation of a living sandbox went, step by step; empty for runtimes that have no steps.
    fn creation_steps(&self, _id: &str) -> Steps {
        Steps::new()
    }

    /// Destroys every sandbox (worker shutdown).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
