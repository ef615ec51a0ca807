//! Tests for the output writers.

use std::time::{Duration, UNIX_EPOCH};

use contracts::run_folder::{Event, EventKind, INVOCATIONS_HEADER, MAX_RECORDED_US};

use super::*;
use crate::record::{InvocationRecord, Outcome, PlatformBreakdown};
use crate::schedule::Phase;

fn record(function: u32, outcome: Outcome) -> InvocationRecord {
    InvocationRecord {
        phase: Phase::Measured,
        function,
        minute: 3,
        index_in_minute: 7,
        intended_unix_us: 1_700_000_000_000_000,
        sent_unix_us: 1_700_000_000_000_042,
        requested_duration_us: 100_000,
        requested_memory_mib: 128,
        response_time_us: 120_000,
        actual_duration_us: Some(101_000),
        actual_memory_mib: Some(64),
        outcome,
        cold_start: Some(false),
        breakdown: PlatformBreakdown::default(),
        failovers: 0,
    }
}

fn names() -> Vec<String> {
    vec!["f-aaaa".into(), "f-bbbb".into(), "f-cccc".into()]
}

#[test]
fn csv_header_and_one_row_per_outcome_kind() {
    let mut csv = InvocationsCsv::new(Vec::new(), &names()).unwrap();
    let mut cold = record(0, Outcome::Ok);
    cold.phase = Phase::Warmup;
    cold.cold_start = Some(true);
    cold.breakdown = PlatformBreakdown {
        queue_us: Some(5),
        create_us: Some(900),
        proxy_us: Some(12),
        cold_start: Some("waited".into()),
        create_steps: Vec::new(),
    };
    csv.write(&cold).unwrap();
    let mut failed = record(1, Outcome::ConnectionFailed("refused, port 80".into()));
    failed.response_time_us = 0;
    failed.actual_duration_us = None;
    failed.actual_memory_mib = None;
    failed.cold_start = None;
    csv.write(&failed).unwrap();
    let mut timeout = record(2, Outcome::Timeout);
    timeout.actual_duration_us = None;
    timeout.actual_memory_mib = None;
    csv.write(&timeout).unwrap();
    csv.write(&record(0, Outcome::Status(503, "unavailable".into()))).unwrap();
    let text = String::from_utf8(csv.into_inner().unwrap()).unwrap();
    let expected = "\
phase,instance,invocationID,startTime,requestedDuration,responseTime,actualDuration,connectionTimeout,functionTimeout,\
actualMemoryUsage,intendedTime,sendLag,coldStart,schedulingLatency,outcome,queueTime,createTime,proxyTime,\
platformColdStart
1,f-aaaa,min3.inv7,1700000000000042,100000,120000,101000,false,false,64,1700000000000000,42,true,19000,ok,5,900,12,waited
2,f-bbbb,min3.inv7,1700000000000042,100000,0,,true,false,,1700000000000000,42,,,connection,,,,
2,f-cccc,min3.inv7,1700000000000042,100000,120000,,false,true,,1700000000000000,42,false,,timeout,,,,
2,f-aaaa,min3.inv7,1700000000000042,100000,120000,101000,false,false,64,1700000000000000,42,false,19000,http-503,,,,
";
    assert_eq!(text, expected);
}

#[test]
fn csv_rejects_unknown_function() {
    let mut csv = InvocationsCsv::new(Vec::new(), &names()).unwrap();
    let error = csv.write(&record(9, Outcome::Ok)).unwrap_err();
    assert!(matches!(error, OutputError::UnknownFunction { index: 9, known: 3 }), "{error}");
}

#[test]
fn csv_file_roundtrips_through_a_csv_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invocations.csv");
    let mut csv = InvocationsCsv::create(&path, &names()).unwrap();
    csv.write(&record(1, Outcome::Status(500, "a \"quoted\", message".into()))).unwrap();
    csv.flush().unwrap();
    drop(csv);
    let mut reader = ::csv::Reader::from_path(&path).unwrap();
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), INVOCATIONS_HEADER);
    let rows: Vec<_> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1], "f-bbbb");
    assert_eq!(&rows[0][14], "http-500");
}

#[test]
fn percentiles_on_known_inputs() {
    let mut stats = RunStats::new(&names());
    for value in 1..=1000u64 {
        let mut r = record(0, Outcome::Ok);
        r.response_time_us = value * 1000;
        r.actual_duration_us = Some(0);
        r.sent_unix_us = r.intended_unix_us + value;
        stats.record(&r);
    }
    let function = &stats.functions()[0];
    // Overall 3 significant digits: exact to within 0.1 %; per function 2: within 1 %.
    for (stats, per_mille) in [(stats.overall(), 1), (function, 10)] {
        let response = percentiles_of(&stats.response_time).unwrap();
        let close = |actual: u64, wanted: u64| actual.abs_diff(wanted) * 1000 <= wanted * per_mille;
        assert_eq!(response.count, 1000);
        assert!(close(response.p50, 500_000), "{response:?}");
        assert!(close(response.p90, 900_000), "{response:?}");
        assert!(close(response.p99, 990_000), "{response:?}");
        assert!(close(response.p999, 999_000), "{response:?}");
        assert!(close(response.max, 1_000_000), "{response:?}");
    }
    let lag = percentiles_of(&stats.overall().send_lag).unwrap();
    assert_eq!((lag.p50, lag.p99, lag.max), (500, 990, 1000));
    let lag = percentiles_of(&function.send_lag).unwrap();
    assert_eq!((lag.p50, lag.p99, lag.max), (501, 991, 1003), "1 % resolution per function");
    assert_eq!(function.max_send_lag_us, 1000);
    assert_eq!(function.mean_scheduling_latency_us(), Some(500_500.0));
    assert!(percentiles_of(&stats.functions()[1].response_time).is_none());
}

#[test]
fn warmup_is_counted_but_excluded_from_histograms() {
    let mut stats = RunStats::new(&names());
    let mut warm = record(0, Outcome::Timeout);
    warm.phase = Phase::Warmup;
    warm.response_time_us = 9_000_000;
    stats.record(&warm);
    stats.record(&warm);
    stats.record(&record(0, Outcome::Ok));
    let function = &stats.functions()[0];
    assert_eq!(function.counts.warmup, 2);
    assert_eq!(function.counts.warmup_failures, 2);
    assert_eq!(function.counts.measured, 1);
    assert_eq!(function.counts.timeout, 0);
    assert_eq!(function.response_time.len(), 1);
    assert_eq!(function.response_time.max(), function.response_time.highest_equivalent(120_000));
    assert_eq!(function.send_lag.len(), 1);
    assert_eq!(stats.overall().counts.warmup, 2);
}

#[test]
fn counts_by_outcome_and_cold_start() {
    let mut stats = RunStats::new(&names());
    let mut cold = record(2, Outcome::Ok);
    cold.cold_start = Some(true);
    stats.record(&cold);
    stats.record(&record(2, Outcome::Timeout));
    stats.record(&record(1, Outcome::ConnectionFailed("x".into())));
    stats.record(&record(1, Outcome::Status(502, "bad".into())));
    let overall = &stats.overall().counts;
    assert_eq!((overall.measured, overall.ok, overall.cold_starts), (4, 1, 1));
    assert_eq!((overall.timeout, overall.connection_failed, overall.status_error), (1, 1, 1));
    assert_eq!(overall.failures(), 3);
    assert_eq!(stats.functions()[1].counts.failures(), 2);
}

#[test]
fn summary_json_shape() {
    let mut stats = RunStats::new(&names());
    for _ in 0..10 {
        stats.record(&record(0, Outcome::Ok));
    }
    let mut late = record(1, Outcome::Ok);
    late.sent_unix_us = late.intended_unix_us + 5_000;
    stats.record(&late);
    let inputs = SummaryInputs {
        measured_duration_s: 2.0,
        run_duration_s: 3.0,
        scheduled_per_function: vec![10, 2, 0],
        send_lag_threshold_us: 100,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    write_summary(&path, &stats, &inputs).unwrap();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["sendLagThresholdUs"], 100);
    assert_eq!(json["runDurationS"], 3.0);
    assert_eq!(json["measuredDurationS"], 2.0);
    let overall = &json["overall"];
    assert!(overall.get("name").is_none());
    assert_eq!(overall["counts"]["measured"], 11);
    assert_eq!(overall["counts"]["ok"], 11);
    assert_eq!(overall["failures"], 0);
    assert_eq!(overall["requestedRatePerS"], 6.0);
    assert_eq!(overall["achievedRatePerS"], 5.5);
    for key in ["count", "p50", "p90", "p99", "p999", "max"] {
        assert!(overall["responseTimeUs"][key].is_u64(), "{key}");
        assert!(overall["schedulingLatencyUs"][key].is_u64(), "{key}");
        assert!(overall["sendLagUs"][key].is_u64(), "{key}");
    }
    assert!(overall["maxSendLagUs"].as_u64().unwrap() >= 5_000);
    let functions = json["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 3);
    assert_eq!(functions[0]["name"], "f-aaaa");
    assert_eq!(functions[0]["trustworthy"], true);
    assert_eq!(functions[1]["trustworthy"], false);
    assert_eq!(functions[1]["requestedRatePerS"], 1.0);
    assert!(functions[2]["responseTimeUs"].is_null());
    assert_eq!(functions[2]["trustworthy"], true);
    // 1 of 11 send lags is 5 ms: p99 of the overall histogram is above 100 µs.
    assert_eq!(json["trustworthy"], false);
    assert_eq!(overall["trustworthy"], false);
    let unscheduled = summarize(&stats, &SummaryInputs { scheduled_per_function: vec![], ..inputs });
    assert!(unscheduled.overall.requested_rate_per_s.is_none());
}

#[test]
fn checksum_is_stable_and_sensitive() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("invocations.csv", "HashOwner,HashApp,HashFunction,Trigger,1\n");
    write("durations.csv", "d\n");
    write("memory.csv", "m\n");
    let first = trace_checksum(dir.path()).unwrap();
    assert_eq!(first.len(), 16);
    assert_eq!(first, trace_checksum(dir.path()).unwrap());
    // Moving a byte from one file to the next changes the checksum.
    write("durations.csv", "d");
    write("memory.csv", "\nm\n");
    assert_ne!(first, trace_checksum(dir.path()).unwrap());
    std::fs::remove_file(dir.path().join("memory.csv")).unwrap();
    let error = trace_checksum(dir.path()).unwrap_err();
    assert!(error.to_string().contains("memory.csv"), "{error}");
}

#[test]
fn checksum_of_empty_files_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["invocations.csv", "durations.csv", "memory.csv"] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let expected = trace_checksum(dir.path()).unwrap();
    // Recompute by hand: FNV-1a-64 over name + 8-byte length for each file.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in ["invocations.csv", "durations.csv", "memory.csv"] {
        for byte in name.bytes().chain(0u64.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!(expected, format!("{hash:016x}"));
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    let time = UNIX_EPOCH + Duration::from_micros(951_827_696_123_456); // 2000-02-29T12:34:56.123456Z
    assert_eq!(format_rfc3339(time), "2000-02-29T12:34:56.123456Z");
    assert_eq!(format_rfc3339(UNIX_EPOCH + Duration::from_secs(1_798_761_599)), "2026-12-31T23:59:59.000000Z");
}

#[test]
fn manifest_has_the_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.json");
    let inputs = ManifestInputs {
        config: serde_json::json!({"rate": 5}),
        seed: 42,
        trace_checksum: Some("0123456789abcdef".into()),
        started: UNIX_EPOCH + Duration::from_secs(10),
        ended: UNIX_EPOCH + Duration::from_secs(70),
        events: vec![Event { kind: Some(EventKind::Kill), ..Event::default() }],
    };
    write_manifest(&path, &inputs).unwrap();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["seed"], 42);
    assert_eq!(json["traceChecksum"], "0123456789abcdef");
    assert_eq!(json["config"]["rate"], 5);
    assert_eq!(json["startedAt"], "1970-01-01T00:00:10.000000Z");
    assert_eq!(json["endedUnixUs"], 70_000_000);
    assert_eq!(json["events"][0]["kind"], "kill");
    assert_eq!(json["loader"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["loader"]["gitCommit"].as_str().is_some_and(|commit| !commit.is_empty()));
    assert!(json["host"]["nproc"].as_u64().unwrap() >= 1);
    assert!(json["host"]["hostname"].is_string() && json["host"]["kernel"].is_string());
}

#[test]
fn run_stats_memory_is_bounded_by_functions() {
    let mut stats = RunStats::new(&names());
    let mut r = record(0, Outcome::Ok);
    let mut slots_after_warmup = 0;
    for i in 0..1_000_000u64 {
        r.function = (i % 3) as u32;
        r.response_time_us = 1_000 + (i * 7919) % 10_000_000;
        r.actual_duration_us = Some(500 + (i * 104_729) % 1_000_000);
        r.sent_unix_us = r.intended_unix_us + (i * 31) % 50_000;
        stats.record(&r);
        if i == 100_000 {
            slots_after_warmup = stats.histogram_slots();
        }
    }
    assert_eq!(stats.histogram_count(), 3 * (3 + 1));
    assert_eq!(stats.functions().len(), 3);
    assert_eq!(stats.overall().counts.measured, 1_000_000);
    // The histograms stop growing once they cover the value range, whatever the invocation count.
    assert_eq!(stats.histogram_slots(), slots_after_warmup);
    // And an absurd value is capped, so each histogram stays within the 1-hour bound.
    r.response_time_us = u64::MAX / 2;
    stats.record(&r);
    // Per function 2 significant digits (at most about 27 KB per histogram), overall 3.
    let bound =
        |digits| hdrhistogram::Histogram::<u64>::new_with_max(MAX_RECORDED_US, digits).unwrap().distinct_values();
    assert!(stats.functions().iter().all(|f| f.response_time.distinct_values() <= bound(2)));
    assert!(bound(2) * 8 < 28_000, "{}", bound(2));
    assert!(stats.overall().response_time.distinct_values() <= bound(3));
    assert_eq!(stats.overall().response_time.max(), stats.overall().response_time.highest_equivalent(MAX_RECORDED_US));
}

#[test]
fn unknown_function_index_extends_run_stats() {
    let mut stats = RunStats::new(&names());
    stats.record(&record(4, Outcome::Ok));
    assert_eq!(stats.names()[3..], ["function-3".to_string(), "function-4".to_string()]);
    assert_eq!(stats.histogram_count(), 3 * 6);
}
