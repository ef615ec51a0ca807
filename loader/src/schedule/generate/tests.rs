use super::*;
use crate::schedule::{IatDistribution, write_schedule};
use crate::trace::{DurationStats, MemoryStats, TraceFunction};

fn function(tag: &str, counts: Vec<u32>) -> TraceFunction {
    TraceFunction {
        name: format!("trace-func-{tag}"),
        hash_owner: format!("owner-{tag}"),
        hash_app: format!("app-{tag}"),
        hash_function: format!("fn-{tag}"),
        trigger: "http".into(),
        invocations_per_minute: counts,
        duration: DurationStats {
            average: 150.0,
            count: 1000,
            minimum: 1.0,
            maximum: 3000.0,
            percentiles: [1.0, 10.0, 80.0, 150.0, 300.0, 2000.0, 3000.0],
        },
        memory: MemoryStats {
            sample_count: 100,
            average: 170.0,
            percentiles: [100.0, 120.0, 150.0, 170.0, 200.0, 250.0, 300.0, 400.0],
        },
    }
}

/// Three functions over 60 minutes with varied counts.
fn trace() -> Trace {
    Trace {
        functions: vec![
            function("a", (0..60).map(|m| (m % 7) * 3).collect()),
            function("b", (0..60).map(|m| if m % 2 == 0 { 20 } else { 0 }).collect()),
            function("c", (0..60).map(|m| 1 + m / 10).collect()),
        ],
    }
}

fn csv(iter: ScheduleIter<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_schedule(iter, &mut out).unwrap();
    out
}

fn config(seed: u64) -> ScheduleConfig {
    ScheduleConfig { seed, ..Default::default() }
}

#[test]
fn yields_every_invocation_in_time_order() {
    let t = trace();
    let it = schedule(&t, &config(1), 5).unwrap();
    let expected: u64 = t.functions.iter().flat_map(|f| &f.invocations_per_minute).map(|&c| u64::from(c)).sum();
    assert_eq!(it.remaining(), expected);
    assert_eq!(it.size_hint(), (expected as usize, Some(expected as usize)));
    assert_eq!(it.run_duration_us(), 60 * MINUTE_US);
    let all: Vec<Invocation> = it.collect();
    assert_eq!(all.len() as u64, expected);
    assert!(all.windows(2).all(|w| w[0].intended_offset_us <= w[1].intended_offset_us));
    for inv in &all {
        assert_eq!(inv.intended_offset_us / MINUTE_US, u64::from(inv.minute), "{inv:?}");
        assert_eq!(inv.phase, if inv.minute < 5 { Phase::Warmup } else { Phase::Measured });
        assert!((1..=3000).contains(&inv.runtime_ms));
        assert!((100..=400).contains(&inv.memory_mib));
    }
    // Each function's minute has indices 0..n in time order.
    for (fi, f) in t.functions.iter().enumerate() {
        for (m, &n) in f.invocations_per_minute.iter().enumerate() {
            let mine: Vec<&Invocation> =
                all.iter().filter(|i| i.function == fi as u32 && i.minute == m as u32).collect();
            assert_eq!(mine.len(), n as usize);
            assert!(mine.iter().enumerate().all(|(k, i)| i.index_in_minute == k as u32));
        }
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let t = trace();
    for iat in [IatDistribution::Exponential, IatDistribution::Uniform, IatDistribution::Equidistant] {
        let c = ScheduleConfig { iat, ..config(9) };
        let a = csv(schedule(&t, &c, 2).unwrap());
        let b = csv(schedule(&t.clone(), &c.clone(), 2).unwrap());
        assert_eq!(a, b);
        let other = csv(schedule(&t, &ScheduleConfig { seed: 10, ..c }, 2).unwrap());
        assert_ne!(a, other);
    }
}

/// A function's invocations, without the function index (which depends on its position in the trace).
fn of_function(all: &[Invocation], function: u32) -> Vec<(u32, u32, u64, u32, u32)> {
    all.iter()
        .filter(|i| i.function == function)
        .map(|i| (i.minute, i.index_in_minute, i.intended_offset_us, i.runtime_ms, i.memory_mib))
        .collect()
}

#[test]
fn removing_or_reordering_functions_leaves_the_others_unchanged() {
    let full = trace();
    let all: Vec<Invocation> = schedule(&full, &config(3), 0).unwrap().collect();
    // Remove "a": "b" and "c" move to indices 0 and 1 but keep their invocations.
    let without_a = Trace { functions: full.functions[1..].to_vec() };
    let rest: Vec<Invocation> = schedule(&without_a, &config(3), 0).unwrap().collect();
    assert_eq!(of_function(&all, 1), of_function(&rest, 0));
    assert_eq!(of_function(&all, 2), of_function(&rest, 1));
    // Reversed order, plus an extra function.
    let mut functions: Vec<TraceFunction> = full.functions.iter().rev().cloned().collect();
    functions.insert(1, function("new", vec![50; 60]));
    let shuffled: Vec<Invocation> = schedule(&Trace { functions }, &config(3), 0).unwrap().collect();
    assert_eq!(of_function(&all, 0), of_function(&shuffled, 3));
    assert_eq!(of_function(&all, 1), of_function(&shuffled, 2));
    assert_eq!(of_function(&all, 2), of_function(&shuffled, 0));
    assert!(!of_function(&all, 0).is_empty());
}

#[test]
fn a_slice_gives_the_same_minutes_as_the_full_run() {
    let t = trace();
    let full: Vec<Invocation> = schedule(&t, &config(4), 0).unwrap().collect();
    let shift = 30 * MINUTE_US;
    let expected: Vec<Invocation> = full
        .iter()
        .filter(|i| (30..40).contains(&i.minute))
        .map(|i| Invocation { intended_offset_us: i.intended_offset_us - shift, ..*i })
        .collect();
    // Window over the full trace.
    let window = MinuteWindow { origin: 0, start: 30, len: Some(10) };
    let windowed: Vec<Invocation> = schedule_window(&t, &config(4), 0, window).unwrap().collect();
    assert_eq!(windowed, expected);
    // A trace already sliced to start at minute 30, told its origin.
    let sliced = Trace {
        functions: t
            .functions
            .iter()
            .map(|f| TraceFunction { invocations_per_minute: f.invocations_per_minute[30..40].to_vec(), ..f.clone() })
            .collect(),
    };
    let window = MinuteWindow { origin: 30, start: 0, len: None };
    let from_slice: Vec<Invocation> = schedule_window(&sliced, &config(4), 0, window).unwrap().collect();
    assert_eq!(from_slice, expected);
}

#[test]
fn compression_scales_send_times() {
    let t = trace();
    let c1 = config(5);
    let c60 = ScheduleConfig { compression: 60.0, ..config(5) };
    let real: Vec<Invocation> = schedule(&t, &c1, 0).unwrap().collect();
    let it = schedule(&t, &c60, 0).unwrap();
    assert_eq!(it.run_duration_us(), 60 * 1_000_000);
    let fast: Vec<Invocation> = it.collect();
    assert_eq!(real.len(), fast.len());
    for (r, f) in real.iter().zip(&fast) {
        assert_eq!(Invocation { intended_offset_us: 0, ..*r }, Invocation { intended_offset_us: 0, ..*f });
        assert_eq!(f.intended_offset_us, r.intended_offset_us / 60, "{r:?} {f:?}");
        // One trace minute per real second.
        assert_eq!(f.intended_offset_us / 1_000_000, u64::from(f.minute));
    }
}

#[test]
fn holds_at_most_one_minute() {
    let functions = (0..5).map(|k| function(&k.to_string(), (0..500).map(|m| 10 + (m * k) % 40).collect())).collect();
    let t = Trace { functions };
    let busiest = (0..500)
        .map(|m| t.functions.iter().map(|f| f.invocations_per_minute[m] as usize).sum::<usize>())
        .max()
        .unwrap();
    let total: u64 = t.functions.iter().flat_map(|f| &f.invocations_per_minute).map(|&c| u64::from(c)).sum();
    let mut it = schedule(&t, &config(6), 0).unwrap();
    let mut seen = 0u64;
    let mut max_buffered = 0;
    while it.next().is_some() {
        seen += 1;
        // Whatever is buffered belongs to the current minute only.
        max_buffered = max_buffered.max(it.buffered() + 1);
        assert!(it.buffered() < busiest);
        assert!(it.buffer_capacity() <= 2 * busiest, "capacity {}", it.buffer_capacity());
        assert_eq!(it.remaining(), total - seen);
    }
    assert_eq!(seen, total);
    assert!(max_buffered <= busiest);
    assert!(max_buffered > 0);
}

#[test]
fn empty_minutes_and_empty_traces() {
    let t = Trace { functions: vec![function("x", vec![0, 0, 3, 0, 0])] };
    let all: Vec<Invocation> = schedule(&t, &config(1), 0).unwrap().collect();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|i| i.minute == 2));
    assert_eq!(schedule(&Trace::default(), &config(1), 0).unwrap().count(), 0);
    // Functions with shorter count vectors contribute nothing in the missing minutes.
    let t = Trace { functions: vec![function("x", vec![1]), function("y", vec![0, 0, 2])] };
    assert_eq!(schedule(&t, &config(1), 0).unwrap().count(), 3);
}

#[test]
fn errors_name_the_problem() {
    let t = trace();
    let bad = ScheduleConfig { compression: 0.0, ..config(1) };
    assert!(matches!(schedule(&t, &bad, 0), Err(ScheduleError::Config(_))));
    let e = schedule(&t, &config(1), 60).unwrap_err();
    assert_eq!(e, ScheduleError::WarmupTooLong { warmup: 60, minutes: 60 });
    assert!(e.to_string().contains("`warmup_minutes`"));
    let e = schedule_window(&t, &config(1), 0, MinuteWindow { start: 60, ..Default::default() }).unwrap_err();
    assert_eq!(e, ScheduleError::WindowStart { start: 60, minutes: 60 });
    let e = schedule_window(&t, &config(1), 0, MinuteWindow { origin: u32::MAX, ..Default::default() }).unwrap_err();
    assert!(matches!(e, ScheduleError::WindowOverflow { .. }));
    // A window longer than the trace is cut to the trace.
    let w = MinuteWindow { start: 50, len: Some(100), ..Default::default() };
    assert!(schedule_window(&t, &config(1), 0, w).unwrap().all(|i| (50..60).contains(&i.minute)));
}

#[test]
fn golden_rows_pin_the_derivation() {
    // Pins seed derivation, ChaCha8 streams, Exp1 sampling and interpolation: if a dependency upgrade or a code
    // change alters any of them, schedules stop being reproducible across versions and this test says so.
    let t = Trace { functions: vec![function("a", vec![3, 1]), function("b", vec![2, 0])] };
    let out = String::from_utf8(csv(schedule(&t, &config(42), 1).unwrap())).unwrap();
    assert_eq!(out, GOLDEN, "{out}");
}

const GOLDEN: &str = "\
phase,function,minute,index,intendedOffsetUs,runtimeMs,memoryMib
1,0,0,0,4307498,1827,166
1,1,0,0,21640528,195,224
1,0,0,1,37023846,51,199
1,1,0,1,50155322,86,165
1,0,0,2,58839503,60,227
2,0,1,0,80579050,205,193
";
