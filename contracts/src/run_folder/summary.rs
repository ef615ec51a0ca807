//! `summary.json`: counts, percentiles, rates and the trustworthy verdict, per function and overall. The loader
//! computes and writes it; the experiments read its counts, the analysis its verdict and send-lag figures. Every
//! key the loader has always written is required (a summary without it is broken, not zero); `runDurationS`
//! (which older loaders did not write) and `counts.failovers` (written only when not 0) are optional; unknown keys
//! are ignored.

use serde::{Deserialize, Serialize};

/// Invocation counts. Everything except `warmup*` counts measured invocations only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Measured invocations sent.
    pub measured: u64,
    /// Measured invocations that succeeded.
    pub ok: u64,
    /// Measured invocations that could not connect (vHive's `connectionTimeout`).
    pub connection_failed: u64,
    /// Measured invocations that timed out (vHive's `functionTimeout`).
    pub timeout: u64,
    /// Measured invocations answered with a non-success status.
    pub status_error: u64,
    /// Measured invocations that met a cold start (as far as the platform tells).
    pub cold_starts: u64,
    /// Warm-up invocations sent (excluded from every histogram and from the counts above).
    pub warmup: u64,
    /// Warm-up invocations that failed.
    pub warmup_failures: u64,
    /// Times a measured invocation's connection was refused by one data plane and it was sent to the next one
    /// (the dirigent target's failover). Written only when not 0, so summaries without failovers (and those of older
    /// loaders, which never failed over) stay as they were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failovers: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl Counts {
    /// Measured invocations that failed, of any kind.
    pub fn failures(&self) -> u64 {
        self.connection_failed + self.timeout + self.status_error
    }

    /// Invocations sent, warm-up included.
    pub fn sent(&self) -> u64 {
        self.measured + self.warmup
    }
}

/// Percentiles of one histogram, µs; `null` in JSON when nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// Number of values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value (capped at [`super::MAX_RECORDED_US`]).
    pub max: u64,
}

/// The summary of one function, or of the whole run (then `name` is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSummary {
    /// The function's stable name; absent for the overall summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Invocation counts (measured unless named `warmup*`).
    pub counts: Counts,
    /// Measured failures of any kind.
    pub failures: u64,
    /// Scheduled measured invocations per second, if the schedule's counts were given.
    pub requested_rate_per_s: Option<f64>,
    /// Measured invocations sent per second.
    pub achieved_rate_per_s: f64,
    /// Successful measured invocations per second.
    pub ok_rate_per_s: f64,
    /// Response-time percentiles, µs.
    pub response_time_us: Option<Percentiles>,
    /// Scheduling-latency percentiles, µs.
    pub scheduling_latency_us: Option<Percentiles>,
    /// Mean scheduling latency, µs.
    pub mean_scheduling_latency_us: Option<f64>,
    /// Geometric-mean slowdown (response time / requested duration) of successful invocations.
    pub geomean_slowdown: Option<f64>,
    /// Send-lag percentiles, µs.
    pub send_lag_us: Option<Percentiles>,
    /// Largest send lag, µs.
    pub max_send_lag_us: u64,
    /// Send-lag p99 ≤ the threshold (true when nothing was measured).
    pub trustworthy: bool,
}

/// The whole `summary.json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The send-lag p99 threshold used for `trustworthy`, µs.
    pub send_lag_threshold_us: u64,
    /// Length of the measured phase, seconds.
    pub measured_duration_s: f64,
    /// Length of the whole schedule, warm-up included, seconds; `None` in summaries of older loaders.
    #[serde(default)]
    pub run_duration_s: Option<f64>,
    /// The overall `trustworthy` flag (same as `overall.trustworthy`).
    pub trustworthy: bool,
    /// Over all functions.
    pub overall: StatsSummary,
    /// Per function, in index order.
    pub functions: Vec<StatsSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overall() -> StatsSummary {
        StatsSummary {
            name: None,
            counts: Counts {
                measured: 10,
                ok: 8,
                status_error: 2,
                warmup: 5,
                warmup_failures: 1,
                failovers: 3,
                ..Counts::default()
            },
            failures: 2,
            requested_rate_per_s: None,
            achieved_rate_per_s: 5.0,
            ok_rate_per_s: 4.0,
            response_time_us: Some(Percentiles { count: 10, p50: 1, p90: 2, p99: 3, p999: 4, max: 5 }),
            scheduling_latency_us: None,
            mean_scheduling_latency_us: Some(1.5),
            geomean_slowdown: None,
            send_lag_us: None,
            max_send_lag_us: 7,
            trustworthy: true,
        }
    }

    fn summary() -> RunSummary {
        let function = StatsSummary { name: Some("f".into()), ..overall() };
        RunSummary {
            send_lag_threshold_us: 100,
            measured_duration_s: 2.0,
            run_duration_s: Some(3.0),
            trustworthy: true,
            overall: overall(),
            functions: vec![function],
        }
    }

    #[test]
    fn round_trips_and_keeps_the_loaders_keys() {
        let summary = summary();
        let json = serde_json::to_value(&summary).unwrap();
        assert!(json["overall"].get("name").is_none(), "the overall summary has no name");
        assert!(json["overall"]["requestedRatePerS"].is_null(), "an unknown rate is null, not absent");
        assert_eq!(json["overall"]["counts"]["warmupFailures"], 1);
        assert_eq!(json["overall"]["counts"]["failovers"], 3);
        assert!(json["functions"][0]["counts"].get("failovers").is_some());
        let none = Counts::default();
        assert!(serde_json::to_value(none).unwrap().get("failovers").is_none(), "0 is not written");
        assert_eq!(json["functions"][0]["name"], "f");
        assert_eq!(serde_json::from_value::<RunSummary>(json).unwrap(), summary);
        assert_eq!((summary.overall.counts.failures(), summary.overall.counts.sent()), (2, 15));
    }

    #[test]
    fn an_older_summary_without_the_run_duration_reads() {
        let mut json = serde_json::to_value(summary()).unwrap();
        json.as_object_mut().unwrap().remove("runDurationS");
        json["newerKey"] = serde_json::json!({"from": "a newer loader"});
        json["overall"]["counts"].as_object_mut().unwrap().remove("failovers");
        let back: RunSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back.run_duration_s, None);
        assert_eq!(back.overall.counts.failovers, 0);
    }

    #[test]
    fn a_missing_count_is_an_error_not_zero() {
        let mut json = serde_json::to_value(summary()).unwrap();
        json["overall"]["counts"].as_object_mut().unwrap().remove("warmup");
        let error = serde_json::from_value::<RunSummary>(json).unwrap_err().to_string();
        assert!(error.contains("missing field `warmup`"), "{error}");
    }
}
