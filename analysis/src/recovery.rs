//! How the run recovered from each injected kill: per timed `kill` event of the manifest, the failures until the
//! next kill and how long until invocations succeeded again. Folded from the analysed rows in the analysis's one
//! pass, with one small accumulator per kill time (never rows), so it works on rows in any order.

use contracts::run_folder::{Event as ManifestEvent, EventKind};

use crate::events::seconds_since;
use crate::model::Recovery;

/// What the analysed invocations intended in one window (from a kill time to the next later one) add up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WindowSums {
    failed: u64,
    /// Earliest completion (intended time + response time) of a successful invocation, Unix µs.
    first_ok_us: Option<u64>,
    /// The same for a successful cold start.
    first_cold_ok_us: Option<u64>,
    /// Latest intended time of a failed invocation, Unix µs.
    last_failure_us: Option<u64>,
}

/// A timed kill from the manifest.
#[derive(Debug)]
struct Kill {
    component: Option<String>,
    detail: Option<String>,
    unix_us: u64,
}

impl Kill {
    /// `None` unless `event` is a kill with a time; a negative time (a broken clock) cannot bound rows.
    fn from_event(event: &ManifestEvent) -> Option<Self> {
        let unix_us = u64::try_from(event.unix_us?).ok()?;
        (event.kind == Some(EventKind::Kill)).then(|| Kill {
            component: event.component.clone(),
            detail: event.detail.clone(),
            unix_us,
        })
    }
}

/// Folds analysed invocations into the windows between kills.
#[derive(Debug)]
pub(crate) struct RecoveryAccumulator {
    /// By time; kills at the same time keep the manifest's order.
    kills: Vec<Kill>,
    /// The distinct kill times, ascending: window `i` is `[starts_us[i], starts_us[i + 1])`, the last one open.
    /// Kills at the same instant (e.g. two workers at once) share a window rather than leaving one empty.
    starts_us: Vec<u64>,
    windows: Vec<WindowSums>,
}

impl RecoveryAccumulator {
    /// One window per distinct time of the timed kills in `events` (none: every row is ignored).
    pub fn new(events: &[ManifestEvent]) -> Self {
        let mut kills: Vec<Kill> = events.iter().filter_map(Kill::from_event).collect();
        kills.sort_by_key(|kill| kill.unix_us);
        let mut starts_us: Vec<u64> = kills.iter().map(|kill| kill.unix_us).collect();
        starts_us.dedup();
        let windows = vec![WindowSums::default(); starts_us.len()];
        Self { kills, starts_us, windows }
    }

    /// Adds one analysed invocation intended at `time_us` that succeeded (`ok`) or not.
    pub fn add(&mut self, time_us: u64, ok: bool, cold: bool, response_us: u64) {
        // Rows before the first kill, and every row of a run without kills, belong to no window.
        let Some(index) = self.starts_us.partition_point(|&start| start <= time_us).checked_sub(1) else {
            return;
        };
        let window = &mut self.windows[index];
        if ok {
            let done_us = time_us.saturating_add(response_us);
            window.first_ok_us = earliest(window.first_ok_us, Some(done_us));
            if cold {
                window.first_cold_ok_us = earliest(window.first_cold_ok_us, Some(done_us));
            }
        } else {
            window.failed += 1;
            window.last_failure_us = window.last_failure_us.max(Some(time_us));
        }
    }

    /// One [`Recovery`] per timed kill, by time; `origin_us` (the run's start) places the kills on the timeline.
    pub fn finish(self, origin_us: Option<u64>) -> Vec<Recovery> {
        // A success in a later window is still "intended at or after" this kill: take the earliest from here on.
        let first_ok = earliest_from_each(self.windows.iter().map(|window| window.first_ok_us));
        let first_cold_ok = earliest_from_each(self.windows.iter().map(|window| window.first_cold_ok_us));
        let recovery = |kill: Kill| {
            let index = self.starts_us.partition_point(|&start| start < kill.unix_us);
            let since = |unix_us: Option<u64>| unix_us.map(|us| us.saturating_sub(kill.unix_us) as f64 / 1e6);
            Recovery {
                at_s: origin_us.map(|origin| seconds_since(kill.unix_us as i64, origin)),
                failed: self.windows[index].failed,
                first_ok_s: since(first_ok[index]),
                first_cold_ok_s: since(first_cold_ok[index]),
                last_failure_s: since(self.windows[index].last_failure_us),
                component: kill.component,
                detail: kill.detail,
            }
        };
        self.kills.into_iter().map(recovery).collect()
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// For each position, the earliest of the values from there to the end.
fn earliest_from_each(values: impl DoubleEndedIterator<Item = Option<u64>>) -> Vec<Option<u64>> {
    let mut running = None;
    let mut from_each: Vec<Option<u64>> = values
        .rev()
        .map(|value| {
            running = earliest(running, value);
            running
        })
        .collect();
    from_each.reverse();
    from_each
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN_US: u64 = 1_764_000_000_000_000;
    const S: u64 = 1_000_000;

    fn kill(component: &str, at_s: u64) -> ManifestEvent {
        ManifestEvent {
            kind: Some(EventKind::Kill),
            component: Some(component.into()),
            detail: Some("SIGKILL".into()),
            unix_us: Some((ORIGIN_US + at_s * S) as i64),
            ..ManifestEvent::default()
        }
    }

    /// One analysed invocation: intended `at_ms` after the origin, with its outcome, cold flag and response time.
    #[derive(Clone, Copy)]
    struct Row {
        at_ms: u64,
        ok: bool,
        cold: bool,
        response_ms: u64,
    }

    const fn ok(at_ms: u64, response_ms: u64) -> Row {
        Row { at_ms, ok: true, cold: false, response_ms }
    }

    const fn cold(at_ms: u64, response_ms: u64) -> Row {
        Row { at_ms, ok: true, cold: true, response_ms }
    }

    const fn failed(at_ms: u64) -> Row {
        Row { at_ms, ok: false, cold: false, response_ms: 0 }
    }

    fn recover(events: &[ManifestEvent], rows: &[Row]) -> Vec<Recovery> {
        let mut accumulator = RecoveryAccumulator::new(events);
        for row in rows {
            accumulator.add(ORIGIN_US + row.at_ms * 1000, row.ok, row.cold, row.response_ms * 1000);
        }
        accumulator.finish(Some(ORIGIN_US))
    }

    /// `(failed, first_ok_s, first_cold_ok_s, last_failure_s)`, rounded to the µs against float noise.
    fn figures(recovery: &Recovery) -> (u64, Option<f64>, Option<f64>, Option<f64>) {
        let round = |s: Option<f64>| s.map(|s| (s * 1e6).round() / 1e6);
        (recovery.failed, round(recovery.first_ok_s), round(recovery.first_cold_ok_s), round(recovery.last_failure_s))
    }

    #[test]
    fn a_kill_with_failures_then_recovery() {
        let rows = [
            failed(9_000),  // before the kill: not counted
            ok(9_500, 600), // intended before the kill, done after it: not a recovery
            failed(10_000), // at the kill
            failed(11_000),
            ok(10_200, 900),     // a warm one served 1.1 s after the kill, while others still fail
            failed(11_500),      // the last failure: 1.5 s after the kill
            cold(12_000, 1_000), // the first cold start done 3 s after the kill
            ok(13_000, 10),
            cold(12_500, 2_000), // a later cold start (done at 14.5 s)
        ];
        let recovery = recover(&[kill("worker-1", 10)], &rows);
        assert_eq!(recovery.len(), 1);
        let only = &recovery[0];
        assert_eq!(
            (only.component.as_deref(), only.detail.as_deref(), only.at_s),
            (Some("worker-1"), Some("SIGKILL"), Some(10.0))
        );
        assert_eq!(figures(only), (3, Some(1.1), Some(3.0), Some(1.5)));
    }

    #[test]
    fn a_kill_with_nothing_failed() {
        let rows = [failed(1_000), ok(5_000, 250), cold(6_000, 500), ok(7_000, 20)];
        let recovery = recover(&[kill("worker-2", 5)], &rows);
        assert_eq!(figures(&recovery[0]), (0, Some(0.25), Some(1.5), None));
    }

    #[test]
    fn two_kills_the_first_window_ends_at_the_second() {
        let rows = [
            failed(10_500),
            failed(19_000), // the first kill's last failure
            failed(20_000), // at the second kill: the second's
            failed(21_000),
            ok(22_000, 100),   // the first success after either kill
            cold(23_000, 500), // the first cold start after either kill
        ];
        // Listed out of order in the manifest: recovery is by time.
        let recovery = recover(&[kill("data-plane", 20), kill("control-plane-1", 10)], &rows);
        let components: Vec<_> = recovery.iter().map(|r| (r.component.as_deref().unwrap(), r.at_s.unwrap())).collect();
        assert_eq!(components, [("control-plane-1", 10.0), ("data-plane", 20.0)]);
        assert_eq!(figures(&recovery[0]), (2, Some(12.1), Some(13.5), Some(9.0)));
        assert_eq!(figures(&recovery[1]), (2, Some(2.1), Some(3.5), Some(1.0)));
    }

    #[test]
    fn a_kill_after_which_nothing_succeeds() {
        let rows = [ok(1_000, 10), cold(2_000, 10), failed(31_000), failed(30_000), failed(32_500)];
        let recovery = recover(&[kill("control-plane-1", 30)], &rows);
        assert_eq!(figures(&recovery[0]), (3, None, None, Some(2.5)));
        // No rows at all: nothing failed, nothing succeeded, and no origin to place the kill.
        let empty = RecoveryAccumulator::new(&[kill("worker-1", 1)]).finish(None);
        assert_eq!((figures(&empty[0]), empty[0].at_s), ((0, None, None, None), None));
    }

    #[test]
    fn kills_at_one_instant_share_their_window() {
        let rows = [failed(5_000), ok(5_100, 100)];
        let recovery = recover(&[kill("worker-1", 5), kill("worker-2", 5)], &rows);
        assert_eq!(recovery.iter().map(figures).collect::<Vec<_>>(), [(1, Some(0.2), None, Some(0.0)); 2]);
    }

    #[test]
    fn only_timed_kills_count() {
        let untimed = ManifestEvent { unix_us: None, ..kill("worker-1", 1) };
        let restart = ManifestEvent { kind: Some(EventKind::Restart), ..kill("worker-1", 2) };
        let refused = ManifestEvent { kind: Some(EventKind::KillFailed), ..kill("worker-1", 3) };
        let broken_clock = ManifestEvent { unix_us: Some(-1), ..kill("worker-1", 4) };
        assert!(recover(&[untimed, restart, refused, broken_clock], &[failed(5_000)]).is_empty());
        assert!(recover(&[], &[failed(5_000)]).is_empty());
    }
}
