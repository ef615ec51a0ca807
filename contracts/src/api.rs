//! The control plane's user API (`/registerService`, `/v1/functions`, `/v1/workers`, `/v1/data-planes`,
//! `/health`): its paths, request forms and JSON bodies, written by the control plane and read by the loader,
//! the experiments, tests and benchmarks.
//!
//! Requests are parsed strictly (a misspelt field is an error the user sees); responses are read tolerantly
//! (a reader ignores fields it does not know and defaults status fields an older control plane did not send).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Dirigent's form registration; answers with the data planes' proxy addresses, `;`-separated.
pub const REGISTER_SERVICE_PATH: &str = "/registerService";
/// `GET` lists the functions ([`FunctionList`]); `POST` registers one ([`FunctionSpec`] as JSON).
pub const FUNCTIONS_PATH: &str = "/v1/functions";
/// `GET` lists the registered workers ([`WorkerList`]).
pub const WORKERS_PATH: &str = "/v1/workers";
/// `GET` lists the registered data planes ([`DataPlaneList`]).
pub const DATA_PLANES_PATH: &str = "/v1/data-planes";
/// `GET` answers [`Health`].
pub const HEALTH_PATH: &str = "/health";
/// `GET` answers the Prometheus text format (not JSON).
pub const METRICS_PATH: &str = "/metrics";

/// The path of one function: `GET` shows it ([`FunctionView`]), `DELETE` deletes it ([`Deleted`]).
pub fn function_path(name: &str) -> String {
    format!("{FUNCTIONS_PATH}/{name}")
}

/// What a user registers: the function and how it scales (the JSON body of `POST /v1/functions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Unique name; also the `Host` the data plane routes by, so a DNS label.
    pub name: String,
    /// The image; for the process runtime, an executable path (a bare name is looked up beside `dirigent`,
    /// then on `PATH`).
    pub image: String,
    /// Arguments to the image's entry point.
    #[serde(default)]
    pub args: Vec<String>,
    /// Port the function serves on inside its sandbox (the process runtime assigns its own).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Extra environment for the sandbox.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CPU request per sandbox, millicores.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory request per sandbox, MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// Fewest sandboxes, also with no traffic.
    #[serde(default)]
    pub min_scale: u32,
    /// Most sandboxes.
    #[serde(default = "default_max_scale")]
    pub max_scale: u32,
    /// Requests one sandbox serves at once.
    #[serde(default = "default_concurrency")]
    pub container_concurrency: u32,
    /// Scale to zero at the first autoscaler tick without traffic (the cold-start sweep's setting).
    #[serde(default)]
    pub cold_start_sweep: bool,
}

fn default_port() -> u16 {
    80
}

fn default_max_scale() -> u32 {
    1000
}

fn default_concurrency() -> u32 {
    1
}

/// A registration request is invalid; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FunctionSpecError {
    /// a required field is missing
    #[error("missing field '{0}'")]
    Missing(&'static str),
    /// a field's value is not what it must be
    #[error("field '{field}': {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// the JSON body does not parse
    #[error("invalid JSON body: {0}")]
    Json(String),
}

/// The most sandboxes one function may ask for (`min_scale`, `max_scale`): far above what a cluster of this
/// toolkit's size runs, low enough that no registration can make the control plane plan without end.
pub const MAX_SCALE: u32 = 10_000;
/// The most requests one sandbox may be asked to serve at once.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// The most arguments, and environment entries, a registration may carry.
pub const MAX_ENTRIES: usize = 256;
/// The longest image, argument, environment key or value a registration may carry, in bytes.
pub const MAX_TEXT: usize = 4096;

fn invalid(field: &'static str, problem: impl Into<String>) -> FunctionSpecError {
    FunctionSpecError::Invalid { field, problem: problem.into() }
}

impl FunctionSpec {
    /// A function with every optional field at the control plane's default.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            args: Vec::new(),
            port: default_port(),
            env: BTreeMap::new(),
            cpu_millis: 0,
            memory_mib: 0,
            min_scale: 0,
            max_scale: default_max_scale(),
            container_concurrency: default_concurrency(),
            cold_start_sweep: false,
        }
    }

    /// Checks the fields a parser cannot: the name's shape, scale bounds, concurrency.
    pub fn validate(&self) -> Result<(), FunctionSpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-');
        if !name_ok {
            return Err(invalid("name", format!("'{}' is not a DNS label (a-z, 0-9, '-', at most 63)", self.name)));
        }
        if self.image.trim().is_empty() {
            return Err(FunctionSpecError::Missing("image"));
        }
        if self.min_scale > self.max_scale {
            return Err(invalid(
                "min_scale",
                format!("lower bound {} is above the upper bound {}", self.min_scale, self.max_scale),
            ));
        }
        if self.max_scale > MAX_SCALE {
            return Err(invalid(
                "max_scale",
                format!("{} is above the limit of {MAX_SCALE} sandboxes", self.max_scale),
            ));
        }
        if self.container_concurrency == 0 || self.container_concurrency > MAX_CONCURRENCY {
            let problem = format!("{} is not between 1 and {MAX_CONCURRENCY}", self.container_concurrency);
            return Err(invalid("container_concurrency", problem));
        }
        self.validate_sizes()
    }

    /// Checks the counts and lengths of the free-form fields against [`MAX_ENTRIES`] and [`MAX_TEXT`].
    fn validate_sizes(&self) -> Result<(), FunctionSpecError> {
        let too_many = |field, count: usize| {
            (count > MAX_ENTRIES)
                .then(|| invalid(field, format!("{count} entries, more than the limit of {MAX_ENTRIES}")))
        };
        let too_long = |field, text: &str| {
            (text.len() > MAX_TEXT)
                .then(|| invalid(field, format!("{} bytes, longer than the limit of {MAX_TEXT}", text.len())))
        };
        let texts = std::iter::once(("image", self.image.as_str()))
            .chain(self.args.iter().map(|a| ("args", a.as_str())))
            .chain(self.env.iter().flat_map(|(k, v)| [("env", k.as_str()), ("env", v.as_str())]));
        let mut problems = [too_many("args", self.args.len()), too_many("env", self.env.len())].into_iter().flatten();
        match problems.next() {
            Some(problem) => Err(problem),
            None => texts.filter_map(|(field, text)| too_long(field, text)).next().map_or(Ok(()), Err),
        }
    }

    /// Parses `POST /v1/functions`.
    pub fn from_json(body: &[u8]) -> Result<Self, FunctionSpecError> {
        let spec: Self = serde_json::from_slice(body).map_err(|e| FunctionSpecError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses Dirigent's `POST /registerService` form (`name`, `image`, `port_forwarding` twice,
    /// `requested_cpu`, `requested_memory`, `scaling_upper_bound`, `scaling_lower_bound`, `cold_start_sweep`).
    ///
    /// The image may carry arguments after whitespace. Fields this API does not know are ignored, as
    /// Dirigent's own API does, so that newer loaders keep working.
    pub fn from_form(body: &[u8]) -> Result<Self, FunctionSpecError> {
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| invalid("body", format!("not a form: {e}")))?;
        let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
        let name = get("name").ok_or(FunctionSpecError::Missing("name"))?.to_owned();
        let mut words = get("image").ok_or(FunctionSpecError::Missing("image"))?.split_whitespace().map(str::to_owned);
        let image = words.next().ok_or(FunctionSpecError::Missing("image"))?;
        let mut spec = Self {
            args: words.collect(),
            cpu_millis: number(get("requested_cpu"), "requested_cpu")?.unwrap_or(0),
            memory_mib: number(get("requested_memory"), "requested_memory")?.unwrap_or(0),
            min_scale: number(get("scaling_lower_bound"), "scaling_lower_bound")?.unwrap_or(0),
            max_scale: number(get("scaling_upper_bound"), "scaling_upper_bound")?.unwrap_or(default_max_scale()),
            cold_start_sweep: flag(get("cold_start_sweep"))?,
            ..Self::new(name, image)
        };
        // port_forwarding comes twice: the port, then the protocol.
        let forwarding: Vec<&str> =
            fields.iter().filter(|(k, _)| k == "port_forwarding").map(|(_, v)| v.as_str()).collect();
        if let Some(port) = forwarding.iter().find_map(|v| v.trim().parse::<u16>().ok()) {
            spec.port = port;
        } else if let Some(bad) = forwarding.iter().find(|v| v.chars().all(|c| c.is_ascii_digit() || c == '-')) {
            return Err(invalid("port_forwarding", format!("'{bad}' is not a port (1-65535)")));
        }
        spec.validate()?;
        Ok(spec)
    }

    /// This spec as Dirigent's `/registerService` form, the fields [`FunctionSpec::from_form`] reads (the form
    /// has no place for the environment, the concurrency or arguments containing whitespace).
    pub fn to_form(&self) -> String {
        let image = std::iter::once(self.image.as_str()).chain(self.args.iter().map(String::as_str));
        let fields = vec![
            ("name", self.name.clone()),
            ("image", image.collect::<Vec<_>>().join(" ")),
            ("port_forwarding", self.port.to_string()),
            ("port_forwarding", "tcp".to_owned()),
            ("requested_cpu", self.cpu_millis.to_string()),
            ("requested_memory", self.memory_mib.to_string()),
            ("scaling_upper_bound", self.max_scale.to_string()),
            ("scaling_lower_bound", self.min_scale.to_string()),
            ("cold_start_sweep", self.cold_start_sweep.to_string()),
        ];
        serde_urlencoded::to_string(fields).unwrap_or_default()
    }
}

fn number<T: std::str::FromStr>(value: Option<&str>, field: &'static str) -> Result<Option<T>, FunctionSpecError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<T>().map_err(|_| invalid(field, format!("'{v}' is not a non-negative whole number"))))
        .transpose()
}

fn flag(value: Option<&str>) -> Result<bool, FunctionSpecError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(invalid("cold_start_sweep", format!("'{other}' is not true or false"))),
    }
}

/// The reply to `/registerService`: the data planes' proxy addresses, sent as one `;`-separated line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyAddresses(pub Vec<String>);

impl std::fmt::Display for ProxyAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(";"))
    }
}

impl ProxyAddresses {
    /// Reads a reply; empty entries (an empty reply, a trailing `;`) are skipped.
    pub fn parse(reply: &str) -> Self {
        Self(reply.split(';').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
    }
}

/// A function as the API shows it: its spec (flattened) and its live status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionView {
    /// What was registered.
    #[serde(flatten)]
    pub spec: FunctionSpec,
    /// What runs now.
    pub status: FunctionStatus,
}

/// A function's live status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionStatus {
    /// Ready sandboxes.
    pub ready: u32,
    /// Sandboxes being created.
    pub creating: u32,
    /// The autoscaler's last desired scale; none before its first decision.
    pub desired: Option<u32>,
    /// Whether the last decision was taken in panic mode.
    pub panicking: bool,
    /// Concurrency summed over the data planes' latest reports.
    pub concurrency: f64,
    /// Requests queued for a sandbox, over all data planes.
    pub queued: u64,
    /// The ready sandboxes.
    pub sandboxes: Vec<Sandbox>,
    /// Counters since registration.
    pub counters: FunctionCounters,
    /// Why the last sandbox creation failed, if it did.
    pub last_error: Option<String>,
}

/// A ready sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sandbox {
    /// Its id.
    pub id: String,
    /// The worker it runs on.
    pub worker: String,
    /// Where it serves.
    pub address: String,
    /// How long it took to become ready, µs.
    pub creation_micros: u64,
    /// The creation's steps as the worker's runtime timed them (`image`, `snapshot`, ..., `ready`); empty for
    /// runtimes without steps.
    pub creation_steps: Vec<CreationStep>,
}

/// One timed step of a sandbox's creation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreationStep {
    /// The step: `image`, `snapshot`, `container`, `network`, `task`, `start`, `ready`.
    pub name: String,
    /// How long it took, µs.
    pub micros: u64,
}

/// Counters of one function, summed from data-plane reports and sandbox operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionCounters {
    /// Invocations that reached a sandbox.
    pub invocations: u64,
    /// Invocations that waited for a sandbox creation.
    pub cold_starts: u64,
    /// Invocations that failed in a data plane.
    pub failures: u64,
    /// Requests a data plane moved to another sandbox because theirs was unreachable.
    pub failovers: u64,
    /// Sandboxes created.
    pub sandboxes_created: u64,
    /// Sandbox creations that failed.
    pub creation_failures: u64,
}

/// `GET /v1/functions`; the list is required, so that an answer of another shape fails to read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionList {
    /// Every registered function, by name.
    pub functions: Vec<FunctionView>,
}

/// `DELETE /v1/functions/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The deleted function.
    pub deleted: String,
}

/// A registered worker and what is placed on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerView {
    /// Its name.
    pub name: String,
    /// Its gRPC address.
    pub address: String,
    /// Sandboxes placed on it (ready or being created).
    pub sandboxes: u32,
    /// CPU it offers to sandboxes, millicores.
    pub cpu_capacity_millis: u64,
    /// CPU requested by its sandboxes, millicores.
    pub cpu_used_millis: u64,
    /// Memory it offers to sandboxes, MiB.
    pub memory_capacity_mib: u64,
    /// Memory requested by its sandboxes, MiB.
    pub memory_used_mib: u64,
}

/// `GET /v1/workers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerList {
    /// Every registered worker, by name.
    pub workers: Vec<WorkerView>,
}

/// A registered data plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataPlaneView {
    /// Its name.
    pub name: String,
    /// Where users send invocations.
    pub proxy_address: String,
    /// Its gRPC address.
    pub grpc_address: String,
}

/// `GET /v1/data-planes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneList {
    /// Every registered data plane, by name.
    pub data_planes: Vec<DataPlaneView>,
}

/// `GET /health`: the API answers, and how much is registered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// Always `ok` when the API answers.
    pub status: String,
    /// Registered functions.
    pub functions: usize,
    /// Registered workers.
    pub workers: usize,
    /// Registered data planes.
    pub data_planes: usize,
    /// Whether this control plane leads: `leader` (also the only one), `follower`, or `electing` (no leader
    /// known); empty from an older control plane.
    pub role: String,
}

/// The body of every error answer: `{"error": message}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

#[cfg(test)]
mod tests;
