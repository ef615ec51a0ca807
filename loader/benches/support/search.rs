//! The highest open-loop rate the loader sustains: double the rate until a step falls behind (or halve until one
//! keeps up), then bisect between the last rate that kept up and the first that did not. A rate keeps up if any of
//! its tries (`BENCH_SEARCH_TRIES`) does.

use serde::Serialize;

use super::replay::{Bench, RateCase};

/// Rates are rounded to this step, invocations/s: finer would be below the run-to-run noise.
const RATE_GRAIN: f64 = 100.0;
/// The search gives up above this rate (the loopback target itself tops out far below).
const MAX_RATE: f64 = 1_000_000.0;

/// The search's steps and its answer.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    /// Every step, in the order run.
    pub steps: Vec<RateCase>,
    /// The highest rate that kept up; `None` if not even the lowest did.
    pub sustained: Option<f64>,
}

/// Runs the search with the bench's settings.
pub fn run(bench: &Bench<'_>) -> anyhow::Result<Search> {
    let settings = bench.settings;
    let mut steps = Vec::new();
    // A rate gets a second try when the first falls behind: on a shared machine one stall by another process
    // fails a step, and one wrong step would send the whole search down.
    let mut step = |rate: f64| -> anyhow::Result<bool> {
        for _ in 0..settings.search_tries.max(1) {
            eprintln!("  {rate:.0}/s for {} s ...", settings.search_secs);
            let case = bench.run_rate(rate, settings.search_secs)?;
            let kept_up = case.kept_up(settings.lag_threshold_us);
            steps.push(case);
            if kept_up {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let (mut good, mut bad) = bracket(settings.search_start.max(RATE_GRAIN), &mut step)?;
    if let (Some(low), Some(high)) = (good.as_mut(), bad.as_mut()) {
        for _ in 0..settings.bisect {
            let mid = round_rate((*low + *high) / 2.0);
            if mid <= *low || mid >= *high {
                break;
            }
            if step(mid)? { *low = mid } else { *high = mid }
        }
    }
    Ok(Search { steps, sustained: good })
}

/// Finds a rate that keeps up and one that does not, doubling or halving from `start`.
fn bracket(
    start: f64,
    step: &mut impl FnMut(f64) -> anyhow::Result<bool>,
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let (mut good, mut bad) = (None, None);
    let mut rate = round_rate(start);
    loop {
        if step(rate)? {
            good = Some(rate);
            if bad.is_some() || rate * 2.0 > MAX_RATE {
                return Ok((good, bad));
            }
            rate = round_rate(rate * 2.0);
        } else {
            bad = Some(rate);
            if good.is_some() || rate / 2.0 < RATE_GRAIN {
                return Ok((good, bad));
            }
            rate = round_rate(rate / 2.0);
        }
    }
}

fn round_rate(rate: f64) -> f64 {
    ((rate / RATE_GRAIN).round() * RATE_GRAIN).max(RATE_GRAIN)
}
