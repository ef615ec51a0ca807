//! What to analyse of a run: which rows count and how wide the timeline's windows are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Analysis options; every field has a default, so the struct can sit inside an experiment spec's YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Rows whose intended send time falls within this long after the run's start are excluded (e.g. the Dirigent
    /// paper's first 10 minutes). The start is the manifest's `startedUnixUs`, so the loader's warm-up counts
    /// towards it; without a manifest it is the first row's time.
    #[serde(with = "humantime_serde")]
    pub exclude_leading: Duration,
    /// Analyse warm-up rows (phase 1) too; they are excluded by default.
    pub include_warmup: bool,
    /// Width of one timeline window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { exclude_leading: Duration::ZERO, include_warmup: false, window: Duration::from_secs(10) }
    }
}
