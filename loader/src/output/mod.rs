//! The run folder's output files: `invocations.csv` (streamed, one row per invocation), `summary.json` (from
//! bounded-memory histograms) and `manifest.json` (what is needed to rerun the experiment).

pub mod error;
pub mod invocations;
pub mod manifest;
pub mod stats;
pub mod summary;

pub use error::OutputError;
pub use invocations::{INVOCATIONS_HEADER, InvocationsCsv};
pub use manifest::{HostFacts, ManifestInputs, format_rfc3339, git_commit, trace_checksum, write_manifest};
pub use stats::{Counts, FunctionStats, MAX_RECORDED_US, RunStats};
pub use summary::{Percentiles, RunSummary, StatsSummary, SummaryInputs, summarize, write_summary};

#[cfg(test)]
mod tests;
