//! Backing off after throttling without bending the open-loop schedule: after a throttled call, the calls due in the
//! backoff window are not sent but fail at their intended time like the throttled one; the window doubles with each
//! throttle inside it (up to a cap) and ends at the first success.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The backoff state shared by every invocation of a target.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// No call is sent before this.
    until: Option<Instant>,
    /// The next window's length.
    next: Duration,
}

impl Backoff {
    /// Windows of `initial`, doubling up to `max`; `initial` zero: never back off.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), state: Mutex::new(State { until: None, next: initial }) }
    }

    /// How much of the window is left at `now`, if a call must not be sent.
    pub fn holding(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.until.filter(|until| *until > now).map(|until| until - now)
    }

    /// A call was throttled at `now`: a window starts (or grows, when one was open recently).
    pub fn throttled(&self, now: Instant) {
        if self.initial.is_zero() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.until.is_some_and(|until| until > now) {
            return;
        }
        state.until = Some(now + state.next);
        state.next = (state.next * 2).min(self.max);
    }

    /// A call succeeded: the next throttle starts again from the initial window.
    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap_and_reset_after_a_success() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        let t0 = Instant::now();
        assert_eq!(backoff.holding(t0), None);
        backoff.throttled(t0);
        assert_eq!(backoff.holding(t0 + Duration::from_millis(40)), Some(Duration::from_millis(60)));
        backoff.throttled(t0 + Duration::from_millis(50));
        assert_eq!(backoff.holding(t0 + Duration::from_millis(99)), Some(Duration::from_millis(1)), "no growth inside");
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(backoff.holding(t1), None);
        backoff.throttled(t1);
        assert_eq!(backoff.holding(t1), Some(Duration::from_millis(200)));
        let t2 = t1 + Duration::from_millis(200);
        backoff.throttled(t2);
        assert_eq!(backoff.holding(t2), Some(Duration::from_millis(300)), "capped");
        backoff.succeeded();
        let t3 = t2 + Duration::from_millis(300);
        backoff.throttled(t3);
        assert_eq!(backoff.holding(t3), Some(Duration::from_millis(100)), "back to the first window");
    }

    #[test]
    fn a_zero_window_never_holds() {
        let backoff = Backoff::new(Duration::ZERO, Duration::from_secs(5));
        let now = Instant::now();
        backoff.throttled(now);
        assert_eq!(backoff.holding(now), None);
    }
}
