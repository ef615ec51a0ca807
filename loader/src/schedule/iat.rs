//! Arrival offsets inside one trace minute.
//!
//! - Exponential (as In-Vitro's `generateIATPerGranularity`): draw `n` i.i.d. Exp(1) inter-arrival times (the rate
//!   `n / 60 s` only scales them, and scaling cancels out), rescale them so they sum to exactly 60 s, and place the
//!   arrivals at the running sums `0, g₀, g₀+g₁, …` — the last gap wraps around to the next minute. Conditioned on `n`
//!   arrivals this is a Poisson process on the minute viewed as a circle: the gaps are Dirichlet(1,…,1)·60 s, i.e.
//!   exponential up to the normalisation.
//! - Uniform: `n` i.i.d. uniform points in `[0, 60 s)`, sorted.
//! - Equidistant: `k · 60 s / n` for `k = 0..n`.
//! - Shift (In-Vitro's `ShiftIAT`): one uniform offset `s ∈ [0, 60 s)` added to every arrival modulo 60 s, i.e. the
//!   arrival pattern is rotated on the minute's circle, so that the first arrival is not always at second 0.
//!
//! Offsets are whole microseconds (floored), sorted, each `< 60 s`. Random draws happen in a fixed order
//! (gaps/points first, then the shift), which is part of the reproducibility contract.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp1};

use super::config::IatDistribution;

/// Microseconds in one trace minute.
pub const MINUTE_US: u64 = 60_000_000;

/// Sorted arrival offsets (µs from the minute start, each `< MINUTE_US`) of `n` invocations in one minute.
pub fn minute_offsets<R: Rng + ?Sized>(n: u32, iat: IatDistribution, shift: bool, rng: &mut R) -> Vec<u64> {
    if n == 0 {
        return Vec::new();
    }
    let minute = MINUTE_US as f64;
    let count = n as usize;
    let mut points: Vec<f64> = match iat {
        IatDistribution::Exponential => {
            let gaps: Vec<f64> = (0..count).map(|_| Exp1.sample(rng)).collect();
            let total: f64 = gaps.iter().sum();
            if total.is_finite() && total > 0.0 {
                let mut running = 0.0;
                gaps.iter()
                    .map(|g| {
                        let at = running / total * minute;
                        running += g;
                        at
                    })
                    .collect()
            } else {
                // Cannot happen with Exp1 (strictly positive, finite); degrade to even spacing rather than panic.
                equidistant(count)
            }
        }
        IatDistribution::Uniform => (0..count).map(|_| rng.random::<f64>() * minute).collect(),
        IatDistribution::Equidistant => equidistant(count),
    };
    if shift {
        let s = rng.random::<f64>() * minute;
        for p in &mut points {
            let q = *p + s;
            *p = if q >= minute { q - minute } else { q };
        }
    }
    let mut out: Vec<u64> = points.into_iter().map(|p| (p.max(0.0) as u64).min(MINUTE_US - 1)).collect();
    out.sort_unstable();
    out
}

fn equidistant(count: usize) -> Vec<f64> {
    let step = MINUTE_US as f64 / count as f64;
    (0..count).map(|k| k as f64 * step).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Kolmogorov–Smirnov statistic of `samples` against the CDF `cdf`.
    pub(crate) fn ks_statistic(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        samples.iter().enumerate().fold(0.0f64, |d, (i, &x)| {
            let f = cdf(x);
            d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n)
        })
    }

    /// KS critical value at α = 0.001 (asymptotic, c(α) = 1.949).
    pub(crate) fn ks_critical_001(n: usize) -> f64 {
        1.949 / (n as f64).sqrt()
    }

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn assert_well_formed(v: &[u64], n: usize) {
        assert_eq!(v.len(), n);
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(v.iter().all(|&x| x < MINUTE_US), "inside the minute");
    }

    #[test]
    fn zero_invocations() {
        for iat in [IatDistribution::Exponential, IatDistribution::Uniform, IatDistribution::Equidistant] {
            assert!(minute_offsets(0, iat, true, &mut rng(1)).is_empty());
        }
    }

    #[test]
    fn equidistant_shape() {
        assert_eq!(
            minute_offsets(4, IatDistribution::Equidistant, false, &mut rng(1)),
            vec![0, 15_000_000, 30_000_000, 45_000_000]
        );
        assert_eq!(minute_offsets(1, IatDistribution::Equidistant, false, &mut rng(1)), vec![0]);
        for seed in 0..20 {
            let v = minute_offsets(7, IatDistribution::Equidistant, true, &mut rng(seed));
            assert_well_formed(&v, 7);
            // Rotated: all cyclic gaps (including the wrap-around one) stay 60 s / 7 up to flooring.
            let step = MINUTE_US as f64 / 7.0;
            let mut gaps: Vec<f64> = v.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
            gaps.push((v[0] + MINUTE_US - v[6]) as f64);
            assert!(gaps.iter().all(|g| (g - step).abs() <= 1.0), "{gaps:?}");
        }
    }

    #[test]
    fn shift_moves_the_first_arrival_off_second_zero() {
        let firsts: Vec<u64> =
            (0..50).map(|s| minute_offsets(3, IatDistribution::Exponential, true, &mut rng(s))[0]).collect();
        assert!(firsts.iter().filter(|&&f| f > 1_000_000).count() > 10, "{firsts:?}");
        for s in 0..50 {
            assert_eq!(minute_offsets(3, IatDistribution::Exponential, false, &mut rng(s))[0], 0);
        }
    }

    #[test]
    fn uniform_shape_matches_uniform_distribution() {
        let n = 4000;
        for shift in [false, true] {
            let v = minute_offsets(n, IatDistribution::Uniform, shift, &mut rng(3));
            assert_well_formed(&v, n as usize);
            let mut x: Vec<f64> = v.iter().map(|&o| o as f64 / MINUTE_US as f64).collect();
            let d = ks_statistic(&mut x, |t| t.clamp(0.0, 1.0));
            assert!(d < ks_critical_001(n as usize), "KS D = {d}");
        }
    }

    #[test]
    fn exponential_gaps_match_the_exponential_distribution() {
        let n = 5000usize;
        for (seed, shift) in [(11, false), (12, true)] {
            let v = minute_offsets(n as u32, IatDistribution::Exponential, shift, &mut rng(seed));
            assert_well_formed(&v, n);
            // Cyclic gaps, in units of the mean gap (60 s / n): should be Exp(1).
            let mean = MINUTE_US as f64 / n as f64;
            let mut gaps: Vec<f64> = v.windows(2).map(|w| (w[1] - w[0]) as f64 / mean).collect();
            gaps.push((v[0] + MINUTE_US - v[n - 1]) as f64 / mean);
            let d = ks_statistic(&mut gaps, |x| 1.0 - (-x.max(0.0)).exp());
            assert!(d < ks_critical_001(n), "KS D = {d} vs {}", ks_critical_001(n));
            // And the arrivals themselves are uniform over the minute.
            let mut pos: Vec<f64> = v.iter().map(|&o| o as f64 / MINUTE_US as f64).collect();
            let d = ks_statistic(&mut pos, |t| t.clamp(0.0, 1.0));
            assert!(d < ks_critical_001(n), "KS D = {d}");
        }
    }

    #[test]
    fn exponential_gaps_are_not_uniform_gaps() {
        // Sanity check that the KS test has power: equidistant gaps are far from Exp(1).
        let n = 5000usize;
        let mut gaps = vec![1.0; n];
        let d = ks_statistic(&mut gaps, |x| 1.0 - (-x).exp());
        assert!(d > ks_critical_001(n));
    }
}
