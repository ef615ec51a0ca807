//! Experiments: one YAML spec, one command. Starts the platform under test (for now the bundled orchestrator as
//! local processes), replays the load with the loader library, stops the platform, checks that nothing survived,
//! and analyses the runs.

pub mod dirigent;
pub mod failures;
pub mod platform;
pub mod process;
pub mod remote;
pub mod runner;
pub mod spec;
pub mod ssh;
