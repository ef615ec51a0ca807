//! The wire contract of the workload function: parameter names, limits and the JSON reply.
//!
//! The names follow the vHive/In-Vitro loader and Dirigent's workload function, so that their loaders can drive this
//! function and ours can drive theirs.

use serde::{Deserialize, Serialize};

/// Parameter (header or query) selecting the work: [`WORKLOAD_TRACE`] or [`WORKLOAD_EMPTY`].
pub const WORKLOAD: &str = "workload";
/// Parameter naming the function; echoed in the reply.
pub const FUNCTION: &str = "function";
/// Parameter with the requested CPU time in milliseconds.
pub const REQUESTED_CPU: &str = "requested_cpu";
/// Parameter with the requested memory in MiB.
pub const REQUESTED_MEMORY: &str = "requested_memory";
/// Parameter with the loader's iteration multiplier; echoed only (the spin is timed against the clock).
pub const MULTIPLIER: &str = "multiplier";

/// Workload that spins the CPU and holds memory as requested (the default).
pub const WORKLOAD_TRACE: &str = "trace";
/// Workload that does nothing and replies at once.
pub const WORKLOAD_EMPTY: &str = "empty";

/// Path of the readiness probe; every other path is an invocation.
pub const HEALTH_PATH: &str = "/health";

/// `Status` of a completed `trace` invocation.
pub const STATUS_OK: &str = "OK";
/// `Status` of a completed `empty` invocation (as Dirigent's workload function says it).
pub const STATUS_OK_EMPTY: &str = "OK - EMPTY";

/// Largest accepted `requested_cpu`: 15 minutes, the longest function run AWS Lambda allows.
pub const MAX_CPU_MS: u64 = 15 * 60 * 1000;
/// Largest accepted `requested_memory`: 10 GiB, the largest function memory AWS Lambda allows.
pub const MAX_MEMORY_MIB: u64 = 10 * 1024;

/// The JSON body of a successful HTTP invocation.
///
/// The first four fields are Dirigent's workload reply; the others default when absent so that replies of Dirigent's
/// own function parse too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionReply {
    /// [`STATUS_OK`] or [`STATUS_OK_EMPTY`]; see [`FunctionReply::is_ok`].
    pub status: String,
    /// The `function` parameter, echoed (empty if none was given).
    pub function: String,
    /// Hostname of the machine (or sandbox) that ran the invocation.
    pub machine_name: String,
    /// Measured duration of the work (allocation plus spin) in microseconds; 0 for `empty`.
    pub execution_time: u64,
    /// The `requested_cpu` parameter in milliseconds.
    #[serde(default)]
    pub requested_cpu_ms: u64,
    /// The `requested_memory` parameter in MiB.
    #[serde(default)]
    pub requested_memory_mib: u64,
    /// Memory held (every page written) during the work, in KiB.
    #[serde(default)]
    pub memory_usage_kb: u64,
    /// The `multiplier` parameter, echoed.
    #[serde(default)]
    pub multiplier: u64,
    /// True only for the first invocation this function process served.
    #[serde(default)]
    pub cold_start: bool,
}

impl FunctionReply {
    /// Whether the status reports success (`OK`, `OK - EMPTY`, or another `OK - ...` variant).
    pub fn is_ok(&self) -> bool {
        self.status == STATUS_OK || self.status.starts_with("OK - ")
    }
}

/// The JSON body of a failed HTTP invocation (400 for bad parameters, 500 when the work could not run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, naming the parameter and value at fault.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_uses_dirigent_field_names() {
        let reply = FunctionReply {
            status: STATUS_OK.into(),
            function: "f".into(),
            machine_name: "m".into(),
            execution_time: 7,
            requested_cpu_ms: 1,
            requested_memory_mib: 2,
            memory_usage_kb: 2048,
            multiplier: 3,
            cold_start: true,
        };
        let json = serde_json::to_value(&reply).unwrap();
        for key in [
            "Status",
            "Function",
            "MachineName",
            "ExecutionTime",
            "RequestedCpuMs",
            "RequestedMemoryMib",
            "MemoryUsageKb",
            "Multiplier",
            "ColdStart",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert_eq!(serde_json::from_value::<FunctionReply>(json).unwrap(), reply);
    }

    #[test]
    fn dirigent_reply_parses() {
        let body = r#"{"Status":"OK - EMPTY","Function":"f","MachineName":"m","ExecutionTime":0}"#;
        let reply: FunctionReply = serde_json::from_str(body).unwrap();
        assert!(reply.is_ok());
        assert!(!reply.cold_start);
        assert_eq!(reply.memory_usage_kb, 0);
    }

    #[test]
    fn failure_status_is_not_ok() {
        let body = r#"{"Status":"FAILURE - mem_alloc","Function":"f","MachineName":"m","ExecutionTime":0}"#;
        assert!(!serde_json::from_str::<FunctionReply>(body).unwrap().is_ok());
    }
}
