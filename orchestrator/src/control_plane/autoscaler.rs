//! Knative-KPA-style per-function autoscaler.
//!
//! This follows Knative Serving's `pkg/autoscaler/scaling/autoscaler.go` (`Scale`) and the window
//! averaging of `pkg/autoscaler/aggregation/bucketing.go`, with the differences listed here so that
//! results can be compared with Knative's:
//!
//! * Time is cut into buckets of one `tick`. Each `record` call adds a sample to its bucket; several
//!   samples in one bucket are *averaged*, not summed (Knative sums because each pod reports its own
//!   share; our caller already reports the cluster-wide sum, so two reports in one tick are two
//!   readings of the same quantity).
//! * Window averages follow Knative: a bucket with no sample between two recorded buckets counts as
//!   0 concurrency (no data plane reported load, so there was none); buckets after the newest sample
//!   are left out of the average rather than counted as 0, because at decision time the current tick
//!   may simply not have been recorded yet, and counting it as 0 would cut the 3-bucket panic window
//!   average by a third on mere clock jitter. A window with no sample at all averages to 0.
//! * A window not yet full (function younger than the window, or data resuming after a whole window
//!   without any) averages over the buckets since the first sample only, as Knative's `firstWrite`
//!   does; this is what lets a freshly deployed function scale up on its first reading.
//! * Panic mode is extended each tick the threshold is still exceeded and ends only once a full
//!   stable window has passed since the *last* such tick (Knative's `panicTime = now` on every
//!   over-threshold tick), not since the panic began.
//! * Scale to zero: Knative delegates it to the reconciler (grace period, activator). Here the
//!   decision is 0 exactly when the autoscaler has watched the function for a whole stable window
//!   and every reading inside it was 0; that overrides the `max_scale_down_rate` limit. Before that,
//!   a function with ready sandboxes keeps at least one, so a young function is never scaled to zero
//!   on a partial window.
//! * Knative starts a new autoscaler in panic mode when it finds more than one ready pod (to survive
//!   its own restarts); a `FunctionAutoscaler` is created with its function, with nothing ready, so
//!   it starts calm.

use std::collections::VecDeque;
use std::time::Duration;

/// The settings (YAML) and their validation are the contracts' (one definition for the orchestrator and the
/// experiments that write its configs).
pub use contracts::config::{AutoscalerConfig, AutoscalerConfigError};

/// Scale bounds of one function (min may be 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleBounds {
    /// Fewest sandboxes to keep, even without traffic.
    pub min: u32,
    /// Most sandboxes ever wanted; wins over `min` if the two conflict.
    pub max: u32,
}

impl ScaleBounds {
    /// Clamps `n` into the bounds; `max` wins when `min > max`, and this never panics.
    fn clamp(self, n: u32) -> u32 {
        n.max(self.min.min(self.max)).min(self.max)
    }
}

/// One autoscaling decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Number of sandboxes the function should have.
    pub desired: u32,
    /// Average concurrency over the stable window.
    pub stable_concurrency: f64,
    /// Average concurrency over the panic window.
    pub panic_concurrency: f64,
    /// Whether this decision was taken in panic mode.
    pub panicking: bool,
}

/// Samples of one tick.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    index: u64,
    sum: f64,
    count: u32,
}

impl Bucket {
    fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum / f64::from(self.count) }
    }
}

/// Result of averaging one window.
#[derive(Debug, Clone, Copy)]
struct WindowStat {
    average: f64,
    /// Whether any bucket inside the window held a non-zero reading; tested instead of
    /// `average == 0.0` so that a sub-normal reading cannot round to "no traffic".
    saw_traffic: bool,
}

/// The per-function KPA state.
#[derive(Debug, Clone)]
pub struct FunctionAutoscaler {
    config: AutoscalerConfig,
    bounds: ScaleBounds,
    /// Recorded buckets by increasing index, none older than the longest window before the newest.
    buckets: VecDeque<Bucket>,
    /// First bucket of the current run of data (Knative's `firstWrite`), restarted after a whole
    /// window without samples; a partial window averages from here.
    span_start: u64,
    /// Earliest bucket the autoscaler was consulted in; a window starting at or after it is full.
    first_seen: Option<u64>,
    /// Last decision time at which the panic threshold was exceeded; `Some` while panicking.
    panic_time: Option<Duration>,
    /// Highest decision during the current panic, which must not be scaled below.
    max_panic_pods: u32,
}

impl FunctionAutoscaler {
    /// A calm autoscaler without history; `config` should have passed [`AutoscalerConfig::validate`]
    /// (an invalid one yields meaningless but panic-free decisions).
    pub fn new(config: AutoscalerConfig, bounds: ScaleBounds) -> Self {
        Self {
            config,
            bounds,
            buckets: VecDeque::new(),
            span_start: 0,
            first_seen: None,
            panic_time: None,
            max_panic_pods: 0,
        }
    }

    /// Replaces the scale bounds, effective from the next decision.
    pub fn set_bounds(&mut self, bounds: ScaleBounds) {
        self.bounds = bounds;
    }

    /// The current scale bounds.
    pub fn bounds(&self) -> ScaleBounds {
        self.bounds
    }

    /// The autoscaling settings.
    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// Records the observed concurrency (in-flight + queued requests summed over all data planes,
    /// time-averaged by them) at time `now`; NaN, infinite and negative readings count as 0.
    pub fn record(&mut self, now: Duration, concurrency: f64) {
        let value = if concurrency.is_finite() && concurrency > 0.0 { concurrency } else { 0.0 };
        let index = self.bucket_of(now);
        self.see(index);
        let keep = self.retained_buckets();

        match self.buckets.back() {
            None => self.span_start = index,
            Some(newest) if index >= newest.index.saturating_add(keep) => {
                // A whole window without samples: old data is entirely out of every window, and
                // averaging restarts from this sample, as Knative resets `firstWrite`.
                self.buckets.clear();
                self.span_start = index;
            }
            // Too old for any window; keeping it would break the memory bound.
            Some(newest) if index.saturating_add(keep) <= newest.index => return,
            Some(_) => self.span_start = self.span_start.min(index),
        }

        match self.buckets.binary_search_by_key(&index, |b| b.index) {
            Ok(i) => {
                if let Some(bucket) = self.buckets.get_mut(i) {
                    bucket.sum += value;
                    bucket.count = bucket.count.saturating_add(1);
                }
            }
            Err(i) => self.buckets.insert(i, Bucket { index, sum: value, count: 1 }),
        }

        let newest = self.buckets.back().map_or(index, |b| b.index);
        while self.buckets.front().is_some_and(|b| b.index.saturating_add(keep) <= newest) {
            self.buckets.pop_front();
        }
    }

    /// The KPA decision at `now` given the currently ready sandboxes.
    pub fn decide(&mut self, now: Duration, ready: u32) -> Decision {
        let index = self.bucket_of(now);
        let first_seen = self.see(index);
        let stable_len = self.window_buckets(self.config.stable_window);
        let stable = self.window_stat(index, stable_len);
        let panic = self.window_stat(index, self.window_buckets(self.config.panic_window));

        // With nothing ready, rates apply as if one sandbox were, so that scaling from zero works.
        let ready_pods = f64::from(ready.max(1));
        let max_scale_up = (self.config.max_scale_up_rate * ready_pods).ceil();
        let max_scale_down = (ready_pods / self.config.max_scale_down_rate).floor();
        let dspc = (stable.average / self.config.target_concurrency).ceil();
        let dppc = (panic.average / self.config.target_concurrency).ceil();

        let window_full = index >= first_seen.saturating_add(stable_len - 1);
        let lower = if window_full && !stable.saw_traffic {
            0.0
        } else if ready > 0 {
            max_scale_down.max(1.0)
        } else {
            max_scale_down
        };
        // `as` saturates and maps NaN to 0, which is the wanted behaviour for a broken config.
        let clamp = |n: f64| n.max(lower).min(max_scale_up) as u32;
        let desired_stable = clamp(dspc);
        let desired_panic = clamp(dppc);

        let over_threshold = dppc / ready_pods >= self.config.panic_threshold;
        if over_threshold {
            if self.panic_time.is_none() {
                tracing::debug!(panic_concurrency = panic.average, ready, "autoscaler entering panic mode");
            }
            self.panic_time = Some(now);
        } else if self.panic_time.is_some_and(|since| now.saturating_sub(since) > self.config.stable_window) {
            tracing::debug!(stable_concurrency = stable.average, "autoscaler leaving panic mode");
            self.panic_time = None;
            self.max_panic_pods = 0;
        }

        let panicking = self.panic_time.is_some();
        let desired = if panicking {
            // The stable demand can exceed the panic one (a burst that just ended), so provision for
            // the larger; and never shrink while panicking.
            self.max_panic_pods = self.max_panic_pods.max(desired_stable).max(desired_panic);
            self.max_panic_pods
        } else {
            desired_stable
        };

        Decision {
            desired: self.bounds.clamp(desired),
            stable_concurrency: stable.average,
            panic_concurrency: panic.average,
            panicking,
        }
    }

    /// Whether the autoscaler is in panic mode.
    pub fn in_panic(&self) -> bool {
        self.panic_time.is_some()
    }

    /// Notes that the autoscaler has been consulted at bucket `index`; returns the earliest such.
    fn see(&mut self, index: u64) -> u64 {
        let first = self.first_seen.map_or(index, |f| f.min(index));
        self.first_seen = Some(first);
        first
    }

    /// The tick bucket holding instant `t`; a zero tick (invalid config) counts as 1 ns.
    fn bucket_of(&self, t: Duration) -> u64 {
        let tick = self.config.tick.as_nanos().max(1);
        u64::try_from(t.as_nanos() / tick).unwrap_or(u64::MAX)
    }

    /// How many tick buckets a window spans (rounded up, at least 1).
    fn window_buckets(&self, window: Duration) -> u64 {
        let tick = self.config.tick.as_nanos().max(1);
        u64::try_from(window.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
    }

    /// Buckets kept in memory: the stable window's (a misconfigured longer panic window sees less).
    fn retained_buckets(&self) -> u64 {
        self.window_buckets(self.config.stable_window)
    }

    /// Average over the `len` buckets ending at bucket `now`, Knative-style (see the module doc).
    fn window_stat(&self, now: u64, len: u64) -> WindowStat {
        let empty = WindowStat { average: 0.0, saw_traffic: false };
        let Some(newest) = self.buckets.back() else {
            return empty;
        };
        let start = now.saturating_sub(len - 1).max(self.span_start);
        let end = newest.index.min(now);
        if end < start {
            return empty;
        }
        let mut sum = 0.0;
        let mut saw_traffic = false;
        for bucket in self.buckets.iter().filter(|b| (start..=end).contains(&b.index)) {
            sum += bucket.mean();
            saw_traffic |= bucket.sum > 0.0;
        }
        // Buckets from `start` to `end` without a sample are the zeros in this division.
        // `+ 1` in f64: `end - start + 1` overflows when a misconfigured window spans every bucket.
        let average = sum / ((end - start) as f64 + 1.0);
        WindowStat { average, saw_traffic }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // All scenarios use the defaults unless stated: tick 2 s, stable window 60 s = 30 buckets,
    // panic window 6 s = 3 buckets, target 1, threshold 2, up rate 1000, down rate 2.

    const UNBOUNDED: ScaleBounds = ScaleBounds { min: 0, max: u32::MAX };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn autoscaler() -> FunctionAutoscaler {
        FunctionAutoscaler::new(AutoscalerConfig::default(), UNBOUNDED)
    }

    /// Records `load` and decides with `ready` sandboxes at every tick of `[from, to]` (seconds).
    fn run(a: &mut FunctionAutoscaler, from: u64, to: u64, load: f64, ready: u32) -> Vec<Decision> {
        (from..=to)
            .step_by(2)
            .map(|t| {
                a.record(secs(t), load);
                a.decide(secs(t), ready)
            })
            .collect()
    }

    #[test]
    fn steady_load_five_gives_five() {
        let mut a = autoscaler();
        // 5 / target 1 = 5 in both windows; with 5 ready, dppc / ready = 1 < 2, so no panic.
        for d in run(&mut a, 0, 200, 5.0, 5) {
            assert_eq!(d.desired, 5);
            assert_eq!(d.stable_concurrency, 5.0);
            assert_eq!(d.panic_concurrency, 5.0);
            assert!(!d.panicking);
        }
    }

    #[test]
    fn first_reading_of_a_young_function_is_not_diluted() {
        let mut a = autoscaler();
        // One sample: the partial window averages over 1 bucket, not 30, so 5 (not 5/30).
        a.record(secs(0), 5.0);
        let d = a.decide(secs(0), 5);
        assert_eq!(d.stable_concurrency, 5.0);
        assert_eq!(d.desired, 5);
    }

    #[test]
    fn cold_start_burst_panics_from_zero() {
        let mut a = autoscaler();
        // ready 0 counts as 1: dppc = 4, 4 / 1 >= 2 -> panic; maxScaleUp = ceil(1000 * 1) = 1000.
        a.record(secs(0), 4.0);
        let d = a.decide(secs(0), 0);
        assert!(d.panicking);
        assert_eq!(d.desired, 4);
    }

    #[test]
    fn load_doubling_triggers_panic_once_the_panic_window_sees_it() {
        let mut a = autoscaler();
        run(&mut a, 0, 58, 5.0, 5); // buckets 0..=29 hold 5
        // t=60 (bucket 30): panic = (5+5+10)/3 = 6.67 -> 7, 7/5 = 1.4 < 2.
        //   stable = (29*5 + 10)/30 = 5.17 -> 6.
        a.record(secs(60), 10.0);
        let d = a.decide(secs(60), 5);
        assert!(!d.panicking);
        assert_eq!(d.desired, 6);
        // t=62: panic = (5+10+10)/3 = 8.33 -> 9, 9/5 = 1.8 < 2; stable = (28*5 + 20)/30 = 5.33 -> 6.
        a.record(secs(62), 10.0);
        let d = a.decide(secs(62), 5);
        assert!(!d.panicking);
        assert_eq!(d.desired, 6);
        // t=64: panic = 30/3 = 10, 10/5 = 2 >= 2 -> panic; stable = (27*5 + 30)/30 = 5.5 -> 6.
        //   desired = max(6, 10) = 10.
        a.record(secs(64), 10.0);
        let d = a.decide(secs(64), 5);
        assert!(d.panicking);
        assert!(a.in_panic());
        assert_eq!(d.panic_concurrency, 10.0);
        assert_eq!(d.stable_concurrency, 5.5);
        assert_eq!(d.desired, 10);
    }

    #[test]
    fn sharp_burst_scales_up_fast_in_panic() {
        let mut a = autoscaler();
        run(&mut a, 0, 58, 5.0, 5);
        // t=60: panic = (5+5+20)/3 = 10 -> 10/5 = 2 -> panic; stable = (29*5+20)/30 = 5.5 -> 6.
        a.record(secs(60), 20.0);
        let d = a.decide(secs(60), 5);
        assert!(d.panicking);
        assert_eq!(d.desired, 10);
        // t=62, 10 ready: panic = (5+20+20)/3 = 15 -> 15 (15/10 = 1.5, still panicking from t=60);
        //   stable = (28*5 + 40)/30 = 6 -> 6; desired = max(6, 15) = 15.
        a.record(secs(62), 20.0);
        let d = a.decide(secs(62), 10);
        assert!(d.panicking);
        assert_eq!(d.desired, 15);
        // t=64, 15 ready: panic = 20 -> 20; stable = (27*5 + 60)/30 = 6.5 -> 7; desired 20.
        a.record(secs(64), 20.0);
        assert_eq!(a.decide(secs(64), 15).desired, 20);
    }

    #[test]
    fn panic_holds_without_scale_down_until_a_stable_window_passes() {
        let mut a = autoscaler();
        run(&mut a, 0, 58, 5.0, 5);
        a.record(secs(60), 20.0);
        assert_eq!(a.decide(secs(60), 5).desired, 10); // panic entered at t=60 (see above)
        // Load back to 5 with 10 ready: at t=62 panic = (5+20+5)/3 = 10 -> 10/10 = 1 < 2, so the
        // threshold is no longer exceeded and panic_time stays at 60. Stable wants at most
        // ceil((28*5+20+5)/30 = 5.5) = 6, but the panic maximum of 10 holds until t - 60 > 60.
        for d in run(&mut a, 62, 120, 5.0, 10) {
            assert!(d.panicking);
            assert_eq!(d.desired, 10);
        }
        // t=122: 62 s > 60 s since the last over-threshold tick -> calm. Stable window = buckets
        // 32..=61 (t=64..=122), all 5 -> 5; maxScaleDown = floor(10/2) = 5 allows it.
        let d = run(&mut a, 122, 122, 5.0, 10)[0];
        assert!(!d.panicking);
        assert!(!a.in_panic());
        assert_eq!(d.desired, 5);
    }

    #[test]
    fn panic_is_extended_while_still_over_threshold() {
        let mut a = autoscaler();
        // ready 1, load 4: dppc = 4, 4/1 >= 2 on every tick -> panic_time moves along with now.
        run(&mut a, 0, 100, 4.0, 1);
        // Load drops to 1 from t=102: panic = (4+4+1)/3 = 3 at t=102 and (4+1+1)/3 = 2 at t=104,
        // both >= 2 * 1, so panic_time moves to 104; from t=106 on panic = 1 < 2.
        let ds = run(&mut a, 102, 164, 1.0, 1);
        assert!(ds.iter().all(|d| d.panicking && d.desired == 4));
        // t=166: 166 - 104 = 62 > 60 -> calm; the stable window, buckets 54..=83 (t=108..=166),
        // is all 1 -> 1.
        let d = run(&mut a, 166, 166, 1.0, 1)[0];
        assert!(!d.panicking);
        assert_eq!(d.desired, 1);
    }

    #[test]
    fn scale_down_is_limited_to_halving_per_decision() {
        let mut a = autoscaler();
        // Load 1 -> dspc 1, but maxScaleDown = floor(ready / 2); panic ratio 1/ready < 2.
        let expected = [(16, 8), (8, 4), (4, 2), (2, 1), (1, 1)];
        for (i, (ready, want)) in expected.into_iter().enumerate() {
            let t = 2 * i as u64;
            a.record(secs(t), 1.0);
            let d = a.decide(secs(t), ready);
            assert_eq!(d.desired, want, "ready {ready}");
            assert!(!d.panicking);
        }
    }

    #[test]
    fn scale_to_zero_only_after_a_full_stable_window_of_zeros() {
        let mut a = autoscaler();
        run(&mut a, 0, 10, 1.0, 1); // buckets 0..=5 hold 1
        // Zeros from t=12 (bucket 6). At t=68 (bucket 34) the window is buckets 5..=34, still
        // holding the 1 of bucket 5: stable = 1/30 -> ceil = 1.
        for d in run(&mut a, 12, 68, 0.0, 1) {
            assert_eq!(d.desired, 1);
        }
        // t=70 (bucket 35): window 6..=35 is all zeros -> 0, although floor(1/2) = 0 alone would
        // have allowed it much earlier.
        let d = run(&mut a, 70, 70, 0.0, 1)[0];
        assert_eq!(d.stable_concurrency, 0.0);
        assert_eq!(d.desired, 0);
    }

    #[test]
    fn young_function_is_not_scaled_to_zero_on_a_partial_window() {
        let mut a = autoscaler();
        // Zeros from t=0: the window is full once it starts at bucket 0, i.e. at bucket 29 (t=58).
        for d in run(&mut a, 0, 56, 0.0, 1) {
            assert_eq!(d.desired, 1);
        }
        assert_eq!(run(&mut a, 58, 58, 0.0, 1)[0].desired, 0);
    }

    #[test]
    fn nothing_ready_and_no_traffic_stays_at_zero() {
        let mut a = autoscaler();
        // Not a scale-down: there is nothing to keep.
        for d in run(&mut a, 0, 10, 0.0, 0) {
            assert_eq!(d.desired, 0);
        }
        // No sample at all is no traffic either.
        assert_eq!(autoscaler().decide(secs(0), 0).desired, 0);
    }

    #[test]
    fn scale_to_zero_overrides_the_scale_down_rate() {
        let mut a = autoscaler();
        // ready 4: partial window -> lower bound floor(4/2) = 2.
        for d in run(&mut a, 0, 56, 0.0, 4) {
            assert_eq!(d.desired, 2);
        }
        // t=58: full window of zeros -> 0 even though floor(4/2) = 2 would forbid it.
        assert_eq!(run(&mut a, 58, 58, 0.0, 4)[0].desired, 0);
    }

    #[test]
    fn no_samples_for_a_whole_window_means_no_traffic() {
        let mut a = autoscaler();
        run(&mut a, 0, 10, 3.0, 3);
        // Nothing recorded after t=10 (bucket 5); at t=70 (bucket 35) the window 6..=35 has no
        // sample -> average 0, and the autoscaler has watched since bucket 0 -> 0.
        let d = a.decide(secs(70), 3);
        assert_eq!(d.stable_concurrency, 0.0);
        assert_eq!(d.desired, 0);
        // A new reading restarts the partial window: average over its bucket only.
        a.record(secs(72), 3.0);
        let d = a.decide(secs(72), 0);
        assert_eq!(d.stable_concurrency, 3.0);
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn min_bound_keeps_sandboxes_without_traffic() {
        let mut a = FunctionAutoscaler::new(AutoscalerConfig::default(), ScaleBounds { min: 1, max: 10 });
        for d in run(&mut a, 0, 300, 0.0, 1) {
            assert_eq!(d.desired, 1);
        }
    }

    #[test]
    fn max_bound_caps_demand() {
        let mut a = FunctionAutoscaler::new(AutoscalerConfig::default(), ScaleBounds { min: 0, max: 3 });
        // ready 3, load 10: dppc 10, 10/3 >= 2 -> panic, desired 10, capped to 3.
        let d = run(&mut a, 0, 0, 10.0, 3)[0];
        assert!(d.panicking);
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn set_bounds_applies_to_the_next_decision_and_max_wins_over_min() {
        let mut a = autoscaler();
        assert_eq!(run(&mut a, 0, 0, 5.0, 5)[0].desired, 5);
        a.set_bounds(ScaleBounds { min: 8, max: 20 });
        assert_eq!(a.bounds(), ScaleBounds { min: 8, max: 20 });
        assert_eq!(run(&mut a, 2, 2, 5.0, 5)[0].desired, 8);
        // Contradictory bounds must not panic (u32::clamp would); the cap wins.
        a.set_bounds(ScaleBounds { min: 8, max: 2 });
        assert_eq!(run(&mut a, 4, 4, 5.0, 5)[0].desired, 2);
    }

    #[test]
    fn max_scale_up_rate_limits_each_step() {
        let config = AutoscalerConfig { max_scale_up_rate: 2.0, ..AutoscalerConfig::default() };
        let mut a = FunctionAutoscaler::new(config, UNBOUNDED);
        // Load 10 throughout (panic from the start, dppc 10): maxScaleUp = ceil(2 * ready).
        // ready 1 -> 2, ready 2 -> 4, ready 4 -> 8, ready 8 -> min(10, 16) = 10.
        for (i, (ready, want)) in [(1, 2), (2, 4), (4, 8), (8, 10)].into_iter().enumerate() {
            let t = 2 * i as u64;
            a.record(secs(t), 10.0);
            assert_eq!(a.decide(secs(t), ready).desired, want, "ready {ready}");
        }
    }

    #[test]
    fn fractional_concurrency_needs_one_sandbox() {
        let mut a = autoscaler();
        // ceil(0.3 / 1) = 1, from zero and at steady state.
        assert_eq!(run(&mut a, 0, 0, 0.3, 0)[0].desired, 1);
        for d in run(&mut a, 2, 300, 0.3, 1) {
            assert_eq!(d.desired, 1);
        }
    }

    #[test]
    fn target_concurrency_divides_demand() {
        let config = AutoscalerConfig { target_concurrency: 4.0, ..AutoscalerConfig::default() };
        let mut a = FunctionAutoscaler::new(config, UNBOUNDED);
        // ceil(10 / 4) = 3; panic ratio 3/3 = 1.
        assert_eq!(run(&mut a, 0, 0, 10.0, 3)[0].desired, 3);
    }

    #[test]
    fn samples_in_one_tick_are_averaged() {
        let mut a = autoscaler();
        // t=0 and t=1 share bucket 0: (2 + 4) / 2 = 3.
        a.record(secs(0), 2.0);
        a.record(secs(1), 4.0);
        let d = a.decide(secs(1), 3);
        assert_eq!(d.stable_concurrency, 3.0);
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn missing_tick_between_samples_counts_as_zero() {
        let mut a = autoscaler();
        // Buckets 0 and 2 hold 10, bucket 1 none: (10 + 0 + 10) / 3 = 6.67 -> 7 (ratio 0.7, calm).
        a.record(secs(0), 10.0);
        a.record(secs(4), 10.0);
        let d = a.decide(secs(4), 10);
        assert!((d.stable_concurrency - 20.0 / 3.0).abs() < 1e-12);
        assert_eq!(d.desired, 7);
    }

    #[test]
    fn ticks_after_the_newest_sample_are_left_out() {
        let mut a = autoscaler();
        a.record(secs(0), 4.0);
        a.record(secs(2), 4.0);
        // Bucket 2 not recorded yet: average over buckets 0..=1 = 4, not (4+4+0)/3.
        let d = a.decide(secs(4), 4);
        assert_eq!(d.stable_concurrency, 4.0);
        assert_eq!(d.panic_concurrency, 4.0);
        assert_eq!(d.desired, 4);
        // Once the panic window (buckets 3..=5) holds no sample, it averages to 0.
        assert_eq!(a.decide(secs(10), 4).panic_concurrency, 0.0);
    }

    #[test]
    fn bad_readings_count_as_zero() {
        let mut a = autoscaler();
        for (t, bad) in [f64::NAN, -3.0, f64::INFINITY, f64::NEG_INFINITY].into_iter().enumerate() {
            a.record(secs(2 * t as u64), bad);
        }
        let d = a.decide(secs(6), 0);
        assert_eq!(d.stable_concurrency, 0.0);
        assert_eq!(d.panic_concurrency, 0.0);
        assert_eq!(d.desired, 0);
    }

    #[test]
    fn memory_is_bounded_by_the_stable_window() {
        let mut a = autoscaler();
        for t in 0..10_000u64 {
            a.record(secs(2 * t), 1.0);
            assert!(a.buckets.len() <= 30);
        }
        // A sample too old for any window is dropped rather than stored.
        a.record(secs(0), 100.0);
        assert_eq!(a.buckets.len(), 30);
        assert_eq!(a.decide(secs(2 * 9_999), 1).stable_concurrency, 1.0);
    }

    #[test]
    fn out_of_order_samples_inside_the_window_are_kept() {
        let mut a = autoscaler();
        a.record(secs(4), 6.0);
        a.record(secs(0), 0.0);
        a.record(secs(2), 3.0);
        // Buckets 0, 1, 2 = 0, 3, 6 -> 3.
        assert_eq!(a.decide(secs(4), 3).stable_concurrency, 3.0);
    }

    #[test]
    fn invalid_configs_do_not_panic() {
        let broken = [
            AutoscalerConfig {
                tick: Duration::ZERO,
                stable_window: Duration::ZERO,
                panic_window: Duration::ZERO,
                ..AutoscalerConfig::default()
            },
            AutoscalerConfig {
                target_concurrency: 0.0,
                max_scale_down_rate: 0.0,
                max_scale_up_rate: f64::NAN,
                panic_threshold: f64::NAN,
                ..AutoscalerConfig::default()
            },
            AutoscalerConfig {
                panic_window: Duration::MAX,
                stable_window: Duration::from_nanos(1),
                tick: Duration::from_nanos(1),
                ..AutoscalerConfig::default()
            },
        ];
        for config in broken {
            assert!(config.validate().is_err());
            let mut a = FunctionAutoscaler::new(config, UNBOUNDED);
            for t in [Duration::ZERO, Duration::MAX, secs(5), Duration::ZERO] {
                a.record(t, 3.0);
                let _ = a.decide(t, 0);
                let _ = a.decide(t, u32::MAX);
            }
        }
    }

    #[test]
    fn huge_inputs_saturate() {
        let mut a = autoscaler();
        a.record(secs(0), f64::MAX);
        let d = a.decide(secs(0), u32::MAX);
        assert_eq!(d.desired, u32::MAX);
    }
}
