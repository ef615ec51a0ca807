//! Inverse-CDF sampling of execution time and memory from a function's percentile points.
//!
//! Draw `u` uniformly in `[0, 100)`, find the two percentile points around it and interpolate linearly between their
//! values (a piecewise-linear CDF through the trace's points). Duration points are at 0, 1, 25, 50, 75, 99, 100, so
//! every `u` lies between two points. Memory points start at the 1st percentile: the trace says nothing below it, so
//! for `u < 1` the value is held flat at the 1st-percentile value (interpolating down to 0 MiB would invent
//! implausibly small footprints). The trace's memory is in MB; it is used as MiB, as In-Vitro does.
//!
//! Degenerate inputs never panic: NaN or negative values count as 0, values are made non-decreasing (running
//! maximum), and the result is rounded and clamped to the configured bounds (NaN → the lower bound).

use rand::{Rng, RngExt};

use crate::trace::model::{DURATION_PERCENTILES, DurationStats, MEMORY_PERCENTILES, MemoryStats};

/// Largest value kept before interpolation, so that arithmetic stays finite (far above any bound).
const VALUE_CAP: f64 = 1e15;

/// The value at percentile `u` (0..=100) of the piecewise-linear CDF through `(percentiles[i], values[i])`.
///
/// `percentiles` must be strictly increasing; `values` are sanitised as described in the module docs.
pub fn inverse_cdf(percentiles: &[f64], values: &[f64], u: f64) -> f64 {
    let n = percentiles.len().min(values.len());
    if n == 0 {
        return 0.0;
    }
    let mut clean = Vec::with_capacity(n);
    let mut running = 0.0f64;
    for &v in &values[..n] {
        let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, VALUE_CAP) };
        running = running.max(v);
        clean.push(running);
    }
    if u.is_nan() || u <= percentiles[0] {
        return clean[0];
    }
    for i in 0..n - 1 {
        let (p0, p1) = (percentiles[i], percentiles[i + 1]);
        if u < p1 {
            let t = if p1 > p0 { (u - p0) / (p1 - p0) } else { 0.0 };
            return clean[i] + (clean[i + 1] - clean[i]) * t;
        }
    }
    clean[n - 1]
}

/// Rounds `v` to the nearest integer and clamps it to `[lo, hi]` (NaN → `lo`; bounds in either order).
pub fn clamp_round(v: f64, (a, b): (u32, u32)) -> u32 {
    let (lo, hi) = (a.min(b), a.max(b));
    if v.is_nan() {
        return lo;
    }
    v.round().clamp(f64::from(lo), f64::from(hi)) as u32
}

/// One execution time draw, milliseconds, clamped to `bounds_ms`.
pub fn sample_duration_ms<R: Rng + ?Sized>(stats: &DurationStats, bounds_ms: (u32, u32), rng: &mut R) -> u32 {
    let u = rng.random::<f64>() * 100.0;
    clamp_round(inverse_cdf(&DURATION_PERCENTILES, &stats.percentiles, u), bounds_ms)
}

/// One memory draw, MiB, clamped to `bounds_mib`.
pub fn sample_memory_mib<R: Rng + ?Sized>(stats: &MemoryStats, bounds_mib: (u32, u32), rng: &mut R) -> u32 {
    let u = rng.random::<f64>() * 100.0;
    clamp_round(inverse_cdf(&MEMORY_PERCENTILES, &stats.percentiles, u), bounds_mib)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn duration(p: [f64; 7]) -> DurationStats {
        DurationStats { average: p[3], count: 100, minimum: p[0], maximum: p[6], percentiles: p }
    }

    fn memory(p: [f64; 8]) -> MemoryStats {
        MemoryStats { sample_count: 100, average: p[3], percentiles: p }
    }

    #[test]
    fn interpolates_between_points() {
        let v = [0.0, 10.0, 100.0, 200.0, 300.0, 1000.0, 2000.0];
        assert_eq!(inverse_cdf(&DURATION_PERCENTILES, &v, 0.0), 0.0);
        assert_eq!(inverse_cdf(&DURATION_PERCENTILES, &v, 50.0), 200.0);
        assert_eq!(inverse_cdf(&DURATION_PERCENTILES, &v, 37.5), 150.0);
        assert_eq!(inverse_cdf(&DURATION_PERCENTILES, &v, 99.5), 1500.0);
        assert_eq!(inverse_cdf(&DURATION_PERCENTILES, &v, 100.0), 2000.0);
        // Memory below its first point (p1) is held at the p1 value.
        let m = [100.0, 120.0, 150.0, 170.0, 200.0, 250.0, 300.0, 400.0];
        assert_eq!(inverse_cdf(&MEMORY_PERCENTILES, &m, 0.3), 100.0);
        assert_eq!(inverse_cdf(&MEMORY_PERCENTILES, &m, 3.0), 110.0);
    }

    #[test]
    fn median_draws_near_p50() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let d = duration([1.0, 5.0, 100.0, 200.0, 300.0, 1000.0, 5000.0]);
        let mut draws: Vec<u32> = (0..10_001).map(|_| sample_duration_ms(&d, (1, 900_000), &mut rng)).collect();
        draws.sort_unstable();
        let median = draws[5000];
        assert!((190..=210).contains(&median), "median {median}");
        // A quarter of the draws below p25, roughly.
        let below = draws.iter().filter(|&&x| x < 100).count();
        assert!((2300..2700).contains(&below), "{below}");

        let m = memory([100.0, 120.0, 150.0, 170.0, 200.0, 250.0, 300.0, 400.0]);
        let mut draws: Vec<u32> = (0..10_001).map(|_| sample_memory_mib(&m, (1, 10_240), &mut rng)).collect();
        draws.sort_unstable();
        assert!((165..=175).contains(&draws[5000]), "median {}", draws[5000]);
        assert!(draws.iter().all(|&x| (100..=400).contains(&x)));
    }

    #[test]
    fn bounds_are_respected() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let d = duration([0.0, 0.0, 0.5, 10.0, 5e5, 2e6, 1e7]);
        for _ in 0..5000 {
            let x = sample_duration_ms(&d, (1, 900_000), &mut rng);
            assert!((1..=900_000).contains(&x));
        }
        let m = memory([1e5; 8]);
        assert_eq!(sample_memory_mib(&m, (1, 10_240), &mut rng), 10_240);
    }

    #[test]
    fn degenerate_inputs_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // All equal: always that value.
        let d = duration([42.0; 7]);
        assert!((0..100).all(|_| sample_duration_ms(&d, (1, 900_000), &mut rng) == 42));
        // NaN and negative count as 0 → clamped to the lower bound.
        let d = duration([f64::NAN, -5.0, f64::NAN, -1.0, f64::NAN, f64::NAN, -3.0]);
        assert!((0..100).all(|_| sample_duration_ms(&d, (1, 900_000), &mut rng) == 1));
        // Infinite → upper bound; non-monotone → running maximum, still within bounds.
        let d = duration([f64::INFINITY; 7]);
        assert_eq!(sample_duration_ms(&d, (1, 900_000), &mut rng), 900_000);
        let d = duration([500.0, 10.0, 5.0, 1.0, 700.0, 3.0, 2.0]);
        for _ in 0..100 {
            let x = sample_duration_ms(&d, (1, 900_000), &mut rng);
            assert!((500..=700).contains(&x), "{x}");
        }
        assert_eq!(inverse_cdf(&[], &[], 50.0), 0.0);
        assert_eq!(inverse_cdf(&DURATION_PERCENTILES, &[1.0; 7], f64::NAN), 1.0);
        assert_eq!(clamp_round(f64::NAN, (3, 9)), 3);
        assert_eq!(clamp_round(100.0, (9, 3)), 9);
    }
}
