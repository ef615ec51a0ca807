//! The manifest's events (e.g. injected failures, read tolerantly by [`contracts::run_folder::Event`]) as the
//! report's [`TimelineEvent`]s on the timeline's axis.

use contracts::run_folder::Event as ManifestEvent;

use crate::model::TimelineEvent;

/// The events in `events` (the manifest's order), timed from `origin_us` (the run's start, Unix µs) when known.
pub(crate) fn from_manifest(events: &[ManifestEvent], origin_us: Option<u64>) -> Vec<TimelineEvent> {
    events.iter().map(|event| from_event(event, origin_us)).collect()
}

fn from_event(event: &ManifestEvent, origin_us: Option<u64>) -> TimelineEvent {
    TimelineEvent {
        kind: event.kind.as_ref().map(|kind| kind.as_str().to_owned()),
        component: event.component.clone(),
        host: event.host.clone(),
        detail: event.detail.clone(),
        at_s: event.unix_us.zip(origin_us).map(|(unix_us, origin)| seconds_since(unix_us, origin)),
    }
}

/// Seconds from `origin_us` to `unix_us` (negative before it).
pub(crate) fn seconds_since(unix_us: i64, origin_us: u64) -> f64 {
    (i128::from(unix_us) - i128::from(origin_us)) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The manifest's events as the analysis reads them: through the contract type.
    fn from_json(raw: &[Value], origin_us: Option<u64>) -> Vec<TimelineEvent> {
        let events: Vec<ManifestEvent> = serde_json::from_value(Value::Array(raw.to_vec())).unwrap();
        from_manifest(&events, origin_us)
    }

    const ORIGIN_US: u64 = 1_764_000_000_000_000;

    fn one(event: Value, origin_us: Option<u64>) -> TimelineEvent {
        from_json(&[event], origin_us).remove(0)
    }

    #[test]
    fn injected_failures_are_timed_from_the_run_start() {
        let raw = [
            json!({"kind": "kill", "component": "worker-1", "role": "worker", "host": "10.200.1.14",
                   "unixUs": 1_764_000_000_123_456u64, "detail": "SIGKILL"}),
            json!({"kind": "restart", "component": "worker-1", "host": "10.200.1.14", "unixUs": 1_764_000_005_123_456u64}),
        ];
        let events = from_json(&raw, Some(ORIGIN_US));
        let kill = TimelineEvent {
            kind: Some("kill".into()),
            component: Some("worker-1".into()),
            host: Some("10.200.1.14".into()),
            detail: Some("SIGKILL".into()),
            at_s: Some(0.123_456),
        };
        assert_eq!(events[0], kill);
        assert_eq!(
            (events[1].kind.as_deref(), events[1].detail.as_deref(), events[1].at_s),
            (Some("restart"), None, Some(5.123_456))
        );
    }

    #[test]
    fn events_before_the_origin_are_negative() {
        assert_eq!(one(json!({"kind": "kill", "unixUs": ORIGIN_US - 2_500_000}), Some(ORIGIN_US)).at_s, Some(-2.5));
        assert_eq!(one(json!({"unixUs": 0}), Some(1_000_000)).at_s, Some(-1.0));
        assert_eq!(one(json!({"unixUs": 1.5e6}), Some(1_000_000)).at_s, Some(0.5));
    }

    #[test]
    fn events_without_a_time_or_an_origin_are_kept_untimed() {
        let untimed = one(json!({"kind": "note", "detail": "from another tool"}), Some(ORIGIN_US));
        assert_eq!((untimed.kind.as_deref(), untimed.at_s), (Some("note"), None));
        assert_eq!(one(json!({"kind": "kill", "unixUs": ORIGIN_US}), None).at_s, None);
        assert_eq!(one(json!({"kind": "kill", "unixUs": "soon"}), Some(ORIGIN_US)).at_s, None);
        let bare = one(json!({"detail": 9, "host": null}), Some(ORIGIN_US));
        assert_eq!((bare.kind, bare.host, bare.detail.as_deref()), (None, None, Some("9")));
        assert_eq!(one(json!("not an object"), Some(ORIGIN_US)).kind, None);
    }
}
