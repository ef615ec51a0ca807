//! What a trace holds once parsed: functions with their per-minute invocation counts, duration and memory
//! percentiles. Shared by parsing (which builds it) and schedule generation (which reads it).

/// Minutes in the trace's day.
pub const MINUTES_PER_DAY: usize = 1440;

/// The duration percentiles the trace gives, in order: 0, 1, 25, 50, 75, 99, 100.
pub const DURATION_PERCENTILES: [f64; 7] = [0.0, 1.0, 25.0, 50.0, 75.0, 99.0, 100.0];

/// The memory percentiles the trace gives, in order: 1, 5, 25, 50, 75, 95, 99, 100.
pub const MEMORY_PERCENTILES: [f64; 8] = [1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 100.0];

/// A function's execution-time statistics (`durations.csv`), milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationStats {
    /// Mean execution time.
    pub average: f64,
    /// Executions the statistics summarise.
    pub count: u64,
    /// Shortest execution.
    pub minimum: f64,
    /// Longest execution.
    pub maximum: f64,
    /// Values at [`DURATION_PERCENTILES`].
    pub percentiles: [f64; 7],
}

/// A function's memory statistics (`memory.csv`), MB.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStats {
    /// Samples the statistics summarise.
    pub sample_count: u64,
    /// Mean allocated memory.
    pub average: f64,
    /// Values at [`MEMORY_PERCENTILES`].
    pub percentiles: [f64; 8],
}

/// One function of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFunction {
    /// Stable name derived from the function's hashes (the same in every run and on every platform).
    pub name: String,
    /// `HashOwner`.
    pub hash_owner: String,
    /// `HashApp`.
    pub hash_app: String,
    /// `HashFunction`.
    pub hash_function: String,
    /// `Trigger` (e.g. `http`, `unknown`).
    pub trigger: String,
    /// Invocations in each minute of the day ([`MINUTES_PER_DAY`] entries).
    pub invocations_per_minute: Vec<u32>,
    /// Execution time statistics.
    pub duration: DurationStats,
    /// Memory statistics.
    pub memory: MemoryStats,
}

/// A parsed trace: its functions, in the order of `invocations.csv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// The functions.
    pub functions: Vec<TraceFunction>,
}
