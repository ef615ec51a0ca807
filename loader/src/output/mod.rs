//! The run folder's output files: `invocations.csv` (streamed, one row per invocation), `summary.json` (from
//! bounded-memory histograms) and `manifest.json` (what is needed to rerun the experiment). Their schema is
//! `contracts::run_folder`; this module computes and writes them.

pub mod error;
pub mod invocations;
pub mod manifest;
pub mod stats;
pub mod summary;

pub use error::OutputError;
pub use invocations::InvocationsCsv;
pub use manifest::{ManifestInputs, format_rfc3339, git_commit, trace_checksum, write_manifest};
pub use stats::{FunctionStats, RunStats};
pub use summary::{SummaryInputs, percentiles_of, summarize, write_summary};

#[cfg(test)]
mod tests;
