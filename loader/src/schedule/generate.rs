//! The schedule: invocations in global time order, generated one trace minute at a time.
//!
//! For each trace minute the iterator generates every function's arrivals for that minute (each from its own
//! `(function, minute)` stream, see [`super::seed`]), then per invocation in arrival order draws the runtime and
//! then the memory from the same stream, merges all functions and sorts by `(offset, function, index)`. Only that
//! one minute is held in memory; the run's length does not matter.

use serde::Serialize;

use super::config::{ScheduleConfig, ScheduleConfigError};
use super::iat::{MINUTE_US, minute_offsets};
use super::sample::{sample_duration_ms, sample_memory_mib};
use super::seed::{FunctionKey, function_key, minute_rng};
use crate::trace::Trace;

/// Whether an invocation belongs to the warm-up (excluded from analysis) or to the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Warm-up: sent, but excluded from analysis.
    Warmup,
    /// Measured.
    Measured,
}

impl Phase {
    /// The vHive loader's phase number: 1 for warm-up, 2 for measured.
    pub fn code(self) -> u8 {
        match self {
            Phase::Warmup => 1,
            Phase::Measured => 2,
        }
    }
}

/// One scheduled invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    /// Index of the function in [`Trace::functions`].
    pub function: u32,
    /// Trace-day minute the invocation comes from (absolute, also for a window that starts later).
    pub minute: u32,
    /// Position among this function's invocations in this minute, in time order (vHive's `min<m>.inv<k>`).
    pub index_in_minute: u32,
    /// Intended send time in µs from the run start, after compression.
    pub intended_offset_us: u64,
    /// Requested execution time, ms.
    pub runtime_ms: u32,
    /// Requested memory, MiB.
    pub memory_mib: u32,
    /// Warm-up or measured.
    pub phase: Phase,
}

impl Invocation {
    /// A measured invocation of function 0 sent at the run's start, asking for `runtime_ms` and `memory_mib`: what a
    /// target needs to be driven by hand (examples, tests) without a schedule.
    pub fn single(runtime_ms: u32, memory_mib: u32) -> Self {
        Invocation {
            function: 0,
            minute: 0,
            index_in_minute: 0,
            intended_offset_us: 0,
            runtime_ms,
            memory_mib,
            phase: Phase::Measured,
        }
    }
}

/// Which minutes of a trace to schedule.
///
/// `origin` is the trace-day minute of index 0 of the trace's `invocations_per_minute` (0 for a whole-day trace;
/// the first minute of the slice for a trace that was already sliced). Random streams are keyed by the trace-day
/// minute `origin + index`, so slicing before or here gives the same invocations for the same day minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteWindow {
    /// Trace-day minute of `invocations_per_minute[0]`.
    pub origin: u32,
    /// Index into `invocations_per_minute` of the first minute to schedule (the run starts there).
    pub start: u32,
    /// Minutes to schedule; `None` = to the end of the trace.
    pub len: Option<u32>,
}

/// Why a schedule cannot be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// "invalid schedule config: {0}".
    #[error("invalid schedule config: {0}")]
    Config(#[from] ScheduleConfigError),
    /// "window start minute {start} is not inside the trace's {minutes} minutes; choose a start below {minutes}".
    #[error("window start minute {start} is not inside the trace's {minutes} minutes; choose a start below {minutes}")]
    WindowStart {
        /// The requested start index.
        start: u32,
        /// Minutes in the trace.
        minutes: u32,
    },
    /// "window origin {origin} plus {minutes} trace minutes overflows the minute counter".
    #[error("window origin {origin} plus {minutes} trace minutes overflows the minute counter")]
    WindowOverflow {
        /// The requested origin.
        origin: u32,
        /// Minutes in the trace.
        minutes: u32,
    },
    /// "`warmup_minutes` ({warmup}) must be less than the {minutes} scheduled minutes, to leave a measured phase".
    #[error("`warmup_minutes` ({warmup}) must be less than the {minutes} scheduled minutes, to leave a measured phase")]
    WarmupTooLong {
        /// The requested warm-up minutes.
        warmup: u32,
        /// Minutes in the window.
        minutes: u32,
    },
    /// "the trace has {0} functions; at most 4294967295 are supported".
    #[error("the trace has {0} functions; at most 4294967295 are supported")]
    TooManyFunctions(usize),
}

/// Schedules the whole trace (every minute of `invocations_per_minute`, trace-day minute = index).
pub fn schedule<'a>(
    trace: &'a Trace,
    config: &ScheduleConfig,
    warmup_minutes: u32,
) -> Result<ScheduleIter<'a>, ScheduleError> {
    schedule_window(trace, config, warmup_minutes, MinuteWindow::default())
}

/// Schedules the minutes of `window`; the first `warmup_minutes` of them are [`Phase::Warmup`].
pub fn schedule_window<'a>(
    trace: &'a Trace,
    config: &ScheduleConfig,
    warmup_minutes: u32,
    window: MinuteWindow,
) -> Result<ScheduleIter<'a>, ScheduleError> {
    schedule_over(TraceRef::Borrowed(trace), config, warmup_minutes, window)
}

fn schedule_over<'a>(
    handle: TraceRef<'a>,
    config: &ScheduleConfig,
    warmup_minutes: u32,
    window: MinuteWindow,
) -> Result<ScheduleIter<'a>, ScheduleError> {
    let trace: &Trace = &handle;
    config.validate()?;
    if u32::try_from(trace.functions.len()).is_err() {
        return Err(ScheduleError::TooManyFunctions(trace.functions.len()));
    }
    let trace_minutes = trace.functions.iter().map(|f| f.invocations_per_minute.len()).max().unwrap_or(0);
    let trace_minutes = u32::try_from(trace_minutes).unwrap_or(u32::MAX);
    if window.origin.checked_add(trace_minutes).is_none() {
        return Err(ScheduleError::WindowOverflow { origin: window.origin, minutes: trace_minutes });
    }
    if window.start > trace_minutes || (window.start == trace_minutes && trace_minutes > 0) {
        return Err(ScheduleError::WindowStart { start: window.start, minutes: trace_minutes });
    }
    let available = trace_minutes - window.start;
    let minutes = window.len.map_or(available, |l| l.min(available));
    if warmup_minutes > 0 && warmup_minutes >= minutes {
        return Err(ScheduleError::WarmupTooLong { warmup: warmup_minutes, minutes });
    }
    let keys = trace.functions.iter().map(|f| function_key(config.seed, f)).collect();
    let remaining_total = (window.start..window.start + minutes)
        .map(|m| trace.functions.iter().map(|f| count_at(f, m) as u64).sum::<u64>())
        .sum();
    Ok(ScheduleIter {
        trace: handle,
        config: config.clone(),
        keys,
        origin: window.origin,
        start: window.start,
        end: window.start + minutes,
        next_minute: window.start,
        warmup_minutes,
        buffer: Vec::new(),
        pos: 0,
        remaining_total,
    })
}

fn count_at(f: &crate::trace::TraceFunction, index: u32) -> u32 {
    f.invocations_per_minute.get(index as usize).copied().unwrap_or(0)
}

/// [`schedule_window`] over a shared trace: the iterator owns its handle, so it can move to another thread.
pub fn schedule_window_shared(
    trace: std::sync::Arc<Trace>,
    config: &ScheduleConfig,
    warmup_minutes: u32,
    window: MinuteWindow,
) -> Result<ScheduleIter<'static>, ScheduleError> {
    schedule_over(TraceRef::Shared(trace), config, warmup_minutes, window)
}

/// The trace a schedule reads: borrowed, or shared with the caller.
#[derive(Debug)]
enum TraceRef<'a> {
    Borrowed(&'a Trace),
    Shared(std::sync::Arc<Trace>),
}

impl std::ops::Deref for TraceRef<'_> {
    type Target = Trace;

    fn deref(&self) -> &Trace {
        match self {
            TraceRef::Borrowed(trace) => trace,
            TraceRef::Shared(trace) => trace,
        }
    }
}

/// Iterator over a schedule's invocations in intended-send-time order; holds at most one trace minute.
#[derive(Debug)]
pub struct ScheduleIter<'a> {
    trace: TraceRef<'a>,
    config: ScheduleConfig,
    keys: Vec<FunctionKey>,
    origin: u32,
    start: u32,
    end: u32,
    next_minute: u32,
    warmup_minutes: u32,
    buffer: Vec<Invocation>,
    pos: usize,
    remaining_total: u64,
}

impl ScheduleIter<'_> {
    /// Invocations currently generated but not yet yielded (at most one trace minute's worth).
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.pos
    }

    /// Capacity of the internal minute buffer (bounded by the busiest minute, not by the run length).
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Invocations still to be yielded.
    pub fn remaining(&self) -> u64 {
        self.remaining_total
    }

    /// Total run length in µs after compression (the end of the last scheduled minute).
    pub fn run_duration_us(&self) -> u64 {
        self.compress(u64::from(self.end - self.start) * MINUTE_US)
    }

    fn compress(&self, trace_us: u64) -> u64 {
        (trace_us as f64 / self.config.compression) as u64
    }

    /// Generates the next minute that has any invocations into the buffer; false when the window is exhausted.
    fn fill(&mut self) -> bool {
        self.buffer.clear();
        self.pos = 0;
        while self.buffer.is_empty() && self.next_minute < self.end {
            let index = self.next_minute;
            self.next_minute += 1;
            self.generate_minute(index);
        }
        !self.buffer.is_empty()
    }

    fn generate_minute(&mut self, index: u32) {
        let trace_minute = self.origin + index;
        let relative = index - self.start;
        let phase = if relative < self.warmup_minutes { Phase::Warmup } else { Phase::Measured };
        let minute_start_us = u64::from(relative) * MINUTE_US;
        for (fi, f) in self.trace.functions.iter().enumerate() {
            let n = count_at(f, index);
            if n == 0 {
                continue;
            }
            let mut rng = minute_rng(&self.keys[fi], trace_minute);
            let offsets = minute_offsets(n, self.config.iat, self.config.shift_within_minute, &mut rng);
            for (k, off) in offsets.into_iter().enumerate() {
                let runtime_ms = sample_duration_ms(&f.duration, self.config.duration_bounds_ms, &mut rng);
                let memory_mib = sample_memory_mib(&f.memory, self.config.memory_bounds_mib, &mut rng);
                self.buffer.push(Invocation {
                    function: fi as u32,
                    minute: trace_minute,
                    index_in_minute: k as u32,
                    // Temporarily the uncompressed offset, so that sorting is exact; compressed below.
                    intended_offset_us: minute_start_us + off,
                    runtime_ms,
                    memory_mib,
                    phase,
                });
            }
        }
        self.buffer.sort_unstable_by_key(|i| (i.intended_offset_us, i.function, i.index_in_minute));
        let compression = self.config.compression;
        for inv in &mut self.buffer {
            inv.intended_offset_us = (inv.intended_offset_us as f64 / compression) as u64;
        }
    }
}

impl Iterator for ScheduleIter<'_> {
    type Item = Invocation;

    fn next(&mut self) -> Option<Invocation> {
        if self.pos >= self.buffer.len() && !self.fill() {
            return None;
        }
        let inv = self.buffer[self.pos];
        self.pos += 1;
        self.remaining_total = self.remaining_total.saturating_sub(1);
        Some(inv)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match usize::try_from(self.remaining_total) {
            Ok(n) => (n, Some(n)),
            Err(_) => (usize::MAX, None),
        }
    }
}

#[cfg(test)]
mod tests;
