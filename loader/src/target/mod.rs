//! Where invocations go: the [`Target`] trait (deploy the functions, invoke one, tear down) and its
//! implementations.

pub mod cleanup;
pub mod dirigent;
pub mod grpc;
pub mod http;
pub mod knative;
pub mod lambda;
mod proxies;

use std::collections::BTreeMap;

pub use futures_util::future::BoxFuture;

use crate::record::{Outcome, PlatformBreakdown};
use crate::schedule::Invocation;

/// One function to deploy on a target, with its scaling bounds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionDeployment {
    /// Stable function name (what [`Target::invoke`] is later called with).
    pub name: String,
    /// Container image or artifact, where the platform needs one.
    pub image: Option<String>,
    /// Requested CPU per invocation, ms (the trace's typical runtime), where the platform wants it.
    pub requested_cpu_ms: u32,
    /// Requested memory, MiB.
    pub requested_memory_mib: u32,
    /// Lower scaling bound (sandboxes kept warm).
    pub min_scale: u32,
    /// Upper scaling bound (0: the platform's default).
    pub max_scale: u32,
    /// Platform-specific extra fields, passed through as given.
    pub extra: BTreeMap<String, String>,
}

/// What a target says about one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResponse {
    /// How it ended.
    pub outcome: Outcome,
    /// Execution time the function reported, µs.
    pub actual_duration_us: Option<u64>,
    /// Memory the function reported using, MiB.
    pub actual_memory_mib: Option<u32>,
    /// Whether it met a cold start, where the platform or function tells.
    pub cold_start: Option<bool>,
    /// The platform's breakdown, where it gives one.
    pub breakdown: PlatformBreakdown,
    /// Data planes that refused the connection before another one took the request (see
    /// [`dirigent::DirigentTarget`]).
    pub failovers: u32,
}

impl TargetResponse {
    /// A response that carries only an outcome (typically a failure before any reply).
    pub fn from_outcome(outcome: Outcome) -> Self {
        TargetResponse {
            outcome,
            actual_duration_us: None,
            actual_memory_mib: None,
            cold_start: None,
            breakdown: PlatformBreakdown::default(),
            failovers: 0,
        }
    }
}

/// Why deploying to or tearing down a target failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target's configuration is unusable (what and why).
    #[error("invalid target configuration: {0}")]
    Config(String),
    /// Deploying a function failed.
    #[error("deploying function '{function}' failed: {message}")]
    Deploy {
        /// The function that failed.
        function: String,
        /// What the platform said.
        message: String,
    },
    /// Tearing down failed.
    #[error("teardown failed: {0}")]
    Teardown(String),
}

/// A FaaS platform or endpoint the loader drives; object-safe so the driver holds an `Arc<dyn Target>`.
///
/// Deployment may be asynchronous and slow on some platforms (minutes); [`Target::deploy`] returns only when the
/// functions can take invocations.
pub trait Target: Send + Sync {
    /// Deploys `functions` and returns when they are ready to be invoked.
    fn deploy<'a>(&'a self, functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Invokes `function_name` once with `invocation`'s requested runtime and memory; never panics on failure,
    /// failures are the response's [`Outcome`].
    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse>;

    /// Removes what [`Target::deploy`] created.
    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>>;
}
