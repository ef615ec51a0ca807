//! What a run sends, resolved from its config: the functions (names and deployments), the schedule, and what the
//! summary needs to know about it. Trace replay and the synthetic loads meet here, so the driver, the output and
//! `loader schedule` treat them alike.

use std::sync::Arc;

use crate::config::{ColdStartWorkload, RpsWorkload, RunConfig, TargetConfig, Workload};
use crate::schedule::{Arrivals, ConstantRate, Invocation, MinuteWindow, schedule_window_shared};
use crate::target::FunctionDeployment;
use crate::trace::{FunctionSelection, Slice, Trace, read_trace};

/// A workload ready to replay.
pub struct PreparedWorkload {
    /// Function names, indexed by [`Invocation::function`].
    pub names: Arc<Vec<String>>,
    /// What to deploy on the target, in the same order.
    pub deployments: Vec<FunctionDeployment>,
    /// The invocations in time order, generated lazily.
    pub schedule: Box<dyn Iterator<Item = Invocation> + Send>,
    /// How many invocations the schedule holds, warm-up included.
    pub total: u64,
    /// Length of the measured phase, seconds.
    pub measured_duration_s: f64,
    /// Length of the whole schedule, warm-up included, seconds.
    pub run_duration_s: f64,
    /// Measured invocations per function the schedule asks for.
    pub scheduled_per_function: Vec<u64>,
    /// Checksum of the trace files, for a trace replay.
    pub trace_checksum: Option<String>,
}

impl std::fmt::Debug for PreparedWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedWorkload")
            .field("functions", &self.names.len())
            .field("total", &self.total)
            .field("measured_duration_s", &self.measured_duration_s)
            .finish_non_exhaustive()
    }
}

/// Why a workload cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// "invalid trace: {0}".
    #[error("invalid trace: {0}")]
    Trace(#[from] crate::trace::TraceError),
    /// "invalid slice: {0}".
    #[error("invalid slice: {0}")]
    Slice(#[from] crate::trace::SliceError),
    /// The schedule cannot be generated.
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// "cannot checksum the trace: {0}".
    #[error("cannot checksum the trace: {0}")]
    Checksum(#[source] std::io::Error),
}

/// Resolves `config`'s workload; reads and checks the trace for a replay. Sends and writes nothing.
pub fn prepare(config: &RunConfig) -> Result<PreparedWorkload, WorkloadError> {
    match &config.workload {
        Workload::Trace => prepare_trace(config),
        Workload::Rps(rps) => Ok(prepare_constant(&rps_schedule(rps, config.schedule.seed), "rps", scale_of(config))),
        Workload::ColdStarts(cold) => Ok(prepare_constant(&cold_start_schedule(cold), "cold", (0, 1))),
    }
}

/// The slice a config selects.
pub fn slice_of(config: &RunConfig) -> Slice {
    let functions = match (config.slice.functions, config.slice.sample_seed) {
        (None, _) => FunctionSelection::All,
        (Some(count), None) => FunctionSelection::First(count),
        (Some(count), Some(seed)) => FunctionSelection::Sample { count, seed },
    };
    Slice { start_minute: config.slice.start_minute, minutes: config.slice.minutes, functions }
}

fn scale_of(config: &RunConfig) -> (u32, u32) {
    match config.target {
        TargetConfig::Dirigent { min_scale, max_scale, .. } => (min_scale, max_scale),
        TargetConfig::Knative(ref knative) => (knative.min_scale, knative.max_scale),
        TargetConfig::Http { .. } | TargetConfig::Grpc { .. } | TargetConfig::Lambda(_) => (0, 0),
    }
}

fn prepare_trace(config: &RunConfig) -> Result<PreparedWorkload, WorkloadError> {
    let slice = slice_of(config);
    let trace = Arc::new(read_trace(&config.trace)?.slice(&slice)?);
    // The slice already checked start_minute against the trace's 1440 minutes.
    let origin = u32::try_from(slice.start_minute).unwrap_or(u32::MAX);
    let window = MinuteWindow { origin, start: 0, len: None };
    let schedule = schedule_window_shared(Arc::clone(&trace), &config.schedule, config.warmup_minutes, window)?;
    let warmup = config.warmup_minutes as usize;
    let measured_minutes = config.slice.minutes.saturating_sub(warmup);
    Ok(PreparedWorkload {
        names: Arc::new(trace.functions.iter().map(|f| f.name.clone()).collect()),
        deployments: trace_deployments(&trace, scale_of(config)),
        total: schedule.remaining(),
        run_duration_s: schedule.run_duration_us() as f64 / 1e6,
        schedule: Box::new(schedule),
        measured_duration_s: measured_minutes as f64 * 60.0 / config.schedule.compression,
        scheduled_per_function: trace
            .functions
            .iter()
            .map(|f| f.invocations_per_minute.iter().skip(warmup).map(|&n| u64::from(n)).sum())
            .collect(),
        trace_checksum: Some(crate::output::trace_checksum(&config.trace).map_err(WorkloadError::Checksum)?),
    })
}

fn trace_deployments(trace: &Trace, (min_scale, max_scale): (u32, u32)) -> Vec<FunctionDeployment> {
    trace
        .functions
        .iter()
        .map(|f| FunctionDeployment {
            name: f.name.clone(),
            requested_cpu_ms: f.duration.percentiles[3].round() as u32,
            requested_memory_mib: f.memory.percentiles[3].round() as u32,
            min_scale,
            max_scale,
            ..FunctionDeployment::default()
        })
        .collect()
}

/// The constant-RPS schedule of `rps`.
pub fn rps_schedule(rps: &RpsWorkload, seed: u64) -> ConstantRate {
    ConstantRate {
        rate_per_s: rps.rate,
        warmup: rps.warmup,
        duration: rps.duration,
        functions: rps.functions,
        arrivals: rps.arrivals,
        seed,
        runtime_ms: rps.runtime_ms,
        memory_mib: rps.memory_mib,
    }
}

/// The cold-start sweep's schedule: equidistant calls over `ceil(rate × cooldown)` functions, so each function is
/// called once per cooldown.
pub fn cold_start_schedule(cold: &ColdStartWorkload) -> ConstantRate {
    let functions = (cold.rate * cold.cooldown.as_secs_f64()).ceil().max(1.0) as u32;
    ConstantRate {
        rate_per_s: cold.rate,
        warmup: cold.warmup,
        duration: cold.duration,
        functions,
        arrivals: Arrivals::Equidistant,
        seed: 0,
        runtime_ms: cold.runtime_ms,
        memory_mib: cold.memory_mib,
    }
}

fn prepare_constant(schedule: &ConstantRate, prefix: &str, (min_scale, max_scale): (u32, u32)) -> PreparedWorkload {
    let counts = schedule.counts();
    let names: Vec<String> = (0..schedule.functions).map(|i| format!("{prefix}-{i}")).collect();
    let deployments = names
        .iter()
        .map(|name| FunctionDeployment {
            name: name.clone(),
            requested_cpu_ms: schedule.runtime_ms,
            requested_memory_mib: schedule.memory_mib,
            min_scale,
            max_scale,
            ..FunctionDeployment::default()
        })
        .collect();
    PreparedWorkload {
        names: Arc::new(names),
        deployments,
        schedule: Box::new(schedule.iter()),
        total: counts.total,
        measured_duration_s: schedule.duration.as_secs_f64(),
        run_duration_s: schedule.run_duration_us() as f64 / 1e6,
        scheduled_per_function: counts.measured_per_function,
        trace_checksum: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cold_starts_spread_over_rate_times_cooldown_functions_with_scale_one() {
        let cold = ColdStartWorkload {
            rate: 2.5,
            cooldown: Duration::from_secs(3),
            duration: Duration::from_secs(6),
            warmup: Duration::ZERO,
            runtime_ms: 5,
            memory_mib: 8,
        };
        let config = RunConfig { workload: Workload::ColdStarts(cold), ..RunConfig::default() };
        let w = prepare(&config).unwrap();
        assert_eq!(w.names.len(), 8);
        assert_eq!(w.names[7], "cold-7");
        assert!(w.deployments.iter().all(|d| (d.min_scale, d.max_scale) == (0, 1) && d.requested_cpu_ms == 5));
        assert_eq!(w.total, 15);
        assert_eq!(w.scheduled_per_function.iter().sum::<u64>(), 15);
        assert_eq!(w.trace_checksum, None);
        // Each function's calls are 8 / 2.5 = 3.2 s apart: at least the cooldown.
        let calls: Vec<_> = w.schedule.filter(|i| i.function == 0).map(|i| i.intended_offset_us).collect();
        assert_eq!(calls, vec![0, 3_200_000]);
    }

    #[test]
    fn rps_uses_the_target_scale_bounds_and_the_schedule_seed() {
        let rps = RpsWorkload {
            rate: 50.0,
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            functions: 2,
            arrivals: Arrivals::Exponential,
            runtime_ms: 1,
            memory_mib: 1,
        };
        let mut config = RunConfig { workload: Workload::Rps(rps), ..RunConfig::default() };
        config.target = TargetConfig::Dirigent {
            api: String::new(),
            proxy: String::new(),
            image: String::new(),
            min_scale: 1,
            max_scale: 3,
        };
        let a = prepare(&config).unwrap();
        assert!(a.deployments.iter().all(|d| (d.min_scale, d.max_scale) == (1, 3)));
        assert_eq!(a.measured_duration_s, 2.0);
        let first: Vec<_> = a.schedule.take(5).collect();
        config.schedule.seed += 1;
        let b: Vec<_> = prepare(&config).unwrap().schedule.take(5).collect();
        assert_ne!(first, b);
    }

    #[test]
    fn a_trace_replay_names_functions_by_hash_and_checksums_the_trace() {
        let trace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/azure-100");
        let mut config = RunConfig { trace, ..RunConfig::default() };
        config.slice.functions = Some(3);
        let w = prepare(&config).unwrap();
        assert_eq!(w.names.len(), 3);
        assert!(w.names.iter().all(|n| n.starts_with("f-")));
        assert!(w.trace_checksum.is_some());
        assert_eq!((w.measured_duration_s, w.run_duration_s), (120.0, 120.0));
        assert_eq!(w.total, w.schedule.count() as u64);
    }
}
