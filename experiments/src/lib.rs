//! Experiments: one YAML spec, one command. Starts the platform under test (the bundled orchestrator, as processes
//! on this machine or on a cluster's hosts over SSH), replays the load (with the loader library here, or the loader
//! binary on the cluster's loader host), injects failures, stops the platform, checks that nothing survived,
//! collects everything and analyses the runs.

pub mod dirigent;
pub mod failures;
pub mod platform;
pub mod process;
pub mod provision;
pub mod remote;
pub mod runner;
pub mod spec;
pub mod ssh;
