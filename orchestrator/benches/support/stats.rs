//! Percentiles over recorded samples (sorted vectors; the sample sizes here are small).

use serde::Serialize;

/// A latency distribution in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Largest sample, µs.
    pub max_us: f64,
}

impl Summary {
    /// Summarises `samples` (µs); all zero when empty.
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let count = samples.len();
        Self {
            count,
            p50_us: nearest_rank(&samples, 50.0),
            p99_us: nearest_rank(&samples, 99.0),
            mean_us: samples.iter().sum::<f64>() / count as f64,
            max_us: samples[count - 1],
        }
    }
}

/// The nearest-rank percentile `p` (0-100] of ascending `sorted`, which must not be empty.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
