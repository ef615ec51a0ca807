//! The trace-driven, open-loop load generator: reads the Azure Functions trace (In-Vitro layout), turns it
//! into a deterministic schedule, and (in later work) replays it against a target.

pub mod driver;
pub mod output;
pub mod record;
pub mod schedule;
pub mod target;
pub mod trace;
