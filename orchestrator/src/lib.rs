//! A reference FaaS orchestrator after Dirigent (Cvetković et al., SOSP'24).
//!
//! Three roles talk gRPC to each other: the [`control_plane`] (registry, autoscaler, placement, sandbox
//! lifecycle), the [`data_plane`] (invocation proxy with per-function cold-start queues) and the [`worker`]
//! (sandboxes behind the [`worker::runtime::SandboxRuntime`] trait). [`standalone`] runs them all in one
//! process. [`function`] is the workload function every benchmark deploys (binary `trace-function`).
//! [`peers`] holds the roles' calls to each other behind traits; with the `test-util` feature,
//! `test_util` has a recording fake of each of those ports and of the runtime, and the runtime contract suite.

/// The generated gRPC code, kept at its old path: it lives in `contracts` so the loader shares it without
/// linking the orchestrator.
pub use contracts::proto;

pub mod clock;
pub mod config;
pub mod control_plane;
pub mod data_plane;
pub mod function;
pub mod net;
pub mod peers;
pub mod standalone;
pub mod supervise;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod worker;
