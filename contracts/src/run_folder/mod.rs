//! The run folder, the contract between the loader (which writes it), the experiments (which add events to it)
//! and the analysis (which reads it): `invocations.csv` ([`columns`]), `summary.json` ([`summary`]) and
//! `manifest.json` ([`manifest`], with its [`events`]). Readers are tolerant where older run folders or vHive's
//! loader differ: missing optional columns and keys are unknown, unknown ones are ignored.

pub mod columns;
pub mod events;
pub mod manifest;
pub mod summary;

pub use columns::{Column, HeaderIndex, INVOCATIONS_HEADER};
pub use events::{Event, EventKind};
pub use manifest::{HostFacts, LoaderVersion, Manifest};
pub use summary::{Counts, Percentiles, RunSummary, StatsSummary};

/// The per-invocation rows.
pub const INVOCATIONS_CSV: &str = "invocations.csv";
/// The loader's counts, percentiles and trustworthy verdict.
pub const SUMMARY_JSON: &str = "summary.json";
/// What is needed to rerun the experiment, and the events during the run.
pub const MANIFEST_JSON: &str = "manifest.json";

/// Values above this (1 hour, in µs) are recorded as this, by the loader's histograms and the analysis' alike.
pub const MAX_RECORDED_US: u64 = 3_600_000_000;
