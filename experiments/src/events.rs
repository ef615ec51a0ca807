//! The events of a run (injected kills and restarts, and those that could not be done), in the shape the run's
//! `manifest.json` holds and `analysis` reads: built and written here only. They stay untyped JSON values here until
//! the manifest's event type has one definition shared with the loader and the analysis.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Why the events could not be added to the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// "cannot read {path}", with the cause.
    #[error("cannot read {path}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "{path} is not JSON", with the cause.
    #[error("{path} is not JSON")]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// "cannot write {path}", with the cause.
    #[error("cannot write {path}")]
    Write {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// An event that happened: `kind` (`kill`, `restart`) of `component` on `host`, at `unix_us` on the loader's clock.
pub fn event(kind: &str, component: &str, host: &str, unix_us: i128, detail: Option<&str>) -> Value {
    let role = component.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    let unix_us = i64::try_from(unix_us).unwrap_or_default();
    json!({ "kind": kind, "component": component, "role": role, "host": host, "unixUs": unix_us, "detail": detail })
}

/// An event that could not be done: `{kind}-failed` of `component`, with why.
pub fn failed(kind: &str, component: &str, error: &str) -> Value {
    json!({ "kind": format!("{kind}-failed"), "component": component, "detail": error })
}

/// Appends `events` to the run's `manifest.json` in `dir`.
pub fn append_to_manifest(dir: &Path, events: &[Value]) -> Result<(), ManifestError> {
    if events.is_empty() {
        return Ok(());
    }
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
    let mut manifest: Value =
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
    match manifest.get_mut("events").and_then(Value::as_array_mut) {
        Some(list) => list.extend(events.iter().cloned()),
        None => manifest["events"] = Value::Array(events.to_vec()),
    }
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(|source| ManifestError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_role_and_carry_the_time() {
        let kill = event("kill", "worker-12", "root@10.0.0.4:22", 1_700_000_000_000_000, Some("SIGKILL"));
        assert_eq!(kill["role"], "worker");
        assert_eq!(kill["unixUs"], 1_700_000_000_000_000_i64);
        assert_eq!(event("restart", "data-plane", "h", 1, None)["role"], "data-plane");
        assert!(event("restart", "data-plane", "h", 1, None)["detail"].is_null());
        assert_eq!(failed("kill", "worker-1", "no such component")["kind"], "kill-failed");
    }

    #[test]
    fn events_are_appended_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, r#"{"seed": 7, "events": [{"kind": "kill"}]}"#).unwrap();
        append_to_manifest(dir.path(), &[json!({ "kind": "restart" })]).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        assert_eq!(back["events"], json!([{ "kind": "kill" }, { "kind": "restart" }]));
        assert_eq!(back["seed"], 7);
        let error = append_to_manifest(&dir.path().join("none"), &[json!({})]).unwrap_err();
        assert!(crate::error_chain(&error).contains("none/manifest.json"), "{error}");
    }
}
