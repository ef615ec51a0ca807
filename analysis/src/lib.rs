//! Metrics, plots, reports, run comparison and the regression gate over loader run folders.
//!
//! A run folder holds `invocations.csv` (the loader's superset of the vHive loader's columns; a vHive CSV with
//! only its own columns is read too), `summary.json` and `manifest.json` (both optional). [`analyze`] streams the
//! CSV once into histograms and per-function sums (memory grows with functions and timeline windows, never with
//! rows) and returns a [`RunAnalysis`]; the writers turn analyses into files:
//!
//! ```no_run
//! use std::path::Path;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = analysis::Options::default();
//! let baseline = analysis::analyze(Path::new("results/a"), &options)?;
//! let candidate = analysis::analyze(Path::new("results/b"), &options)?;
//! analysis::report::write(&candidate, Path::new("results/b"))?; // report.md, report.json, plots
//! let runs = [("a".to_owned(), baseline.clone()), ("b".to_owned(), candidate.clone())];
//! analysis::compare::write(&runs, Path::new("results/a-vs-b"))?; // same plots, one curve per run; ratios
//! analysis::sweep::write(&[(10.0, baseline.clone()), (50.0, candidate.clone())], Path::new("results/sweep"))?;
//! let verdict = analysis::gate(&baseline, &candidate, analysis::Metric::P99SchedulingLatency, 0.10)?;
//! println!("{}", verdict.reason);
//! # Ok(()) }
//! ```
//!
//! Definitions (the Dirigent artifact's, see `ARCHITECTURE.md`):
//! - scheduling latency of an invocation = response time − the execution time the function reported (µs), over
//!   successful invocations;
//! - per-function scheduling latency = the mean of a function's scheduling latencies; reports show the
//!   distribution of these over functions;
//! - per-function slowdown = geometric mean over the function's successful invocations of response time /
//!   requested duration; invocations with slowdown < 1 are counted ([`Counts::slowdown_below_one`]) and excluded;
//! - cold-start share, failure share (connection failures, function timeouts and other errors separately),
//!   achieved vs requested rate, send lag; the loader's trustworthy flag is carried into every output;
//! - warm-up rows (phase 1) and rows whose intended time falls within [`Options::exclude_leading`] of the run's
//!   start are excluded;
//! - the manifest's events (e.g. injected failures with `unixUs`) are placed on the timeline's axis
//!   ([`TimelineEvent::at_s`]), listed in `report.md` and marked on the timeline plot;
//! - per timed kill, the recovery ([`Recovery`]): failures until the next kill, and the time until an invocation,
//!   and a cold start, succeeded again.
//!
//! Percentiles are p50, p90, p99, p99.9 and max. The gate's statistical method is described in [`gate`](mod@gate).

mod analyze;
mod columns;
pub mod compare;
mod error;
mod events;
mod figures;
pub mod gate;
mod markdown;
pub mod meta;
mod model;
mod options;
mod output;
mod plot;
mod recovery;
pub mod report;
pub mod sweep;
mod timeline;

pub use analyze::analyze;
pub use error::AnalyzeError;
pub use gate::{GateError, GateVerdict, Metric, gate, parse_regression};
pub use model::{
    Counts, FunctionResult, Percentiles, Rates, Recovery, RunAnalysis, Samples, Shares, Timeline, TimelineEvent, Window,
};
pub use options::Options;
pub use output::ReportError;
