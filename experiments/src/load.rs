//! The load of a run, wherever the loader runs: with the loader library in this process, or as the loader binary on
//! a cluster's loader host ([`crate::cluster::loader`]).

/// What a run's loader measured (on a cluster: read from its `summary.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Invocations sent, warm-up included.
    pub sent: u64,
    /// Of those, successful.
    pub ok: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Whether the send lag stayed under its threshold.
    pub trustworthy: bool,
}

/// Why a run's load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// "load", with what was wrong with the spec's load for this run.
    #[error("load")]
    Spec(#[source] crate::spec::SpecInvalid),
    /// "load", with what the loader library said.
    #[error("load")]
    InProcess(#[source] loader::run::RunError),
    /// "load", with what went wrong on the loader host.
    #[error("load")]
    OnHost(#[source] crate::cluster::loader_host::LoaderHostError),
    /// "cannot create {path}", with the cause.
    #[error("cannot create {path}", path = .path.display())]
    Folder {
        /// The run's folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the load with the loader library here.
pub async fn in_process(
    config: &loader::config::RunConfig,
    stop: loader::driver::StopSignal,
) -> Result<LoadCounts, LoadError> {
    let report = loader::run::run(config, stop).await.map_err(LoadError::InProcess)?;
    let replay = &report.replay;
    Ok(LoadCounts { sent: replay.sent, ok: replay.ok, failed: replay.failed, trustworthy: report.trustworthy })
}
