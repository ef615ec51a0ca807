//! What `loader validate` prints: the size and the shape of a trace's load over time.

use std::fmt;

use super::model::Trace;

/// Minutes in an hour, for per-hour totals.
const MINUTES_PER_HOUR: usize = 60;

/// Figures describing a trace (or a slice of one).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// Functions in the trace.
    pub functions: usize,
    /// Trace-day minute of the first minute (0-based; non-zero for a slice that starts later).
    pub start_minute: usize,
    /// Minutes covered.
    pub minutes: usize,
    /// Invocations over all functions and minutes.
    pub total_invocations: u64,
    /// Smallest per-minute total (all functions).
    pub min_per_minute: u64,
    /// Mean per-minute total.
    pub mean_per_minute: f64,
    /// Largest per-minute total.
    pub max_per_minute: u64,
    /// Trace-day minute (0-based) of the largest total; the first one on ties.
    pub busiest_minute: usize,
    /// Invocations per hour of the day that the trace covers: (hour of the day, total).
    pub per_hour: Vec<(usize, u64)>,
}

impl TraceSummary {
    /// Summarises `trace`, whose minute 0 is minute `start_minute` of the trace's day (0 unless it was sliced).
    pub fn new(trace: &Trace, start_minute: usize) -> Self {
        let totals = per_minute_totals(trace);
        let (busiest, max) =
            totals.iter().enumerate().fold((0, 0), |best, (m, &n)| if n > best.1 { (m, n) } else { best });
        let total: u64 = totals.iter().sum();
        Self {
            functions: trace.functions.len(),
            start_minute,
            minutes: totals.len(),
            total_invocations: total,
            min_per_minute: totals.iter().copied().min().unwrap_or(0),
            mean_per_minute: if totals.is_empty() { 0.0 } else { total as f64 / totals.len() as f64 },
            max_per_minute: max,
            busiest_minute: start_minute + busiest,
            per_hour: per_hour_totals(&totals, start_minute),
        }
    }
}

/// The sum over functions of each minute's invocations.
fn per_minute_totals(trace: &Trace) -> Vec<u64> {
    let mut totals = vec![0u64; trace.minutes()];
    for function in &trace.functions {
        for (total, &n) in totals.iter_mut().zip(&function.invocations_per_minute) {
            *total += u64::from(n);
        }
    }
    totals
}

/// Totals grouped by hour of the day (so a slice starting at minute 90 has a partial hour 1 first).
fn per_hour_totals(totals: &[u64], start_minute: usize) -> Vec<(usize, u64)> {
    let mut hours: Vec<(usize, u64)> = Vec::new();
    for (offset, &n) in totals.iter().enumerate() {
        let hour = (start_minute + offset) / MINUTES_PER_HOUR;
        match hours.last_mut() {
            Some((last, sum)) if *last == hour => *sum += n,
            _ => hours.push((hour, n)),
        }
    }
    hours
}

impl fmt::Display for TraceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.start_minute + self.minutes;
        writeln!(f, "functions:          {}", self.functions)?;
        writeln!(
            f,
            "minutes:            {} (minutes {}..{} of the day, 0-based)",
            self.minutes, self.start_minute, end
        )?;
        writeln!(f, "total invocations:  {}", self.total_invocations)?;
        writeln!(
            f,
            "per-minute totals:  min {}, mean {:.1}, max {} (busiest minute {})",
            self.min_per_minute, self.mean_per_minute, self.max_per_minute, self.busiest_minute
        )?;
        writeln!(f, "per-hour totals:")?;
        for (hour, total) in &self.per_hour {
            writeln!(f, "  hour {hour:02}: {total}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{DurationStats, MemoryStats, TraceFunction};

    fn function(per_minute: Vec<u32>) -> TraceFunction {
        TraceFunction {
            name: "f-x".into(),
            hash_owner: "o".into(),
            hash_app: "a".into(),
            hash_function: "x".into(),
            trigger: "http".into(),
            invocations_per_minute: per_minute,
            duration: DurationStats { average: 1.0, count: 1, minimum: 1.0, maximum: 1.0, percentiles: [1.0; 7] },
            memory: MemoryStats { sample_count: 1, average: 1.0, percentiles: [1.0; 8] },
        }
    }

    #[test]
    fn figures_of_a_slice_use_day_minutes_and_hours() {
        let trace = Trace { functions: vec![function(vec![1, 5, 2, 0]), function(vec![0, 0, 7, 1])] };
        let summary = TraceSummary::new(&trace, 58);
        assert_eq!(summary.functions, 2);
        assert_eq!(summary.total_invocations, 16);
        assert_eq!((summary.min_per_minute, summary.max_per_minute), (1, 9));
        assert_eq!(summary.mean_per_minute, 4.0);
        assert_eq!(summary.busiest_minute, 60);
        assert_eq!(summary.per_hour, [(0, 6), (1, 10)]);
        let text = summary.to_string();
        assert!(text.contains("total invocations:  16"), "{text}");
        assert!(text.contains("hour 01: 10"), "{text}");
    }
}
