//! `GET /metrics`: the control plane's view in Prometheus text format.

use std::fmt::Write as _;

use contracts::api::{FunctionStatus, FunctionView};

use crate::data_plane::stats::LATENCY_BUCKETS;

/// What `/metrics` shows: the functions' views, how many peers are registered, the latency histogram.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// Every registered function, by name.
    pub functions: Vec<FunctionView>,
    /// Registered workers.
    pub workers: usize,
    /// Registered data planes.
    pub data_planes: usize,
    /// Scheduling latency over all functions.
    pub latency: LatencyHistogram,
    /// Changes written to the registry store since the control plane started (none on the invocation path).
    pub store_writes: u64,
    /// Sandbox creation time per step (`image`, `snapshot`, ..., `ready`), from the workers' replies.
    pub creation_steps: Vec<(String, LatencyHistogram)>,
}

/// Scheduling-latency histogram summed over data planes.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    /// Counts per bucket of [`LATENCY_BUCKETS`], plus +Inf.
    pub buckets: Vec<u64>,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { buckets: vec![0; LATENCY_BUCKETS.len() + 1], sum_seconds: 0.0 }
    }
}

impl LatencyHistogram {
    /// Adds a data plane's bucket counts (ignoring a report with a different bucket layout).
    pub fn add(&mut self, buckets: &[u64], sum_seconds: f64) {
        if buckets.len() != self.buckets.len() {
            return;
        }
        for (total, add) in self.buckets.iter_mut().zip(buckets) {
            // Counts come from peers: a wrap would corrupt the histogram.
            *total = total.saturating_add(*add);
        }
        if sum_seconds.is_finite() && sum_seconds >= 0.0 {
            self.sum_seconds += sum_seconds;
        }
    }

    /// Counts one observation.
    pub fn observe(&mut self, seconds: f64) {
        let bucket = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket] = self.buckets[bucket].saturating_add(1);
        self.sum_seconds += seconds;
    }
}

/// The counter of registry-store writes: registrations only, never invocations.
pub const STORE_WRITES: &str = "dirigent_store_writes_total";

/// Renders every metric.
pub fn render(state: &Overview) -> String {
    let mut out = String::with_capacity(4096);
    gauge(&mut out, "dirigent_functions", "Registered functions.", state.functions.len() as f64);
    gauge(&mut out, "dirigent_workers", "Registered workers.", state.workers as f64);
    gauge(&mut out, "dirigent_data_planes", "Registered data planes.", state.data_planes as f64);
    let _ = writeln!(
        out,
        "# HELP {STORE_WRITES} Changes written to the registry store.\n# TYPE {STORE_WRITES} counter\n{STORE_WRITES} {}",
        state.store_writes
    );
    per_function(&mut out, state, "dirigent_sandboxes", "gauge", "Ready sandboxes per function.", |f| {
        f64::from(f.ready)
    });
    per_function(
        &mut out,
        state,
        "dirigent_sandboxes_creating",
        "gauge",
        "Sandboxes being created per function.",
        |f| f64::from(f.creating),
    );
    per_function(
        &mut out,
        state,
        "dirigent_queue_depth",
        "gauge",
        "Requests queued for a sandbox, over all data planes.",
        |f| f.queued as f64,
    );
    per_function(&mut out, state, "dirigent_desired_scale", "gauge", "The autoscaler's last desired scale.", |f| {
        f.desired.map_or(0.0, f64::from)
    });
    per_function(
        &mut out,
        state,
        "dirigent_invocations_total",
        "counter",
        "Invocations that reached a sandbox.",
        |f| f.counters.invocations as f64,
    );
    per_function(
        &mut out,
        state,
        "dirigent_cold_starts_total",
        "counter",
        "Invocations that waited for a sandbox creation.",
        |f| f.counters.cold_starts as f64,
    );
    per_function(
        &mut out,
        state,
        "dirigent_invocation_failures_total",
        "counter",
        "Invocations that failed in a data plane.",
        |f| f.counters.failures as f64,
    );
    per_function(
        &mut out,
        state,
        "dirigent_failovers_total",
        "counter",
        "Requests moved to another sandbox because theirs refused or reset the connection.",
        |f| f.counters.failovers as f64,
    );
    per_function(&mut out, state, "dirigent_sandbox_creations_total", "counter", "Sandboxes created.", |f| {
        f.counters.sandboxes_created as f64
    });
    per_function(
        &mut out,
        state,
        "dirigent_sandbox_creation_failures_total",
        "counter",
        "Sandbox creations that failed.",
        |f| f.counters.creation_failures as f64,
    );
    let name = "dirigent_scheduling_latency_seconds";
    let help = "Time from a data plane receiving a request to sending it to a sandbox.";
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    histogram(&mut out, name, "", &state.latency);
    if !state.creation_steps.is_empty() {
        let name = "dirigent_sandbox_creation_step_seconds";
        let help = "Sandbox creation time per step, as the workers' runtimes timed it.";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (step, times) in &state.creation_steps {
            histogram(&mut out, name, &format!("step=\"{step}\","), times);
        }
    }
    out
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

fn per_function(
    out: &mut String,
    state: &Overview,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&FunctionStatus) -> f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for function in &state.functions {
        // Function names are DNS labels, so they need no escaping inside the label value.
        let _ = writeln!(out, "{name}{{function=\"{}\"}} {}", function.spec.name, value(&function.status));
    }
}

/// One histogram's buckets, sum and count; `labels` (`name="value",` or empty) go before `le`.
fn histogram(out: &mut String, name: &str, labels: &str, times: &LatencyHistogram) {
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS.iter().zip(&times.buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
    }
    cumulative += times.buckets.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}\n{name}_count{braces} {cumulative}", times.sum_seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut state = Overview::default();
        let mut buckets = vec![0; LATENCY_BUCKETS.len() + 1];
        buckets[0] = 2;
        buckets[3] = 1;
        buckets[LATENCY_BUCKETS.len()] = 1;
        state.latency.add(&buckets, 12.5);
        let text = render(&state);
        assert!(text.contains("dirigent_scheduling_latency_seconds_bucket{le=\"0.00005\"} 2\n"), "{text}");
        assert!(text.contains("dirigent_scheduling_latency_seconds_bucket{le=\"0.0005\"} 3\n"), "{text}");
        assert!(text.contains("dirigent_scheduling_latency_seconds_bucket{le=\"10\"} 3\n"), "{text}");
        assert!(text.contains("dirigent_scheduling_latency_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("dirigent_scheduling_latency_seconds_count 4\n"), "{text}");
        assert!(!text.contains("creation_step"), "no step histograms before a runtime reports steps");
    }

    #[test]
    fn creation_steps_are_one_histogram_labelled_by_step() {
        let mut task = LatencyHistogram::default();
        task.observe(0.06);
        task.observe(20.0);
        let state = Overview { creation_steps: vec![("task".into(), task)], ..Overview::default() };
        let text = render(&state);
        let name = "dirigent_sandbox_creation_step_seconds";
        assert!(text.contains(&format!("{name}_bucket{{step=\"task\",le=\"0.1\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{step=\"task\",le=\"+Inf\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{name}_count{{step=\"task\"}} 2\n")), "{text}");
    }
}
