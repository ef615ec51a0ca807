//! What a function sandbox receives and answers: parameter (header, query or JSON key) names, workloads, limits,
//! units and the JSON reply; the orchestrator's workload function serves it, the loader's targets send and read it.
//!
//! The names follow the vHive/In-Vitro loader and Dirigent's workload function, so that their loaders can drive this
//! function and ours can drive theirs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

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
        status_is_ok(&self.status)
    }
}

/// Whether a reply's `Status` reports success: [`STATUS_OK`] or an `OK - ...` variant such as [`STATUS_OK_EMPTY`].
pub fn status_is_ok(status: &str) -> bool {
    status == STATUS_OK || status.starts_with("OK - ")
}

/// The JSON body of a failed HTTP invocation (400 for bad parameters, 500 when the work could not run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, naming the parameter and value at fault.
    pub error: String,
}

/// The parameters of one invocation as a client sends them: as headers (or query pairs) over HTTP, as a JSON object
/// in a Lambda payload. The function also reads [`MULTIPLIER`], which the loader does not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameters<'a> {
    /// [`WORKLOAD_TRACE`] or [`WORKLOAD_EMPTY`].
    pub workload: &'a str,
    /// The function's name, echoed in the reply.
    pub function: &'a str,
    /// CPU time to spin, in milliseconds.
    pub requested_cpu_ms: u32,
    /// Memory to hold, in MiB.
    pub requested_memory_mib: u32,
}

impl<'a> Parameters<'a> {
    /// A `trace` invocation of `function` asking for `cpu_ms` of CPU while holding `memory_mib`.
    pub fn trace(function: &'a str, cpu_ms: u32, memory_mib: u32) -> Self {
        Parameters { workload: WORKLOAD_TRACE, function, requested_cpu_ms: cpu_ms, requested_memory_mib: memory_mib }
    }

    /// `(name, value)` pairs, as HTTP headers or query parameters carry them.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (WORKLOAD, self.workload.to_owned()),
            (FUNCTION, self.function.to_owned()),
            (REQUESTED_CPU, self.requested_cpu_ms.to_string()),
            (REQUESTED_MEMORY, self.requested_memory_mib.to_string()),
        ]
    }

    /// The JSON object a Lambda invocation payload carries (numbers as numbers).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert(WORKLOAD.into(), self.workload.into());
        object.insert(FUNCTION.into(), self.function.into());
        object.insert(REQUESTED_CPU.into(), self.requested_cpu_ms.into());
        object.insert(REQUESTED_MEMORY.into(), self.requested_memory_mib.into());
        serde_json::Value::Object(object)
    }
}

/// A [`FunctionReply`] as a client reads it from any platform: every field optional, because other platforms' functions
/// send fewer fields (or none), and a field of an unexpected type counts as absent rather than failing the reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceivedReply {
    /// `Status`, if present; see [`ReceivedReply::status_ok`].
    #[serde(default, deserialize_with = "lenient")]
    pub status: Option<String>,
    /// `ExecutionTime`: what the function measured, µs.
    #[serde(default, deserialize_with = "lenient")]
    pub execution_time: Option<u64>,
    /// `MemoryUsageKb`: memory the function held, KiB.
    #[serde(default, deserialize_with = "lenient")]
    pub memory_usage_kb: Option<u64>,
    /// `ColdStart`: whether the function says this was its process's first invocation.
    #[serde(default, deserialize_with = "lenient")]
    pub cold_start: Option<bool>,
}

impl ReceivedReply {
    /// Reads a reply body; one that is not a JSON object gives a reply with no fields.
    pub fn parse(body: &[u8]) -> Self {
        // Through a `Value` so that a repeated key keeps its last value instead of failing the whole reply.
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(object @ serde_json::Value::Object(_)) => Self::deserialize(object).unwrap_or_default(),
            _ => Self::default(),
        }
    }

    /// Whether `Status` (if any) reports success; a reply without one counts as successful.
    pub fn status_ok(&self) -> bool {
        self.status.as_deref().is_none_or(status_is_ok)
    }

    /// `MemoryUsageKb` in MiB, rounded up (saturating at `u32::MAX`).
    pub fn memory_mib(&self) -> Option<u32> {
        self.memory_usage_kb.map(|kb| u32::try_from(kb.div_ceil(1024)).unwrap_or(u32::MAX))
    }
}

/// Reads a field as `T`, or as absent when it has another type.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).ok())
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

    #[test]
    fn received_reply_reads_what_the_function_writes() {
        let reply = FunctionReply {
            status: STATUS_OK.into(),
            function: "f".into(),
            machine_name: "m".into(),
            execution_time: 25_000,
            requested_cpu_ms: 25,
            requested_memory_mib: 2,
            memory_usage_kb: 2049,
            multiplier: 0,
            cold_start: true,
        };
        let read = ReceivedReply::parse(&serde_json::to_vec(&reply).unwrap());
        let expected = ReceivedReply {
            status: Some(STATUS_OK.into()),
            execution_time: Some(25_000),
            memory_usage_kb: Some(2049),
            cold_start: Some(true),
        };
        assert_eq!(read, expected);
        assert_eq!(read.memory_mib(), Some(3));
        assert!(read.status_ok());
    }

    #[test]
    fn received_reply_tolerates_other_platforms() {
        let body = br#"{"Status":"OK","Function":"f","ExecutionTime":25000,"MemoryUsageKb":2049,"ColdStart":true}"#;
        let reply = ReceivedReply::parse(body);
        assert_eq!(reply.execution_time, Some(25_000));
        assert_eq!(reply.memory_mib(), Some(3));
        assert_eq!(reply.cold_start, Some(true));
        assert!(reply.status_ok());
        assert_eq!(ReceivedReply::parse(br#"{"MemoryUsageKb":0}"#).memory_mib(), Some(0));
        assert_eq!(ReceivedReply::parse(b"hello"), ReceivedReply::default());
        assert_eq!(ReceivedReply::parse(b"[1,2]"), ReceivedReply::default());
        assert_eq!(ReceivedReply::parse(br#"{"ExecutionTime":"x"}"#), ReceivedReply::default());
        assert!(ReceivedReply::parse(b"").status_ok());
        let mixed = ReceivedReply::parse(br#"{"Status":"OK","ExecutionTime":-1,"ColdStart":"yes","Extra":[1]}"#);
        assert_eq!(mixed, ReceivedReply { status: Some("OK".into()), ..ReceivedReply::default() });
        let repeated = ReceivedReply::parse(br#"{"ExecutionTime":1,"ExecutionTime":2}"#);
        assert_eq!(repeated.execution_time, Some(2));
        assert_eq!(ReceivedReply::parse(br#"{"MemoryUsageKb":18446744073709551615}"#).memory_mib(), Some(u32::MAX));
    }

    #[test]
    fn received_status() {
        assert!(ReceivedReply::parse(br#"{"Status":"OK - EMPTY"}"#).status_ok());
        assert!(!ReceivedReply::parse(br#"{"Status":"FAILED"}"#).status_ok());
        assert!(!ReceivedReply::parse(br#"{"Status":"OKAY"}"#).status_ok());
    }

    #[test]
    fn parameters_as_headers_and_json() {
        let parameters = Parameters::trace("fn-a", 25, 128);
        let pairs = parameters.pairs();
        assert_eq!(
            pairs.map(|(name, value)| format!("{name}={value}")),
            ["workload=trace", "function=fn-a", "requested_cpu=25", "requested_memory=128"]
        );
        assert_eq!(
            parameters.to_json(),
            serde_json::json!({"workload":"trace","function":"fn-a","requested_cpu":25,"requested_memory":128})
        );
    }
}
