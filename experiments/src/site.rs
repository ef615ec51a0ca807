//! Where the runs of an experiment go: this machine ([`crate::local::ThisMachine`]) or a cluster's hosts
//! ([`crate::cluster::Cluster`]). The runner asks its site for a run's hosts, where the components go and how the
//! load runs; everything else is the same wherever it runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use loader::config::RunConfig;
use loader::driver::StopSignal;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::binaries::Binaries;
use crate::lifecycle::health::{ControlPlane, ControlPlaneApi};
use crate::lifecycle::host::Host;
use crate::load::{LoadCounts, LoadError};
use crate::roles::Placement;
use crate::spec::DirigentSpec;

/// One run, as its site sees it.
#[derive(Debug, Clone, Copy)]
pub struct RunPlace<'a> {
    /// The run's folder on this machine.
    pub dir: &'a Path,
    /// The run's name on hosts (folder names), in characters safe everywhere.
    pub run_id: &'a str,
    /// How long its load should take (a loader on its own host is given up on well after it).
    pub expected: Duration,
}

/// Where the runs of an experiment go.
pub trait Site: Send + Sync {
    /// The hosts of `run`, indexed as [`Site::placement`] indexes them.
    fn hosts(&self, run: &RunPlace<'_>, binaries: &Binaries) -> Vec<Arc<dyn Host>>;
    /// Which components go where.
    fn placement(&self, spec: &DirigentSpec) -> Placement;
    /// The loader's clock minus this machine's, µs.
    fn loader_clock_offset_us(&self) -> i64;
    /// How the loader's dirigent target names the function image.
    fn image(&self, binaries: &Binaries) -> String;
    /// Who answers the health check: the control plane's HTTP API.
    fn control_plane(&self) -> Arc<dyn ControlPlane> {
        Arc::new(ControlPlaneApi::default())
    }
    /// Runs `run`'s load with `config`, telling `started` when the loader started (failures count from then).
    fn load<'a>(
        &'a self,
        run: &'a RunPlace<'a>,
        config: &'a RunConfig,
        stop: StopSignal,
        started: oneshot::Sender<Instant>,
    ) -> BoxFuture<'a, Result<LoadCounts, LoadError>>;
}
