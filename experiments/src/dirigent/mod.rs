//! The bundled orchestrator as the platform under test: role configs from the spec, and the local cluster of
//! `dirigent` processes.

pub mod config;
pub mod local;
pub mod role;

pub use local::{ClusterError, LocalDirigent, StopReport};
