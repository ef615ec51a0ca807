//! The events of a run (injected kills and restarts, and those that could not be done) as the run folder's
//! contract types ([`contracts::run_folder::Event`]), and adding them to the run's `manifest.json`.

use std::path::{Path, PathBuf};

use contracts::json_file::{JsonFileError, write_pretty};
use contracts::run_folder::{Event, EventKind, MANIFEST_JSON};
use serde_json::Value;

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
    /// The manifest could not be written (the error names it).
    #[error(transparent)]
    Write(#[from] JsonFileError),
}

/// An event that happened: `kind` of `component` on `host`, at `unix_us` on the loader's clock (a time outside
/// i64 becomes 0). Its role is the component's name without the instance number (`worker-12` → `worker`).
pub fn event(kind: EventKind, component: &str, host: &str, unix_us: i128, detail: Option<&str>) -> Event {
    let role = component.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    Event {
        component: Some(component.into()),
        detail: detail.map(String::from),
        host: Some(host.into()),
        kind: Some(kind),
        role: Some(role.into()),
        unix_us: Some(i64::try_from(unix_us).unwrap_or_default()),
    }
}

/// Appends `events` to the run's `manifest.json` in `dir`. The rest of the document is kept as it was read, not
/// rewritten from the contract type, so keys a newer loader wrote survive.
pub fn append_to_manifest(dir: &Path, events: &[Event]) -> Result<(), ManifestError> {
    if events.is_empty() {
        return Ok(());
    }
    let path = dir.join(MANIFEST_JSON);
    let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
    let mut manifest: Value =
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
    let events = events.iter().map(|event| serde_json::to_value(event).expect("an event is JSON"));
    match manifest.get_mut("events").and_then(Value::as_array_mut) {
        Some(list) => list.extend(events),
        None => manifest["events"] = Value::Array(events.collect()),
    }
    Ok(write_pretty(&path, &manifest)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_name_the_role_and_carry_the_time() {
        let json = |event: Event| serde_json::to_value(event).unwrap();
        let kill =
            json(event(EventKind::Kill, "worker-12", "root@10.0.0.4:22", 1_700_000_000_000_000, Some("SIGKILL")));
        assert_eq!(kill["role"], "worker");
        assert_eq!(kill["unixUs"], 1_700_000_000_000_000_i64);
        assert_eq!(json(event(EventKind::Restart, "data-plane", "h", 1, None))["role"], "data-plane");
        assert!(json(event(EventKind::Restart, "data-plane", "h", 1, None))["detail"].is_null());
        assert_eq!(json(Event::failed(EventKind::Kill, "worker-1", "no such component"))["kind"], "kill-failed");
    }

    #[test]
    fn events_are_appended_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, r#"{"seed": 7, "events": [{"kind": "kill"}]}"#).unwrap();
        let restart = Event { kind: Some(EventKind::Restart), detail: Some("d".into()), ..Event::default() };
        append_to_manifest(dir.path(), &[restart]).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        assert_eq!(back["events"], json!([{ "kind": "kill" }, { "kind": "restart", "detail": "d" }]));
        assert_eq!(back["seed"], 7);
        let error = append_to_manifest(&dir.path().join("none"), &[Event::default()]).unwrap_err();
        assert!(crate::error_chain(&error).contains("none/manifest.json"), "{error}");
    }
}
