//! AWS Lambda as a target: one Lambda function per trace function (custom runtime `provided.al2023` running
//! `trace-function` as `bootstrap`), created over the Lambda REST API, invoked synchronously (`RequestResponse`),
//! deleted at teardown; every request signed with SigV4 (`aws-sigv4`).
//!
//! An endpoint override points the target at moto or a VPC endpoint. Credentials come from the standard chain (see
//! [`credentials`]) and appear in no log, `Debug` output, manifest or error message.

pub mod backoff;
pub mod client;
pub mod credentials;
pub mod package;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use contracts::workload::{Parameters, ReceivedReply};
use futures_util::{FutureExt, StreamExt};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use self::client::{ApiError, ApiResponse, LambdaClient, query_encode};
use self::credentials::AwsCredentials;
use super::http::body_excerpt;
use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::record::Outcome;
use crate::schedule::Invocation;

/// The REST path of the functions collection (API version 2015-03-31).
pub const FUNCTIONS_PATH: &str = "/2015-03-31/functions";
/// The runtime every function is created with.
pub const RUNTIME: &str = "provided.al2023";
/// Lambda's memory bounds, MiB.
pub const MEMORY_RANGE_MIB: std::ops::RangeInclusive<u32> = 128..=10_240;
/// Lambda's function timeout bounds, seconds.
pub const TIMEOUT_RANGE_S: std::ops::RangeInclusive<u32> = 1..=900;
/// Longest Lambda function name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted name prefix (leaves room for the trace function's name).
pub const MAX_PREFIX_LEN: usize = 40;
/// Outcome message of a throttled invocation (HTTP 429 / `TooManyRequestsException`).
pub const THROTTLED: &str = "throttled";
/// Deadline of one control-plane request (create, get, delete, list).
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Functions created or deleted at once.
const CONTROL_PARALLELISM: usize = 4;

/// The instruction set a function runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Architecture {
    /// `x86_64` (the default).
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    /// `arm64` (Graviton).
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    /// The name the Lambda API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

/// The `target: { kind: lambda, ... }` block of a run config; every key but `role_arn` and `zip` has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaTargetConfig {
    /// AWS region; `null`: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override, e.g. `http://127.0.0.1:5005` (moto) or a VPC endpoint.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Prefix of every function name (what `loader cleanup` deletes).
    #[serde(default = "default_prefix")]
    pub function_prefix: String,
    /// The execution role's ARN.
    pub role_arn: String,
    /// Memory of every function, MiB; `null`: each function's memory from the trace.
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// The function timeout, seconds (1-900).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u32,
    /// `x86_64` or `arm64`.
    #[serde(default)]
    pub architecture: Architecture,
    /// The deployment package (a zip with `bootstrap` = the trace-function binary).
    pub zip: PathBuf,
    /// Most invocations in flight at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Profile in the shared credentials file; `null`: `AWS_PROFILE`, else `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// How long deploying may wait for the functions to become Active.
    #[serde(default = "default_deploy_timeout", with = "humantime_serde")]
    pub deploy_timeout: Duration,
    /// After a throttled call, calls due within this window are not sent and fail as throttled at their intended
    /// time; it doubles with each throttle up to `throttle_backoff_max`. `0s`: never back off.
    #[serde(default = "default_throttle_backoff", with = "humantime_serde")]
    pub throttle_backoff: Duration,
    /// The longest backoff window.
    #[serde(default = "default_throttle_backoff_max", with = "humantime_serde")]
    pub throttle_backoff_max: Duration,
}

fn default_throttle_backoff() -> Duration {
    Duration::from_millis(100)
}

fn default_throttle_backoff_max() -> Duration {
    Duration::from_secs(5)
}

fn default_prefix() -> String {
    "loader-".into()
}

fn default_timeout_s() -> u32 {
    60
}

fn default_max_concurrency() -> usize {
    1000
}

fn default_deploy_timeout() -> Duration {
    Duration::from_secs(300)
}

impl LambdaConfig {
    /// The target settings for a run config block, with the driver's per-request timeout; the region falls back
    /// to `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`.
    pub fn from_target(target: &LambdaTargetConfig, request_timeout: Option<Duration>) -> Self {
        let region = target
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".into());
        LambdaConfig {
            region,
            endpoint_url: target.endpoint_url.clone(),
            function_prefix: target.function_prefix.clone(),
            role_arn: target.role_arn.clone(),
            memory_mib: target.memory_mib,
            timeout_s: target.timeout_s,
            architecture: target.architecture,
            zip: target.zip.clone(),
            max_concurrency: target.max_concurrency,
            profile: target.profile.clone(),
            request_timeout,
            deploy_timeout: target.deploy_timeout,
            throttle_backoff: target.throttle_backoff,
            throttle_backoff_max: target.throttle_backoff_max,
        }
    }
}

/// Settings of a [`LambdaTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// Endpoint override (`http://127.0.0.1:5005` for moto, a VPC endpoint); `None`: `https://lambda.REGION.amazonaws.com`.
    pub endpoint_url: Option<String>,
    /// Prefix of every function name this target creates (and `cleanup` deletes).
    pub function_prefix: String,
    /// The execution role's ARN.
    pub role_arn: String,
    /// Memory of every function, MiB; `None`: each function's requested memory from the trace (clamped to Lambda's
    /// range).
    pub memory_mib: Option<u32>,
    /// The function timeout, seconds.
    pub timeout_s: u32,
    /// Instruction set.
    pub architecture: Architecture,
    /// The deployment package (see [`package`]); read by [`LambdaTarget::new`].
    pub zip: PathBuf,
    /// Most invocations in flight at once; more wait (their wait counts in the response time).
    pub max_concurrency: usize,
    /// The profile for the shared credentials file; `None`: `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
    /// Per-invocation timeout (to the end of the body); `None` waits forever.
    pub request_timeout: Option<Duration>,
    /// How long [`Target::deploy`] waits for all functions to become `Active`.
    pub deploy_timeout: Duration,
    /// The first backoff window after throttling (see [`backoff`]); zero: never back off.
    pub throttle_backoff: Duration,
    /// The longest backoff window.
    pub throttle_backoff_max: Duration,
}

impl LambdaConfig {
    /// A configuration with the loader's defaults for `role_arn` and `zip`.
    pub fn new(role_arn: impl Into<String>, zip: impl Into<PathBuf>) -> Self {
        LambdaConfig {
            region: "us-east-1".into(),
            endpoint_url: None,
            function_prefix: "loader-".into(),
            role_arn: role_arn.into(),
            memory_mib: None,
            timeout_s: 60,
            architecture: Architecture::X86_64,
            zip: zip.into(),
            max_concurrency: 1000,
            profile: None,
            request_timeout: Some(Duration::from_secs(60)),
            deploy_timeout: Duration::from_secs(300),
            throttle_backoff: default_throttle_backoff(),
            throttle_backoff_max: default_throttle_backoff_max(),
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> String {
        self.endpoint_url.clone().unwrap_or_else(|| format!("https://lambda.{}.amazonaws.com", self.region))
    }

    /// Checks the values Lambda would refuse, naming the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.region.is_empty() || !self.region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("target.region '{}' is not an AWS region name", self.region));
        }
        if self.function_prefix.is_empty()
            || self.function_prefix.len() > MAX_PREFIX_LEN
            || !self.function_prefix.bytes().all(name_byte)
        {
            return Err(format!(
                "target.function_prefix '{}' must be 1 to {MAX_PREFIX_LEN} characters of A-Z, a-z, 0-9, - and _",
                self.function_prefix
            ));
        }
        if !self.role_arn.starts_with("arn:") {
            return Err(format!("target.role_arn '{}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", {
                &self.role_arn
            }));
        }
        if let Some(memory) = self.memory_mib.filter(|m| !MEMORY_RANGE_MIB.contains(m)) {
            return Err(format!("target.memory_mib {memory} is outside Lambda's 128..=10240 MiB"));
        }
        if !TIMEOUT_RANGE_S.contains(&self.timeout_s) {
            return Err(format!("target.timeout_s {} is outside Lambda's 1..=900 s", self.timeout_s));
        }
        if self.max_concurrency == 0 {
            return Err("target.max_concurrency must be at least 1".into());
        }
        Ok(())
    }
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The Lambda function name for trace function `function`: `prefix` + the name with every character Lambda refuses
/// replaced by `-`; a name that had to change or is too long gets a short hash of the original, so that two trace
/// functions never share a Lambda function.
pub fn function_name(prefix: &str, function: &str) -> String {
    let cleaned: String = function.bytes().map(|b| if name_byte(b) { b as char } else { '-' }).collect();
    let plain = format!("{prefix}{cleaned}");
    if cleaned == function && plain.len() <= MAX_NAME_LEN && !function.is_empty() {
        return plain;
    }
    // FNV-1a is stable across builds and platforms; folded to 32 bits (8 hex digits) to leave room for the name.
    let wide = crate::schedule::seed::fnv1a64(function.as_bytes());
    let hash = (wide ^ (wide >> 32)) as u32;
    let keep = MAX_NAME_LEN - 9;
    let mut head = plain;
    head.truncate(keep);
    format!("{head}-{hash:08x}")
}

/// Memory for a function: the fixed setting, else the trace's request clamped to Lambda's range.
pub fn memory_for(config: &LambdaConfig, function: &FunctionDeployment) -> u32 {
    config.memory_mib.unwrap_or(function.requested_memory_mib).clamp(*MEMORY_RANGE_MIB.start(), *MEMORY_RANGE_MIB.end())
}

/// The Invoke payload: the workload function's parameters as JSON.
pub fn invoke_payload(function: &str, invocation: &Invocation) -> String {
    Parameters::trace(function, invocation.runtime_ms, invocation.memory_mib).to_json().to_string()
}

/// Maps an Invoke answer to a response: `X-Amz-Function-Error` and non-OK statuses are failures with their reason,
/// 429 / `TooManyRequestsException` is [`THROTTLED`].
pub(crate) fn invoke_response(response: &ApiResponse) -> TargetResponse {
    let status = response.status;
    // Checked before parsing the error: this runs once per call and nearly every call succeeds.
    if !status.is_success() {
        let (kind, message) = response.error();
        let outcome = if status == StatusCode::TOO_MANY_REQUESTS || kind == "TooManyRequestsException" {
            Outcome::Status(429, format!("{THROTTLED}: {kind}: {message}"))
        } else {
            Outcome::Status(status.as_u16(), format!("{kind}: {message}"))
        };
        return TargetResponse::from_outcome(outcome);
    }
    let reply = ReceivedReply::parse(&response.body);
    let outcome = if let Some(kind) = response.headers.get("x-amz-function-error") {
        let kind = kind.to_str().unwrap_or("function error");
        Outcome::Status(status.as_u16(), format!("function error ({kind}): {}", body_excerpt(&response.body)))
    } else if !reply.status_ok() {
        Outcome::Status(status.as_u16(), body_excerpt(&response.body))
    } else {
        Outcome::Ok
    };
    TargetResponse {
        outcome,
        actual_duration_us: reply.execution_time,
        actual_memory_mib: reply.memory_mib(),
        cold_start: reply.cold_start,
        breakdown: Default::default(),
        failovers: 0,
    }
}

/// AWS Lambda as a target.
pub struct LambdaTarget {
    config: LambdaConfig,
    client: LambdaClient,
    zip_base64: Arc<str>,
    permits: Semaphore,
    backoff: backoff::Backoff,
    deployed: std::sync::Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for LambdaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaTarget")
            .field("config", &self.config)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Checks `config`, then resolves credentials from the standard chain (so that a config error is reported first).
fn connect(config: &LambdaConfig) -> Result<LambdaClient, TargetError> {
    config.validate().map_err(TargetError::Config)?;
    let credentials =
        credentials::resolve(config.profile.as_deref()).map_err(|e| TargetError::Config(e.to_string()))?;
    client(config, &credentials)
}

fn connect_with(config: &LambdaConfig, credentials: &AwsCredentials) -> Result<LambdaClient, TargetError> {
    config.validate().map_err(TargetError::Config)?;
    client(config, credentials)
}

/// The client for a validated `config`.
fn client(config: &LambdaConfig, credentials: &AwsCredentials) -> Result<LambdaClient, TargetError> {
    LambdaClient::new(&config.endpoint(), &config.region, credentials, config.max_concurrency.min(4096))
        .map_err(TargetError::Config)
}

impl LambdaTarget {
    /// Builds the target: checks the config, resolves credentials from the standard chain and reads the zip.
    pub fn new(config: LambdaConfig) -> Result<Self, TargetError> {
        let client = connect(&config)?;
        Self::with_client(config, client)
    }

    /// Builds the target with the given credentials instead of the standard chain.
    pub fn with_credentials(config: LambdaConfig, credentials: &AwsCredentials) -> Result<Self, TargetError> {
        let client = connect_with(&config, credentials)?;
        Self::with_client(config, client)
    }

    fn with_client(config: LambdaConfig, client: LambdaClient) -> Result<Self, TargetError> {
        let zip = std::fs::read(&config.zip).map_err(|e| {
            TargetError::Config(format!(
                "target.zip {}: {e} (build it with loader::target::lambda::package::write_zip from the trace-function \
                 binary)",
                config.zip.display()
            ))
        })?;
        if zip.len() > package::MAX_INLINE_ZIP_BYTES {
            return Err(TargetError::Config(format!(
                "target.zip {} has {} bytes; Lambda accepts at most {} inline (use a stripped release build)",
                config.zip.display(),
                zip.len(),
                package::MAX_INLINE_ZIP_BYTES
            )));
        }
        Ok(LambdaTarget {
            permits: Semaphore::new(config.max_concurrency),
            backoff: backoff::Backoff::new(config.throttle_backoff, config.throttle_backoff_max),
            // The `ZipFile` field of CreateFunction: standard base64 with padding.
            zip_base64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &zip).into(),
            config,
            client,
            deployed: std::sync::Mutex::default(),
        })
    }

    /// The configuration this target was built with.
    pub fn config(&self) -> &LambdaConfig {
        &self.config
    }

    /// The Lambda function names deployed and not yet torn down.
    pub fn deployed(&self) -> Vec<String> {
        self.deployed.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    async fn create(&self, function: &FunctionDeployment) -> Result<(), TargetError> {
        let name = function_name(&self.config.function_prefix, &function.name);
        let deploy_error =
            |message: String| TargetError::Deploy { function: format!("{} (Lambda {name})", function.name), message };
        let body = serde_json::json!({
            "FunctionName": name,
            "Runtime": RUNTIME,
            "Role": self.config.role_arn,
            "Handler": package::BOOTSTRAP,
            "Code": { "ZipFile": &*self.zip_base64 },
            "MemorySize": memory_for(&self.config, function),
            "Timeout": self.config.timeout_s,
            "Architectures": [self.config.architecture.as_str()],
            "PackageType": "Zip",
            "Description": format!("loader: trace function {}", function.name),
            "Environment": { "Variables": { "FUNCTION_NAME": function.name } },
        });
        let response = self
            .client
            .send(Method::POST, FUNCTIONS_PATH, Bytes::from(body.to_string()), Some(API_TIMEOUT))
            .await
            .map_err(|e| deploy_error(e.to_string()))?;
        if !response.status.is_success() {
            let (kind, message) = response.error();
            // A function left by an interrupted run is reused (and deleted at teardown like the others).
            if kind != "ResourceConflictException" {
                return Err(deploy_error(format!("CreateFunction answered {}: {kind}: {message}", response.status)));
            }
        }
        self.deployed.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone());
        self.wait_active(&name, Instant::now() + self.config.deploy_timeout).await.map_err(deploy_error)
    }

    /// Polls GetFunction until `Configuration.State` is `Active` (a missing state counts as active, as older
    /// emulators omit it), fails on `Failed` or at `deadline`.
    async fn wait_active(&self, name: &str, deadline: Instant) -> Result<(), String> {
        let path = format!("{FUNCTIONS_PATH}/{name}");
        let mut pause = Duration::from_millis(100);
        loop {
            let response = self
                .client
                .send(Method::GET, &path, Bytes::new(), Some(API_TIMEOUT))
                .await
                .map_err(|e| e.to_string())?;
            if !response.status.is_success() {
                let (kind, message) = response.error();
                return Err(format!("GetFunction answered {}: {kind}: {message}", response.status));
            }
            let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
            let configuration = &json["Configuration"];
            match configuration["State"].as_str() {
                None | Some("Active") => return Ok(()),
                Some("Failed") => {
                    let reason = configuration["StateReason"].as_str().unwrap_or("no reason given");
                    return Err(format!("the function's state is Failed: {reason}"));
                }
                Some(state) if Instant::now() + pause > deadline => {
                    return Err(format!(
                        "still {state} after {:?} (target deploy deadline)",
                        self.config.deploy_timeout
                    ));
                }
                Some(_) => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn invoke_inner(&self, function: &str, invocation: &Invocation) -> TargetResponse {
        if let Some(left) = self.backoff.holding(std::time::Instant::now()) {
            let reason = format!("{THROTTLED}: not sent, backing off for {left:?} more after throttling");
            return TargetResponse::from_outcome(Outcome::Status(429, reason));
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return TargetResponse::from_outcome(Outcome::ConnectionFailed("the target is shut down".into()));
        };
        let name = function_name(&self.config.function_prefix, function);
        let path = format!("{FUNCTIONS_PATH}/{name}/invocations");
        let payload = Bytes::from(invoke_payload(function, invocation));
        let response = match self.client.send(Method::POST, &path, payload, None).await {
            Ok(response) => invoke_response(&response),
            Err(e) => TargetResponse::from_outcome(Outcome::ConnectionFailed(e.to_string())),
        };
        match &response.outcome {
            Outcome::Status(429, _) => self.backoff.throttled(std::time::Instant::now()),
            outcome if outcome.is_ok() => self.backoff.succeeded(),
            _ => {}
        }
        response
    }
}

impl Target for LambdaTarget {
    fn deploy<'a>(&'a self, functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        async move {
            let gate = Semaphore::new(CONTROL_PARALLELISM);
            let results = futures_util::future::join_all(functions.iter().map(|function| {
                let gate = &gate;
                async move {
                    let _turn = gate.acquire().await;
                    self.create(function).await
                }
            }))
            .await;
            if let Some(error) = results.into_iter().find_map(Result::err) {
                // run() tears down only after a successful deploy: delete what was created here.
                if let Err(teardown) = self.teardown().await {
                    tracing::warn!(%teardown, "cleaning up after the failed deploy");
                }
                return Err(error);
            }
            Ok(())
        }
        .boxed()
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        Box::pin(async move {
            match self.config.request_timeout {
                Some(limit) => tokio::time::timeout(limit, self.invoke_inner(function_name, invocation))
                    .await
                    .unwrap_or_else(|_| TargetResponse::from_outcome(Outcome::Timeout)),
                None => self.invoke_inner(function_name, invocation).await,
            }
        })
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        async move {
            let names = std::mem::take(&mut *self.deployed.lock().unwrap_or_else(|e| e.into_inner()));
            let failed = delete_all(&self.client, names.into_iter().collect()).await.1;
            if failed.is_empty() { Ok(()) } else { Err(TargetError::Teardown(failed.join("; "))) }
        }
        .boxed()
    }
}

/// Deletes `names`; returns the deleted (or already gone) names and the failures.
async fn delete_all(client: &LambdaClient, names: Vec<String>) -> (Vec<String>, Vec<String>) {
    let results: Vec<(String, Result<(), String>)> = futures_util::stream::iter(names)
        .map(|name| async move {
            let path = format!("{FUNCTIONS_PATH}/{name}");
            let result = match client.send(Method::DELETE, &path, Bytes::new(), Some(API_TIMEOUT)).await {
                Ok(response) if response.status.is_success() || response.status == StatusCode::NOT_FOUND => Ok(()),
                Ok(response) => {
                    let (kind, message) = response.error();
                    Err(format!("DeleteFunction {name} answered {}: {kind}: {message}", response.status))
                }
                Err(e) => Err(e.to_string()),
            };
            (name, result)
        })
        .buffer_unordered(CONTROL_PARALLELISM)
        .collect()
        .await;
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for (name, result) in results {
        match result {
            Ok(()) => deleted.push(name),
            Err(message) => failed.push(message),
        }
    }
    deleted.sort();
    (deleted, failed)
}

/// Names of all functions starting with `prefix` (ListFunctions, following `NextMarker`).
async fn list_with_prefix(client: &LambdaClient, prefix: &str) -> Result<Vec<String>, TargetError> {
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut path = format!("{FUNCTIONS_PATH}/?MaxItems=50");
        if let Some(marker) = &marker {
            path.push_str("&Marker=");
            path.push_str(&query_encode(marker));
        }
        let response = client
            .send(Method::GET, &path, Bytes::new(), Some(API_TIMEOUT))
            .await
            .map_err(|e: ApiError| TargetError::Teardown(format!("ListFunctions: {e}")))?;
        if !response.status.is_success() {
            let (kind, message) = response.error();
            return Err(TargetError::Teardown(format!(
                "ListFunctions at {} answered {}: {kind}: {message}",
                client.endpoint(),
                response.status
            )));
        }
        let json: serde_json::Value = serde_json::from_slice(&response.body).map_err(|e| {
            TargetError::Teardown(format!("ListFunctions at {}: the answer is not JSON: {e}", client.endpoint()))
        })?;
        for function in json["Functions"].as_array().into_iter().flatten() {
            if let Some(name) = function["FunctionName"].as_str().filter(|n| n.starts_with(prefix)) {
                names.push(name.to_string());
            }
        }
        match json["NextMarker"].as_str().filter(|m| !m.is_empty()) {
            Some(next) if marker.as_deref() != Some(next) => marker = Some(next.to_string()),
            _ => break,
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Deletes every function whose name starts with `config.function_prefix` (leftovers of interrupted runs); returns
/// the names deleted. Needs no zip.
pub async fn cleanup(config: &LambdaConfig) -> Result<Vec<String>, TargetError> {
    let client = connect(config)?;
    cleanup_with_client(&client, &config.function_prefix).await
}

/// [`cleanup`] with the given credentials instead of the standard chain.
pub async fn cleanup_with_credentials(
    config: &LambdaConfig,
    credentials: &AwsCredentials,
) -> Result<Vec<String>, TargetError> {
    let client = connect_with(config, credentials)?;
    cleanup_with_client(&client, &config.function_prefix).await
}

async fn cleanup_with_client(client: &LambdaClient, prefix: &str) -> Result<Vec<String>, TargetError> {
    let names = list_with_prefix(client, prefix).await?;
    let (deleted, failed) = delete_all(client, names).await;
    if failed.is_empty() { Ok(deleted) } else { Err(TargetError::Teardown(failed.join("; "))) }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn response(status: u16, headers: &[(&'static str, &str)], body: &str) -> ApiResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        ApiResponse { status: StatusCode::from_u16(status).unwrap(), headers: map, body: Bytes::from(body.to_string()) }
    }

    #[test]
    fn names_are_valid_and_distinct() {
        assert_eq!(function_name("loader-", "fn-1"), "loader-fn-1");
        let long = "a".repeat(100);
        let named = function_name("loader-", &long);
        assert_eq!(named.len(), MAX_NAME_LEN);
        assert!(named.bytes().all(name_byte));
        assert_ne!(function_name("p-", "a.b"), function_name("p-", "a:b"));
        assert_ne!(function_name("p-", "a.b"), "p-a-b");
        assert!(function_name("p-", "").starts_with("p-"));
        // Pinned: a leftover of an interrupted run is reused by its name, so names must not change between builds.
        assert_eq!(function_name("p-", "a.b"), "p-a-b-e27bcb35");
        assert_eq!(function_name("p-", ""), "p--4fd0bfc1");
        assert_eq!(named, format!("loader-{}-06df4dd5", "a".repeat(MAX_NAME_LEN - 9 - "loader-".len())));
    }

    #[test]
    fn memory_from_trace_or_fixed_and_clamped() {
        let mut config = LambdaConfig::new("arn:aws:iam::123456789012:role/r", "f.zip");
        let function = FunctionDeployment { requested_memory_mib: 64, ..Default::default() };
        assert_eq!(memory_for(&config, &function), 128);
        let function = FunctionDeployment { requested_memory_mib: 300, ..Default::default() };
        assert_eq!(memory_for(&config, &function), 300);
        config.memory_mib = Some(1024);
        assert_eq!(memory_for(&config, &function), 1024);
    }

    #[test]
    fn validation_names_the_key() {
        let good = LambdaConfig::new("arn:aws:iam::123456789012:role/r", "f.zip");
        assert!(good.validate().is_ok());
        type Change = fn(&mut LambdaConfig);
        let cases: [(&str, Change); 6] = [
            ("role_arn", |c| c.role_arn = "role".into()),
            ("function_prefix", |c| c.function_prefix = "bad prefix".into()),
            ("memory_mib", |c| c.memory_mib = Some(64)),
            ("timeout_s", |c| c.timeout_s = 901),
            ("max_concurrency", |c| c.max_concurrency = 0),
            ("region", |c| c.region = "us east".into()),
        ];
        for (key, change) in cases {
            let mut config = good.clone();
            change(&mut config);
            assert!(config.validate().unwrap_err().contains(key), "{key}");
        }
    }

    #[test]
    fn maps_invoke_answers() {
        let ok = invoke_response(&response(
            200,
            &[],
            r#"{"Status":"OK","ExecutionTime":1500,"MemoryUsageKb":2048,"ColdStart":true}"#,
        ));
        assert_eq!(ok.outcome, Outcome::Ok);
        assert_eq!((ok.actual_duration_us, ok.actual_memory_mib, ok.cold_start), (Some(1500), Some(2), Some(true)));

        let failed = invoke_response(&response(
            200,
            &[("x-amz-function-error", "Unhandled")],
            r#"{"errorMessage":"boom","errorType":"Runtime.ExitError"}"#,
        ));
        match failed.outcome {
            Outcome::Status(200, reason) => {
                assert!(reason.contains("Unhandled") && reason.contains("boom"), "{reason}")
            }
            other => panic!("{other:?}"),
        }

        let throttled = invoke_response(&response(
            429,
            &[("x-amzn-errortype", "TooManyRequestsException:http://internal")],
            r#"{"message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}"#,
        ));
        match throttled.outcome {
            Outcome::Status(429, reason) => {
                assert!(reason.starts_with(THROTTLED) && reason.contains("Rate Exceeded"), "{reason}")
            }
            other => panic!("{other:?}"),
        }

        // Throttling is told by the error type too, whatever the status.
        let throttled = invoke_response(&response(400, &[("x-amzn-errortype", "TooManyRequestsException")], "{}"));
        assert!(matches!(throttled.outcome, Outcome::Status(429, ref reason) if reason.starts_with(THROTTLED)));

        let missing = invoke_response(&response(
            404,
            &[],
            r#"{"__type":"ResourceNotFoundException","message":"Function not found: arn:x"}"#,
        ));
        match missing.outcome {
            Outcome::Status(404, reason) => assert!(reason.starts_with("ResourceNotFoundException"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payload_carries_the_parameters() {
        let invocation = Invocation::single(25, 128);
        let json: serde_json::Value = serde_json::from_str(&invoke_payload("f", &invocation)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"workload":"trace","function":"f","requested_cpu":25,"requested_memory":128})
        );
    }
}
