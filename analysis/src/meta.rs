//! Reading the run folder's JSON files as the contract types ([`contracts::run_folder`]): `summary.json` (the
//! loader's trustworthy flag and send-lag figures) and `manifest.json` (config, seed, git commit, host, events).
//! Both are optional, so a vHive run folder (CSV only) works; unknown keys are ignored so newer loaders stay
//! readable, and an error names the file, the key and the line.

use std::path::Path;

use contracts::run_folder::{MANIFEST_JSON, Manifest, RunSummary, SUMMARY_JSON};
use serde::de::DeserializeOwned;

use crate::AnalyzeError;

/// Config keys shown in reports, as JSON pointers into the manifest's `config`.
const CONFIG_KEYS: [&str; 12] = [
    "/workload/kind",
    "/workload/rate",
    "/workload/duration",
    "/trace",
    "/slice/start_minute",
    "/slice/minutes",
    "/slice/functions",
    "/schedule/compression",
    "/schedule/iat",
    "/warmup_minutes",
    "/target/kind",
    "/send_lag_threshold",
];

/// The config keys a report shows, as (dotted key, value) pairs, for those present in `manifest`.
pub fn config_summary(manifest: &Manifest) -> Vec<(String, String)> {
    CONFIG_KEYS
        .iter()
        .filter_map(|pointer| {
            let value = manifest.config.pointer(pointer)?;
            let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            Some((pointer[1..].replace('/', "."), text))
        })
        .collect()
}

/// Reads `summary.json` in `dir`, or `None` when the file does not exist.
pub fn read_summary(dir: &Path) -> Result<Option<RunSummary>, AnalyzeError> {
    read_optional(&dir.join(SUMMARY_JSON))
}

/// Reads `manifest.json` in `dir`, or `None` when the file does not exist.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, AnalyzeError> {
    read_optional(&dir.join(MANIFEST_JSON))
}

fn read_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, AnalyzeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AnalyzeError::Io { path: path.to_path_buf(), source }),
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    // serde_path_to_error names the offending key; serde_json's own error carries the line and column.
    serde_path_to_error::deserialize(&mut deserializer).map(Some).map_err(|error| AnalyzeError::Json {
        path: path.to_path_buf(),
        key: error.path().to_string(),
        source: error.into_inner(),
    })
}
