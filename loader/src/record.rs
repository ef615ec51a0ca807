//! What the loader records for every invocation: the contract between the driver (which fills it) and the
//! output writers (which stream it to `invocations.csv` and fold it into histograms).

use crate::schedule::Phase;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with success.
    Ok,
    /// No connection could be made, or it broke before a response (vHive's `connectionTimeout`).
    ConnectionFailed(String),
    /// The request exceeded its per-request timeout (vHive's `functionTimeout`).
    Timeout,
    /// The target answered with a non-success HTTP status (or gRPC code), with its message.
    Status(u16, String),
}

impl Outcome {
    /// Whether the invocation succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// A short label for the CSV's `outcome` column: `ok`, `connection`, `timeout` or `http-<code>`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::ConnectionFailed(_) => "connection".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Status(code, _) => format!("http-{code}"),
        }
    }
}

/// The platform's own breakdown of one request, where it reveals one: the bundled orchestrator's `Server-Timing`
/// (queue, coldstart, create, proxy), parsed into the contract's type. The name stays because the run-folder writers
/// and the analysis' tests name it.
pub use contracts::server_timing::ServerTiming as PlatformBreakdown;

/// One invocation, as measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    /// Warm-up or measured.
    pub phase: Phase,
    /// Index of the function in the (sliced) trace.
    pub function: u32,
    /// Trace minute (of the run) and index within it: `invocationID` is `min<minute>.inv<index>`.
    pub minute: u32,
    /// Index within the minute.
    pub index_in_minute: u32,
    /// When the schedule meant to send it, Unix µs.
    pub intended_unix_us: u64,
    /// When it was actually sent, Unix µs (vHive's `startTime`).
    pub sent_unix_us: u64,
    /// Requested execution time, µs.
    pub requested_duration_us: u64,
    /// Requested memory, MiB.
    pub requested_memory_mib: u32,
    /// From the intended send time to the last byte of the response, µs (0 when it failed before any).
    pub response_time_us: u64,
    /// Execution time the function itself reported, µs.
    pub actual_duration_us: Option<u64>,
    /// Memory the function reported using, MiB.
    pub actual_memory_mib: Option<u32>,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether it met a cold start, where the platform tells.
    pub cold_start: Option<bool>,
    /// The platform's breakdown, where it gives one.
    pub breakdown: PlatformBreakdown,
    /// Data planes that refused this invocation's connection before another one took it (the dirigent target's
    /// failover; 0 elsewhere).
    pub failovers: u32,
}

impl InvocationRecord {
    /// Send lag: actual send time minus intended send time, µs (never negative).
    pub fn send_lag_us(&self) -> u64 {
        self.sent_unix_us.saturating_sub(self.intended_unix_us)
    }

    /// Scheduling latency: response time minus the function's own execution time, µs (the Dirigent paper's
    /// definition); `None` when the function reported no execution time.
    pub fn scheduling_latency_us(&self) -> Option<u64> {
        self.actual_duration_us.map(|actual| self.response_time_us.saturating_sub(actual))
    }
}
