//! Synthetic schedules at a constant rate: the constant-RPS mode and the Dirigent paper's cold-start sweep.
//!
//! Invocation `k` (0-based, in time order) goes to function `k mod functions` (round-robin), so with equidistant
//! arrivals every function is called exactly every `functions / rate` seconds. The cold-start sweep relies on that:
//! with `functions = ceil(rate × cooldown)`, each function sits idle for at least the cooldown between two calls.
//!
//! Arrival times: equidistant `k / rate`, or a Poisson process (exponential gaps with mean `1 / rate`) drawn from a
//! ChaCha8 stream seeded with [`arrival_rng`]. The first `warmup` of the run is [`Phase::Warmup`]; the measured phase
//! follows for `duration`. Only a per-function counter array is held, so memory does not grow with the run.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1};

use super::generate::{Invocation, Phase};
use super::iat::MINUTE_US;
use super::seed::{fnv1a64, mix64, splitmix64};

/// How the arrivals of a constant-rate schedule are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// One invocation every `1 / rate` seconds.
    #[default]
    Equidistant,
    /// A Poisson process: exponential gaps with mean `1 / rate`.
    Exponential,
}

/// A constant-rate schedule, round-robin over `functions` functions.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstantRate {
    /// Invocations per second, all functions together; finite and > 0.
    pub rate_per_s: f64,
    /// Length of the leading warm-up phase.
    pub warmup: Duration,
    /// Length of the measured phase that follows.
    pub duration: Duration,
    /// Functions the invocations rotate over; at least 1.
    pub functions: u32,
    /// Spacing of the arrivals.
    pub arrivals: Arrivals,
    /// Seed of the exponential arrivals (unused for equidistant ones).
    pub seed: u64,
    /// Requested execution time of every invocation, ms.
    pub runtime_ms: u32,
    /// Requested memory of every invocation, MiB.
    pub memory_mib: u32,
}

/// The arrival stream of a constant-rate schedule: a ChaCha8 key of four SplitMix64-style outputs of
/// `mix64(seed) ^ FNV-1a-64("constant-rate")`, so it never coincides with a trace function's stream.
pub fn arrival_rng(seed: u64) -> ChaCha8Rng {
    let mut state = mix64(seed) ^ fnv1a64(b"constant-rate");
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

impl ConstantRate {
    /// Total length of the schedule, µs (warm-up plus measured phase).
    pub fn run_duration_us(&self) -> u64 {
        duration_us(self.warmup).saturating_add(duration_us(self.duration))
    }

    /// The schedule's invocations in time order.
    pub fn iter(&self) -> ConstantRateIter {
        ConstantRateIter {
            spec: self.clone(),
            end_us: self.run_duration_us(),
            warmup_us: duration_us(self.warmup),
            period_us: 1e6 / self.rate_per_s,
            rng: arrival_rng(self.seed),
            next_k: 0,
            exponential_at_us: 0.0,
            minute: 0,
            per_function_in_minute: vec![0; self.functions.max(1) as usize],
        }
    }

    /// Counts the schedule's invocations (by generating it once; no memory per invocation).
    pub fn counts(&self) -> ConstantRateCounts {
        let mut counts =
            ConstantRateCounts { total: 0, measured_per_function: vec![0; self.functions.max(1) as usize] };
        for invocation in self.iter() {
            counts.total += 1;
            if invocation.phase == Phase::Measured {
                counts.measured_per_function[invocation.function as usize] += 1;
            }
        }
        counts
    }
}

/// How many invocations a [`ConstantRate`] schedule holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstantRateCounts {
    /// All invocations, warm-up included.
    pub total: u64,
    /// Measured invocations of each function.
    pub measured_per_function: Vec<u64>,
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Iterator over a [`ConstantRate`] schedule.
#[derive(Debug, Clone)]
pub struct ConstantRateIter {
    spec: ConstantRate,
    end_us: u64,
    warmup_us: u64,
    period_us: f64,
    rng: ChaCha8Rng,
    next_k: u64,
    exponential_at_us: f64,
    minute: u32,
    per_function_in_minute: Vec<u32>,
}

impl ConstantRateIter {
    fn next_offset_us(&mut self) -> f64 {
        match self.spec.arrivals {
            Arrivals::Equidistant => self.next_k as f64 * self.period_us,
            Arrivals::Exponential => {
                let at = self.exponential_at_us;
                let gap: f64 = Exp1.sample(&mut self.rng);
                self.exponential_at_us += gap * self.period_us;
                at
            }
        }
    }
}

impl Iterator for ConstantRateIter {
    type Item = Invocation;

    fn next(&mut self) -> Option<Invocation> {
        let offset = self.next_offset_us();
        if offset >= self.end_us as f64 {
            return None;
        }
        let offset_us = offset as u64;
        let function = (self.next_k % self.per_function_in_minute.len() as u64) as u32;
        self.next_k += 1;
        let minute = u32::try_from(offset_us / MINUTE_US).unwrap_or(u32::MAX);
        if minute != self.minute {
            self.minute = minute;
            self.per_function_in_minute.fill(0);
        }
        let slot = &mut self.per_function_in_minute[function as usize];
        let index_in_minute = *slot;
        *slot = slot.saturating_add(1);
        Some(Invocation {
            function,
            minute,
            index_in_minute,
            intended_offset_us: offset_us,
            runtime_ms: self.spec.runtime_ms,
            memory_mib: self.spec.memory_mib,
            phase: if offset_us < self.warmup_us { Phase::Warmup } else { Phase::Measured },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: f64, seconds: u64, functions: u32, arrivals: Arrivals) -> ConstantRate {
        ConstantRate {
            rate_per_s: rate,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(seconds),
            functions,
            arrivals,
            seed: 42,
            runtime_ms: 10,
            memory_mib: 16,
        }
    }

    #[test]
    fn equidistant_is_exactly_periodic_and_round_robin() {
        let all: Vec<_> = spec(100.0, 2, 3, Arrivals::Equidistant).iter().collect();
        assert_eq!(all.len(), 200);
        for (k, inv) in all.iter().enumerate() {
            assert_eq!(inv.intended_offset_us, k as u64 * 10_000);
            assert_eq!(inv.function, (k % 3) as u32);
            assert_eq!(inv.index_in_minute, (k / 3) as u32);
            assert_eq!((inv.runtime_ms, inv.memory_mib, inv.phase), (10, 16, Phase::Measured));
        }
    }

    #[test]
    fn warmup_comes_first_and_indices_restart_each_minute() {
        let mut s = spec(1.0, 90, 1, Arrivals::Equidistant);
        s.warmup = Duration::from_secs(30);
        let all: Vec<_> = s.iter().collect();
        assert_eq!(all.len(), 120);
        assert!(all[..30].iter().all(|i| i.phase == Phase::Warmup));
        assert!(all[30..].iter().all(|i| i.phase == Phase::Measured));
        assert_eq!((all[60].minute, all[60].index_in_minute), (1, 0));
        assert_eq!((all[59].minute, all[59].index_in_minute), (0, 59));
        assert_eq!(s.counts(), ConstantRateCounts { total: 120, measured_per_function: vec![90] });
    }

    #[test]
    fn each_function_waits_functions_over_rate_between_calls() {
        // The cold-start sweep: 5 cold starts/s with a 2 s cooldown needs 10 functions.
        let all: Vec<_> = spec(5.0, 10, 10, Arrivals::Equidistant).iter().collect();
        for f in 0..10 {
            let times: Vec<u64> = all.iter().filter(|i| i.function == f).map(|i| i.intended_offset_us).collect();
            assert_eq!(times.len(), 5);
            assert!(times.windows(2).all(|w| w[1] - w[0] == 2_000_000), "{times:?}");
        }
    }

    #[test]
    fn exponential_arrivals_have_the_requested_rate_and_are_seeded() {
        let s = spec(1000.0, 20, 4, Arrivals::Exponential);
        let a: Vec<_> = s.iter().collect();
        assert_eq!(a, s.iter().collect::<Vec<_>>());
        let other: Vec<_> = ConstantRate { seed: 7, ..s.clone() }.iter().take(10).collect();
        assert_ne!(a[..10], other[..]);
        // 20 000 expected, standard deviation about 141: 5 sigma.
        assert!((a.len() as i64 - 20_000).abs() < 710, "{}", a.len());
        let gaps: Vec<f64> = a.windows(2).map(|w| (w[1].intended_offset_us - w[0].intended_offset_us) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential: the standard deviation equals the mean (1 ms); equidistant would give 0.
        assert!((mean - 1000.0).abs() < 50.0, "{mean}");
        assert!((variance.sqrt() / mean - 1.0).abs() < 0.1, "{variance}");
        assert!(a.windows(2).all(|w| w[0].intended_offset_us <= w[1].intended_offset_us));
    }
}
