//! Per-function load figures the data plane reports to the control plane.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the scheduling-latency histogram buckets; the last bucket is +Inf.
///
/// The control plane sums these buckets across data planes, so both sides use this one list.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Time-weighted mean of a concurrency level between two reports (guarded by the function's lock).
#[derive(Debug)]
pub struct ConcurrencyMeter {
    level: u32,
    since: Instant,
    window_start: Instant,
    area: f64,
}

impl ConcurrencyMeter {
    /// A meter at level 0 starting now.
    pub fn new(now: Instant) -> Self {
        Self { level: 0, since: now, window_start: now, area: 0.0 }
    }

    /// Changes the level by `delta` at `now`.
    pub fn change(&mut self, now: Instant, delta: i32) {
        self.area += f64::from(self.level) * now.saturating_duration_since(self.since).as_secs_f64();
        self.level = self.level.saturating_add_signed(delta);
        self.since = now;
    }

    /// The mean level since the previous call, then starts a new window.
    pub fn take_average(&mut self, now: Instant) -> f64 {
        self.change(now, 0);
        let span = now.saturating_duration_since(self.window_start).as_secs_f64();
        let average = if span > 0.0 { self.area / span } else { f64::from(self.level) };
        self.area = 0.0;
        self.window_start = now;
        average
    }

    /// The current level.
    pub fn level(&self) -> u32 {
        self.level
    }
}

/// Lock-free counters updated on the invocation path and drained by the reporter.
#[derive(Debug, Default)]
pub struct InvocationCounters {
    invocations: AtomicU64,
    cold_starts: AtomicU64,
    failures: AtomicU64,
    /// Requests moved to another sandbox because theirs was unreachable.
    failovers: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

/// What the counters held at one report, reset afterwards.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CounterSnapshot {
    /// Invocations that reached a sandbox.
    pub invocations: u64,
    /// Invocations that waited for a sandbox to be created.
    pub cold_starts: u64,
    /// Invocations that failed in the data plane (no sandbox, upstream error).
    pub failures: u64,
    /// Requests moved to another sandbox (or the queue) because theirs was unreachable.
    pub failovers: u64,
    /// Scheduling-latency histogram counts, one per [`LATENCY_BUCKETS`] bound plus +Inf.
    pub latency_buckets: Vec<u64>,
    /// Sum of the scheduling latencies, seconds.
    pub latency_sum_seconds: f64,
}

impl InvocationCounters {
    /// Counts one invocation handed to a sandbox after `scheduling` in the data plane.
    pub fn record_invocation(&self, scheduling: Duration, cold: bool) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        if cold {
            self.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = scheduling.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(scheduling.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts one failed invocation.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request failed over to another sandbox (it still counts once, as an invocation or a failure).
    pub fn record_failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// Puts back counts that could not be reported, so that a failed report loses nothing.
    pub fn restore(&self, snapshot: &CounterSnapshot) {
        self.invocations.fetch_add(snapshot.invocations, Ordering::Relaxed);
        self.cold_starts.fetch_add(snapshot.cold_starts, Ordering::Relaxed);
        self.failures.fetch_add(snapshot.failures, Ordering::Relaxed);
        self.failovers.fetch_add(snapshot.failovers, Ordering::Relaxed);
        for (bucket, count) in self.latency_buckets.iter().zip(&snapshot.latency_buckets) {
            bucket.fetch_add(*count, Ordering::Relaxed);
        }
        let nanos = (snapshot.latency_sum_seconds * 1e9) as u64;
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Drains the counters.
    pub fn take(&self) -> CounterSnapshot {
        CounterSnapshot {
            invocations: self.invocations.swap(0, Ordering::Relaxed),
            cold_starts: self.cold_starts.swap(0, Ordering::Relaxed),
            failures: self.failures.swap(0, Ordering::Relaxed),
            failovers: self.failovers.swap(0, Ordering::Relaxed),
            latency_buckets: self.latency_buckets.iter().map(|b| b.swap(0, Ordering::Relaxed)).collect(),
            latency_sum_seconds: self.latency_sum_nanos.swap(0, Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_weights_levels_by_time() {
        let t0 = Instant::now();
        let mut meter = ConcurrencyMeter::new(t0);
        meter.change(t0, 2); // level 2 for 1 s
        meter.change(t0 + Duration::from_secs(1), -1); // level 1 for 3 s
        let average = meter.take_average(t0 + Duration::from_secs(4));
        assert!((average - 1.25).abs() < 1e-9, "(2*1 + 1*3) / 4 = 1.25, got {average}");
        let next = meter.take_average(t0 + Duration::from_secs(6));
        assert!((next - 1.0).abs() < 1e-9);
    }

    #[test]
    fn counters_bucket_and_reset() {
        let counters = InvocationCounters::default();
        counters.record_invocation(Duration::from_micros(30), false);
        counters.record_invocation(Duration::from_millis(3), true);
        counters.record_invocation(Duration::from_secs(60), false);
        counters.record_failure();
        let snap = counters.take();
        assert_eq!((snap.invocations, snap.cold_starts, snap.failures), (3, 1, 1));
        assert_eq!(snap.latency_buckets[0], 1);
        assert_eq!(snap.latency_buckets[6], 1, "3 ms falls in the (2.5 ms, 5 ms] bucket");
        assert_eq!(snap.latency_buckets[LATENCY_BUCKETS.len()], 1);
        assert_eq!(counters.take().invocations, 0);
        counters.restore(&snap);
        assert_eq!(counters.take(), snap, "a failed report puts everything back");
    }
}
