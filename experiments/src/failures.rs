//! Failure injection during a run's load: at each failure's time a role's process is killed (and, if asked,
//! started again later). Every kill and restart, and every one that could not be done, becomes an event for the
//! run's manifest.

use std::time::Duration;

use contracts::run_folder::{Event, EventKind};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::platform::Platform;
use crate::spec::FailureSpec;

/// One scheduled action.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Kill(String),
    Restart(String),
}

/// The kills and restarts of `failures`, in time order.
fn schedule(failures: &[FailureSpec]) -> Vec<(Duration, Action)> {
    let mut actions: Vec<(Duration, Action)> = failures
        .iter()
        .flat_map(|f| {
            let restart = f.restart_after.map(|after| (f.at + after, Action::Restart(f.kill.clone())));
            std::iter::once((f.at, Action::Kill(f.kill.clone()))).chain(restart)
        })
        .collect();
    actions.sort_by_key(|(at, _)| *at);
    actions
}

/// A failure that names no component of the platform.
#[derive(Debug, thiserror::Error)]
#[error("failures[{index}].kill: no component '{name}' on this platform; there are {components}")]
pub struct UnknownComponent {
    /// Its position in `failures`.
    pub index: usize,
    /// The name it gives.
    pub name: String,
    /// The components there are, comma-separated.
    pub components: String,
}

/// Checks that every failure names a component of the platform (the leader: a platform with a control plane).
pub fn check(failures: &[FailureSpec], components: &[String]) -> Result<(), UnknownComponent> {
    let known = |name: &String| {
        components.contains(name) || (name == crate::roles::LEADER && components.iter().any(|c| c == "control-plane"))
    };
    match failures.iter().position(|failure| !known(&failure.kill)) {
        None => Ok(()),
        Some(index) => {
            Err(UnknownComponent { index, name: failures[index].kill.clone(), components: components.join(", ") })
        }
    }
}

/// Runs the actions of `failures` counted from the loader's start (sent on `started`) until they are done or
/// `load_done` is notified; returns the events.
pub async fn inject(
    failures: &[FailureSpec],
    platform: &mut Platform,
    started: tokio::sync::oneshot::Receiver<Instant>,
    load_done: &Notify,
) -> Vec<Event> {
    let mut events = Vec::new();
    let started = tokio::select! {
        started = started => match started {
            Ok(started) => started,
            Err(_) => return events, // the loader never started
        },
        () = load_done.notified() => return events,
    };
    for (at, action) in schedule(failures) {
        tokio::select! {
            () = tokio::time::sleep_until(started + at) => {}
            () = load_done.notified() => break,
        }
        let (result, kind, name) = match &action {
            Action::Kill(name) => (platform.kill(name).await, EventKind::Kill, name),
            Action::Restart(name) => (platform.restart(name).await, EventKind::Restart, name),
        };
        match result {
            Ok(event) => {
                tracing::info!(component = %name, "failure injection: {kind}");
                events.push(event);
            }
            Err(error) => {
                let error = crate::error_chain(&error);
                tracing::warn!("failure injection: {kind} {name}: {error}");
                events.push(Event::failed(kind, name, &error));
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(at: u64, kill: &str, restart: Option<u64>) -> FailureSpec {
        FailureSpec { at: Duration::from_secs(at), kill: kill.into(), restart_after: restart.map(Duration::from_secs) }
    }

    #[test]
    fn restarts_are_scheduled_after_their_kill_in_time_order() {
        let actions = schedule(&[failure(10, "worker-0", Some(5)), failure(12, "worker-1", None)]);
        let expected = vec![
            (Duration::from_secs(10), Action::Kill("worker-0".into())),
            (Duration::from_secs(12), Action::Kill("worker-1".into())),
            (Duration::from_secs(15), Action::Restart("worker-0".into())),
        ];
        assert_eq!(actions, expected);
    }

    #[test]
    fn unknown_components_are_named() {
        let components = vec!["control-plane".to_string(), "worker-0".to_string()];
        assert!(check(&[failure(1, "worker-0", None)], &components).is_ok());
        assert!(check(&[failure(1, "control-plane-leader", None)], &components).is_ok());
        assert!(check(&[failure(1, "control-plane-leader", None)], &components[1..]).is_err());
        let error = check(&[failure(1, "worker-0", None), failure(1, "worker-3", None)], &components).unwrap_err();
        let error = error.to_string();
        assert!(error.contains("failures[1]") && error.contains("worker-3") && error.contains("worker-0"), "{error}");
    }
}
