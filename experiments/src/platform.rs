//! The platform of one run: started by the runner (its [`Lifecycle`], on this machine or on a cluster's hosts), or
//! one the runner neither starts nor stops (Knative, Lambda, any HTTP or gRPC endpoint).

use contracts::run_folder::Event;

use crate::lifecycle::{Lifecycle, LifecycleError, StopReport};

/// Why a failure injection could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The lifecycle could not do it.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// "cannot {action} {component}: the runner did not start this platform".
    #[error("cannot {action} {component}: the runner did not start this platform")]
    External {
        /// `kill` or `restart`.
        action: &'static str,
        /// The component asked for.
        component: String,
    },
}

/// The platform of a run.
#[derive(Debug)]
pub enum Platform {
    /// The bundled orchestrator, started by the runner.
    Started(Box<Lifecycle>),
    /// A platform the runner neither starts nor stops.
    External,
}

impl Platform {
    /// The control planes' HTTP APIs (`address:port`, `;`-separated: every replica's), where the loader
    /// registers; empty for an external platform.
    pub fn api(&self) -> String {
        match self {
            Platform::Started(lifecycle) => lifecycle.apis(),
            Platform::External => String::new(),
        }
    }

    /// The data planes' proxies (`address:port`, `;`-separated), where the loader sends; empty for an external
    /// platform.
    pub fn proxies(&self) -> String {
        match self {
            Platform::Started(lifecycle) => lifecycle.proxies(),
            Platform::External => String::new(),
        }
    }

    /// Kills component `name` with SIGKILL; returns the event for the manifest.
    pub async fn kill(&mut self, name: &str) -> Result<Event, PlatformError> {
        match self {
            Platform::Started(lifecycle) => Ok(lifecycle.kill(name).await?),
            Platform::External => Err(PlatformError::External { action: "kill", component: name.into() }),
        }
    }

    /// Starts component `name` again; returns the event for the manifest (stamped when it was ready).
    pub async fn restart(&mut self, name: &str) -> Result<Event, PlatformError> {
        match self {
            Platform::Started(lifecycle) => Ok(lifecycle.restart(name).await?),
            Platform::External => Err(PlatformError::External { action: "restart", component: name.into() }),
        }
    }

    /// Stops every component and looks for survivors (see [`Lifecycle::stop`]); nothing for an external platform.
    pub async fn stop(&mut self) -> StopReport {
        match self {
            Platform::Started(lifecycle) => lifecycle.stop().await,
            Platform::External => StopReport::default(),
        }
    }
}
