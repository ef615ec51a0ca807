//! The trace-driven, open-loop load generator: reads the Azure Functions trace (In-Vitro layout), turns it
//! into a deterministic schedule, and replays it open-loop against a target, recording every invocation.

pub mod config;
pub mod driver;
pub mod output;
pub mod progress;
pub mod record;
pub mod run;
pub mod schedule;
pub mod target;
pub mod trace;
pub mod workload;
