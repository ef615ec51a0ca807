//! The manifest's `events`: what happened to the platform during a run (injected kills and restarts, and those
//! that could not be done), on the loader's clock. The experiments write them; the analysis places them on its
//! timeline. Events may come from other tools too, so reading never fails: a key that is missing, null or of
//! another type is `None` (a non-string text value is kept as its JSON text), an unknown kind is kept by name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// What kind of event it is; written as its name (`kill`, `restart-failed`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A component was killed with SIGKILL.
    Kill,
    /// A component was started again.
    Restart,
    /// A kill could not be done.
    KillFailed,
    /// A restart could not be done.
    RestartFailed,
    /// A kind this version does not know (from a newer or another tool), by name.
    Other(String),
}

impl EventKind {
    /// The name in `manifest.json`.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Kill => "kill",
            EventKind::Restart => "restart",
            EventKind::KillFailed => "kill-failed",
            EventKind::RestartFailed => "restart-failed",
            EventKind::Other(name) => name,
        }
    }

    /// The kind that says this action could not be done (`kill` → `kill-failed`).
    pub fn failed(&self) -> EventKind {
        match self {
            EventKind::Kill => EventKind::KillFailed,
            EventKind::Restart => EventKind::RestartFailed,
            other => EventKind::from(format!("{}-failed", other.as_str())),
        }
    }
}

impl From<String> for EventKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "kill" => EventKind::Kill,
            "restart" => EventKind::Restart,
            "kill-failed" => EventKind::KillFailed,
            "restart-failed" => EventKind::RestartFailed,
            _ => EventKind::Other(name),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One event. The fields are in alphabetical order because that is the order the experiments wrote them in as
/// JSON values, so typed writing stays byte-compatible with existing run folders and experiment records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The component it happened to, e.g. `worker-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Further detail: the signal, or why the action could not be done (`null` when there is none).
    pub detail: Option<String>,
    /// The host the component runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<EventKind>,
    /// The component's role, e.g. `worker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When, Unix µs on the loader's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_us: Option<i64>,
}

impl Event {
    /// An action of `kind` on `component` that could not be done, with why: `{kind}-failed`, untimed.
    pub fn failed(kind: EventKind, component: &str, error: &str) -> Self {
        Event {
            kind: Some(kind.failed()),
            component: Some(component.into()),
            detail: Some(error.into()),
            ..Event::default()
        }
    }

    /// Reads an event from any JSON value (see the module's rules); a value that is not an object is an event
    /// with nothing known.
    pub fn from_value(value: &Value) -> Self {
        let text = |key: &str| match value.get(key)? {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        };
        Event {
            component: text("component"),
            detail: text("detail"),
            host: text("host"),
            kind: text("kind").map(EventKind::from),
            role: text("role"),
            unix_us: value.get("unixUs").and_then(unix_us),
        }
    }
}

/// An integer as it is; a fractional number (another tool's) rounded to the µs.
fn unix_us(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|us| us.is_finite()).map(|us| us.round() as i64))
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Event::from_value(&value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_events_write_what_the_json_values_did() {
        let kill = Event {
            component: Some("worker-12".into()),
            detail: Some("SIGKILL".into()),
            host: Some("root@10.0.0.4:22".into()),
            kind: Some(EventKind::Kill),
            role: Some("worker".into()),
            unix_us: Some(1_700_000_000_000_000),
        };
        let old = json!({ "kind": "kill", "component": "worker-12", "role": "worker", "host": "root@10.0.0.4:22",
                          "unixUs": 1_700_000_000_000_000_i64, "detail": "SIGKILL" });
        assert_eq!(serde_json::to_string_pretty(&kill).unwrap(), serde_json::to_string_pretty(&old).unwrap());
        let restart = Event { detail: None, kind: Some(EventKind::Restart), ..kill };
        assert!(serde_json::to_value(&restart).unwrap()["detail"].is_null(), "no detail is null, not absent");
        let failed = Event::failed(EventKind::Restart, "worker-1", "no such component");
        let old = json!({ "kind": "restart-failed", "component": "worker-1", "detail": "no such component" });
        assert_eq!(serde_json::to_string(&failed).unwrap(), serde_json::to_string(&old).unwrap());
    }

    #[test]
    fn round_trips_and_keeps_unknown_kinds() {
        let failed = Event::failed(EventKind::Kill, "w", "gone");
        assert_eq!(serde_json::from_value::<Event>(serde_json::to_value(&failed).unwrap()).unwrap(), failed);
        let newer: Event = serde_json::from_value(json!({"kind": "partition", "unixUs": 5})).unwrap();
        assert_eq!(newer.kind, Some(EventKind::Other("partition".into())));
        assert_eq!(serde_json::to_value(&newer).unwrap()["kind"], "partition");
        assert_eq!(EventKind::from("kill-failed".to_owned()), EventKind::KillFailed);
        assert_eq!(EventKind::Other("pause".into()).failed().as_str(), "pause-failed");
    }

    #[test]
    fn reading_never_fails() {
        let odd: Event = serde_json::from_value(json!({"detail": 9, "host": null, "unixUs": "soon"})).unwrap();
        assert_eq!((odd.detail.as_deref(), odd.host, odd.unix_us, odd.kind), (Some("9"), None, None, None));
        assert_eq!(Event::from_value(&json!({"unixUs": 1.5e6})).unix_us, Some(1_500_000));
        assert_eq!(serde_json::from_value::<Event>(json!("not an object")).unwrap(), Event::default());
        let events: Vec<Event> = serde_json::from_str(r#"[{"kind": "kill"}, 3, null]"#).unwrap();
        assert_eq!(events.len(), 3);
    }
}
