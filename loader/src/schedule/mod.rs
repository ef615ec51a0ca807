//! Turning a trace into a deterministic schedule of invocations.
//!
//! Synthetic loads (constant RPS, the cold-start sweep) come from [`ConstantRate`] instead of a trace.
//!
//! Pipeline: [`ScheduleConfig`] (validated) + [`Trace`](crate::trace::Trace) → [`schedule`] / [`schedule_window`] →
//! [`ScheduleIter`] (invocations in global time order, one trace minute buffered at a time) → optionally
//! [`write_schedule`] (the dry-run CSV of `loader schedule --out FILE`).
//!
//! Determinism contract (see [`seed`] for the exact derivation): what a function does in a trace minute depends
//! only on the config seed, the function's `(hash_owner, hash_app, hash_function)` and the trace minute, so adding or
//! removing functions or slicing the trace never changes another function's or another minute's invocations.

pub mod config;
pub mod constant;
pub mod csv;
pub mod generate;
pub mod iat;
pub mod sample;
pub mod seed;

pub use config::{IatDistribution, ScheduleConfig, ScheduleConfigError};
pub use constant::{Arrivals, ConstantRate, ConstantRateCounts, ConstantRateIter};
pub use csv::{SCHEDULE_CSV_HEADER, write_schedule};
pub use generate::{
    Invocation, MinuteWindow, Phase, ScheduleError, ScheduleIter, schedule, schedule_window, schedule_window_shared,
};
