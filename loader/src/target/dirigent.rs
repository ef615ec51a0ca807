//! The bundled orchestrator (`dirigent`): functions registered through the control plane's JSON API,
//! invocations sent to the data planes with the function in the `Host` header (their `Server-Timing`
//! breakdown is recorded by the HTTP target), spread over every data plane and failing over on a refused
//! connection (see `proxies.rs`). The control plane may run as several replicas: every API call goes to the replica
//! that answered last and fails over to the others in order when one is down, slow or without a leader.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use contracts::api::{self, DataPlaneList, FunctionSpec};
use futures_util::FutureExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::proxies::ProxyPool;
use super::{BoxFuture, FunctionDeployment, Target, TargetError, TargetResponse};
use crate::schedule::Invocation;

/// Default of [`DirigentConfig::api_timeout`].
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`DirigentConfig::avoid_for`].
pub const DEFAULT_AVOID_FOR: Duration = Duration::from_secs(1);
/// Largest control-plane reply buffered, bytes (a list of thousands of data planes fits).
pub const API_BODY_LIMIT: usize = 4 << 20;

/// Where the orchestrator is and what to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirigentConfig {
    /// The control plane replicas' HTTP APIs, `host:port` each (duplicates dropped); see [`DirigentTarget`]'s calls.
    pub apis: Vec<String>,
    /// The data planes' proxies known beforehand, `host:port` each; at deploy every data plane the control plane
    /// lists (`GET /v1/data-planes`) is added, and invocations are spread over all of them.
    pub proxies: Vec<String>,
    /// Image every function is registered with (for the process runtime: an executable path or a name
    /// found beside `dirigent`).
    pub image: String,
    /// Per-request timeout, over all the proxies one invocation tries.
    pub request_timeout: Option<Duration>,
    /// Timeout of each control-plane API call at one replica (registering, listing data planes, deleting); a call
    /// that fails over may take this long at every replica.
    pub api_timeout: Duration,
    /// How long a proxy that refused a connection is passed over before it is tried first again.
    pub avoid_for: Duration,
}

impl DirigentConfig {
    /// The orchestrator with its API replicas at `apis` and data planes at `proxies`; default timeouts.
    pub fn new(apis: Vec<String>, proxies: Vec<String>, image: impl Into<String>) -> Self {
        DirigentConfig {
            apis,
            proxies,
            image: image.into(),
            request_timeout: None,
            api_timeout: DEFAULT_API_TIMEOUT,
            avoid_for: DEFAULT_AVOID_FOR,
        }
    }
}

/// Why a call to the control plane's API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// The request could not be built (a bad API address or path).
    #[error("cannot build the request to {uri}: {source}; check target.api")]
    Build {
        /// What was called.
        uri: String,
        /// Why.
        #[source]
        source: http::Error,
    },
    /// Sending failed (nothing listening, the connection broke).
    #[error("calling the control plane at {uri} failed; is it running at target.api?")]
    Send {
        /// What was called.
        uri: String,
        /// Why.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No complete answer in time.
    #[error("the control plane at {uri} did not answer within {after:?}; raise driver.api_timeout if it is slow")]
    Timeout {
        /// What was called.
        uri: String,
        /// The timeout.
        after: Duration,
    },
    /// The reply broke off or was larger than [`API_BODY_LIMIT`].
    #[error("reading the control plane's reply from {uri} failed (at most {limit} bytes are read)")]
    Body {
        /// What was called.
        uri: String,
        /// The limit.
        limit: usize,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A replica answered 503: it has no leader yet or cannot reach it, so another replica may answer.
    #[error(
        "the control plane at {uri} answered 503 (a replica without a leader): {body}; list every replica in \
         target.api, or give the election time"
    )]
    NoLeader {
        /// What was called.
        uri: String,
        /// An excerpt of its body.
        body: String,
    },
    /// Every replica was tried once and none answered (each refused, timed out or had no leader).
    #[error(
        "no control plane replica answered {what} (each address in target.api tried once; is one running, with a \
         leader elected?): {}",
        failure_list(.failures)
    )]
    NoReplica {
        /// The method and path called.
        what: String,
        /// Each address tried, in order, and why it did not answer.
        failures: Vec<(String, ApiCallError)>,
    },
    /// A non-success status.
    #[error("the control plane at {uri} answered {status}: {body}")]
    Status {
        /// What was called.
        uri: String,
        /// Its status.
        status: StatusCode,
        /// An excerpt of its body.
        body: String,
    },
    /// A reply that is not the expected JSON.
    #[error("the control plane's reply from {uri} is not the expected JSON")]
    Json {
        /// What was called.
        uri: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Each failure as `address: error chain`, separated by ` | ` (the chains hold `;` themselves).
fn failure_list(failures: &[(String, ApiCallError)]) -> String {
    let entries: Vec<String> =
        failures.iter().map(|(address, error)| format!("{address}: {}", contracts::error_chain(error))).collect();
    entries.join(" | ")
}

/// A complete answer from one replica.
struct Answer {
    /// What was called, at the replica that answered.
    uri: String,
    status: StatusCode,
    body: Bytes,
}

/// The pause between two passes over the replicas when none answered.
const ELECTION_PAUSE: Duration = Duration::from_millis(100);

/// Why a pass over the replicas found no answer.
enum Pass {
    /// An error another replica would not change.
    Final(ApiCallError),
    /// Every replica failed in a way another try may not (address and error each).
    Failed(Vec<(String, ApiCallError)>),
}

/// The bundled orchestrator as a target.
///
/// Each control-plane call tries the replica that answered last first, then the others in configured order, once
/// each. It moves on when a replica cannot be reached (refused, reset, nothing listening), does not answer within
/// the API timeout, or answers 503 (no leader); any other answer is final. Repeating a call at another replica is
/// safe although the first may have applied it before failing: registering treats 409 and deleting 404 as done.
pub struct DirigentTarget {
    config: DirigentConfig,
    proxies: ProxyPool,
    api: Client<HttpConnector, Full<Bytes>>,
    /// Index in `config.apis` of the replica that answered last; tried first, so that a dead replica earlier in the
    /// list costs one failed attempt per run, not one per call.
    answered: AtomicUsize,
    deployed: std::sync::Mutex<Vec<String>>,
}

impl DirigentTarget {
    /// A target for the orchestrator at `config`'s addresses; at least one proxy must be configured.
    pub fn new(mut config: DirigentConfig) -> Result<Self, TargetError> {
        if config.proxies.is_empty() {
            return Err(TargetError::Config("the dirigent target needs a data plane proxy in target.proxy".into()));
        }
        let mut apis = Vec::with_capacity(config.apis.len());
        for address in std::mem::take(&mut config.apis) {
            // Checked here because a malformed address would fail every call at once instead of failing over.
            if let Err(e) = address.parse::<http::uri::Authority>() {
                return Err(TargetError::Config(format!(
                    "control plane API '{address}' in target.api is not host:port: {e}"
                )));
            }
            if !apis.contains(&address) {
                apis.push(address);
            }
        }
        if apis.is_empty() {
            return Err(TargetError::Config("the dirigent target needs the control plane's API in target.api".into()));
        }
        config.apis = apis;
        let proxies = ProxyPool::new(&config.proxies, config.request_timeout, config.avoid_for)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.api_timeout));
        let api = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { config, proxies, api, answered: AtomicUsize::new(0), deployed: std::sync::Mutex::default() })
    }

    /// The proxies invocations are spread over: the configured ones, then those the control plane listed.
    pub fn proxies(&self) -> Vec<String> {
        self.proxies.addresses()
    }

    /// One API call, failing over between the replicas (see [`DirigentTarget`]); the first final answer.
    async fn call(&self, method: Method, path: &str, body: Option<String>) -> Result<Answer, ApiCallError> {
        let body = Bytes::from(body.unwrap_or_default());
        // With several replicas, none answering may mean an election is running (it takes well under a second):
        // ask them all again until the call's own timeout has passed.
        let deadline = tokio::time::Instant::now() + self.config.api_timeout;
        loop {
            let mut failures = match self.pass(&method, path, &body).await {
                Ok(answer) => return Ok(answer),
                Err(Pass::Final(error)) => return Err(error),
                Err(Pass::Failed(failures)) => failures,
            };
            // One address: its own error already says where and what to do.
            if failures.len() == 1 {
                return Err(failures.pop().expect("one failure").1);
            }
            if tokio::time::Instant::now() + ELECTION_PAUSE >= deadline {
                return Err(ApiCallError::NoReplica { what: format!("{method} {path}"), failures });
            }
            tracing::info!("no control-plane replica answered {method} {path}; asking again");
            tokio::time::sleep(ELECTION_PAUSE).await;
        }
    }

    /// One pass over the replicas for a call: the address that answered last first, then the others in order.
    async fn pass(&self, method: &Method, path: &str, body: &Bytes) -> Result<Answer, Pass> {
        let apis = &self.config.apis;
        let first = self.answered.load(Ordering::Relaxed).min(apis.len() - 1);
        let order = std::iter::once(first).chain((0..apis.len()).filter(|&i| i != first));
        let mut failures = Vec::new();
        for index in order {
            let address = &apis[index];
            let error = match self.call_one(method.clone(), address, path, body.clone()).await {
                Ok(answer) if answer.status == StatusCode::SERVICE_UNAVAILABLE => {
                    ApiCallError::NoLeader { uri: answer.uri, body: super::http::body_excerpt(&answer.body) }
                }
                Ok(answer) => {
                    self.answered.store(index, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(error @ (ApiCallError::Send { .. } | ApiCallError::Timeout { .. })) => error,
                // A broken or oversized reply, a request that cannot be built: asking another replica would not help.
                Err(error) => return Err(Pass::Final(error)),
            };
            let chain = contracts::error_chain(&error);
            tracing::warn!(api = %address, error = %chain, "the control plane replica did not answer; trying the next");
            failures.push((address.clone(), error));
        }
        Err(Pass::Failed(failures))
    }

    /// One API call at the replica at `address`, bounded in time and in the reply it buffers.
    async fn call_one(&self, method: Method, address: &str, path: &str, body: Bytes) -> Result<Answer, ApiCallError> {
        let uri = format!("http://{address}{path}");
        let after = self.config.api_timeout;
        let (status, body) = tokio::time::timeout(after, self.call_unbounded(method, &uri, body))
            .await
            .unwrap_or_else(|_| Err(ApiCallError::Timeout { uri: uri.clone(), after }))?;
        Ok(Answer { uri, status, body })
    }

    async fn call_unbounded(
        &self,
        method: Method,
        uri: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ApiCallError> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|source| ApiCallError::Build { uri: uri.into(), source })?;
        let response =
            self.api.request(request).await.map_err(|source| ApiCallError::Send { uri: uri.into(), source })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), API_BODY_LIMIT)
            .collect()
            .await
            .map_err(|source| ApiCallError::Body { uri: uri.into(), limit: API_BODY_LIMIT, source })?
            .to_bytes();
        Ok((status, body))
    }

    async fn register(&self, function: &FunctionDeployment) -> Result<(), TargetError> {
        let image = function.image.clone().unwrap_or_else(|| self.config.image.clone());
        let mut spec = FunctionSpec::new(function.name.clone(), image);
        spec.min_scale = function.min_scale;
        // 0 leaves the control plane's own bound.
        if function.max_scale > 0 {
            spec.max_scale = function.max_scale;
        }
        let deploy_error = |message: String| TargetError::Deploy { function: function.name.clone(), message };
        let body = serde_json::to_string(&spec).map_err(|e| deploy_error(e.to_string()))?;
        let Answer { status, body, .. } = self
            .call(Method::POST, api::FUNCTIONS_PATH, Some(body))
            .await
            .map_err(|e| deploy_error(contracts::error_chain(&e)))?;
        // A function left registered by an earlier run is reused, as its sandboxes are the platform's business.
        if status.is_success() || status == StatusCode::CONFLICT {
            self.deployed.lock().unwrap_or_else(|e| e.into_inner()).push(function.name.clone());
            return Ok(());
        }
        Err(deploy_error(format!("the control plane answered {status}: {}", super::http::body_excerpt(&body))))
    }

    /// The proxy addresses of the data planes the control plane lists.
    async fn data_planes(&self) -> Result<Vec<String>, ApiCallError> {
        let Answer { uri, status, body } = self.call(Method::GET, api::DATA_PLANES_PATH, None).await?;
        if !status.is_success() {
            return Err(ApiCallError::Status { uri, status, body: super::http::body_excerpt(&body) });
        }
        let list: DataPlaneList = serde_json::from_slice(&body).map_err(|source| ApiCallError::Json { uri, source })?;
        Ok(list.data_planes.into_iter().map(|d| d.proxy_address).filter(|a| !a.is_empty()).collect())
    }

    /// Adds every data plane the control plane lists to the proxies; without the list the configured proxies
    /// still serve, so a failure is only logged.
    async fn discover_data_planes(&self) {
        let addresses = match self.data_planes().await {
            Ok(addresses) => addresses,
            Err(error) => {
                let error = contracts::error_chain(&error);
                tracing::warn!(%error, "cannot list the data planes; sending to the configured proxies only");
                return;
            }
        };
        for address in addresses {
            match self.proxies.add(&address) {
                Ok(true) => tracing::info!(proxy = %address, "sending to the data plane the control plane listed"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "skipping a listed data plane"),
            }
        }
    }
}

impl Target for DirigentTarget {
    fn deploy<'a>(&'a self, functions: &'a [FunctionDeployment]) -> BoxFuture<'a, Result<(), TargetError>> {
        async move {
            for function in functions {
                self.register(function).await?;
            }
            self.discover_data_planes().await;
            Ok(())
        }
        .boxed()
    }

    fn invoke<'a>(&'a self, function_name: &'a str, invocation: &'a Invocation) -> BoxFuture<'a, TargetResponse> {
        self.proxies.invoke(function_name, invocation).boxed()
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), TargetError>> {
        async move {
            let names = std::mem::take(&mut *self.deployed.lock().unwrap_or_else(|e| e.into_inner()));
            let mut failed = Vec::new();
            for name in names {
                match self.call(Method::DELETE, &api::function_path(&name), None).await {
                    Ok(Answer { status, .. }) if status.is_success() || status == StatusCode::NOT_FOUND => {}
                    Ok(Answer { status, body, .. }) => {
                        failed.push(format!("{name}: {status} {}", super::http::body_excerpt(&body)))
                    }
                    Err(error) => failed.push(format!("{name}: {}", contracts::error_chain(&error))),
                }
            }
            if failed.is_empty() { Ok(()) } else { Err(TargetError::Teardown(failed.join("; "))) }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A fake control-plane replica on 127.0.0.1: where it listens and how many requests it read.
    struct Replica {
        address: String,
        requests: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Replica {
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    impl Drop for Replica {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Answers every request with `status(n)` (`n`: the requests before it) and a JSON body, on `listener`.
    fn serve_on(listener: TcpListener, status: impl Fn(usize) -> StatusCode + Send + Sync + 'static) -> Replica {
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let (status, counted) = (Arc::new(status), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (status, counted) = (status.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_: Request<Incoming>| {
                        let status = status(counted.fetch_add(1, Ordering::SeqCst));
                        let response = http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(br#"{"data_planes":[]}"#)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Replica { address, requests, task }
    }

    async fn replica(status: impl Fn(usize) -> StatusCode + Send + Sync + 'static) -> Replica {
        serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), status)
    }

    /// An address where nothing listens (bound once, then released).
    fn closed_address() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    fn target(apis: &[&str]) -> DirigentTarget {
        let mut config =
            DirigentConfig::new(apis.iter().map(|a| a.to_string()).collect(), vec![closed_address()], "image");
        config.api_timeout = Duration::from_millis(300);
        DirigentTarget::new(config).unwrap()
    }

    async fn register(target: &DirigentTarget) -> Result<(), TargetError> {
        target.register(&FunctionDeployment { name: "f".into(), ..FunctionDeployment::default() }).await
    }

    #[tokio::test]
    async fn a_refused_replica_fails_over_and_the_one_that_answered_is_asked_first_next() {
        let closed = closed_address();
        let b = replica(|_| StatusCode::CREATED).await;
        let target = target(&[&closed, &b.address]);
        register(&target).await.unwrap();
        assert_eq!(b.requests(), 1);
        // The first replica comes back; the next call still goes to the one that answered.
        let a = serve_on(TcpListener::bind(&closed).await.unwrap(), |_| StatusCode::CREATED);
        register(&target).await.unwrap();
        assert_eq!((a.requests(), b.requests()), (0, 2), "asked the replica that answered first");
    }

    #[tokio::test]
    async fn a_replica_without_a_leader_fails_over() {
        // The first replica has no leader at first, then has one; the second always answers.
        let a = replica(|n| if n == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::CREATED }).await;
        let b = replica(|_| StatusCode::CREATED).await;
        let target = target(&[&a.address, &b.address]);
        register(&target).await.unwrap();
        assert_eq!((a.requests(), b.requests()), (1, 1));
        register(&target).await.unwrap();
        assert_eq!((a.requests(), b.requests()), (1, 2), "the replica that answered is asked first");
    }

    #[tokio::test]
    async fn a_replica_that_does_not_answer_in_time_fails_over() {
        // Accepts connections and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_address = silent.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let b = replica(|_| StatusCode::CREATED).await;
        let target = target(&[&silent_address, &b.address]);
        register(&target).await.unwrap();
        assert_eq!(b.requests(), 1);
        held.abort();
    }

    #[tokio::test]
    async fn when_every_replica_fails_the_error_names_each_address_and_why() {
        let closed = closed_address();
        let b = replica(|_| StatusCode::SERVICE_UNAVAILABLE).await;
        let target = target(&[&closed, &b.address]);
        let error = register(&target).await.unwrap_err().to_string();
        assert!(b.requests() >= 2, "asked again until api_timeout passed: {}", b.requests());
        for expected in [
            "no control plane replica answered POST /v1/functions",
            &format!("{closed}: calling the control plane at http://{closed}/v1/functions failed"),
            &format!("{}: the control plane at http://{}/v1/functions answered 503", b.address, b.address),
            "target.api",
        ] {
            assert!(error.contains(expected), "{expected:?} not in {error}");
        }
        // Data planes and deletions fail over the same way; a failed list only leaves the configured proxies.
        assert!(target.data_planes().await.unwrap_err().to_string().contains(&closed));
    }

    #[tokio::test]
    async fn replicas_without_a_leader_are_asked_again_until_one_leads() {
        let a = replica(|_| StatusCode::SERVICE_UNAVAILABLE).await;
        let b = replica(|n| if n == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::CREATED }).await;
        let target = target(&[&a.address, &b.address]);
        register(&target).await.expect("the second pass finds the elected leader");
        assert_eq!((a.requests(), b.requests()), (2, 2));
    }

    #[tokio::test]
    async fn any_other_answer_is_final_and_the_next_replica_is_not_asked() {
        for (status, registered) in
            [(StatusCode::CONFLICT, true), (StatusCode::BAD_REQUEST, false), (StatusCode::INTERNAL_SERVER_ERROR, false)]
        {
            let a = replica(move |_| status).await;
            let b = replica(|_| StatusCode::CREATED).await;
            let target = target(&[&a.address, &b.address]);
            let result = register(&target).await;
            assert_eq!(result.is_ok(), registered, "{status}: {result:?}");
            assert_eq!((a.requests(), b.requests()), (1, 0), "{status} is final");
        }
    }

    #[tokio::test]
    async fn teardown_deletes_at_the_replica_that_answers() {
        let a = replica(|n| if n == 0 { StatusCode::CREATED } else { StatusCode::SERVICE_UNAVAILABLE }).await;
        let b = replica(|_| StatusCode::OK).await;
        let target = target(&[&a.address, &b.address]);
        register(&target).await.unwrap();
        target.teardown().await.unwrap();
        assert_eq!((a.requests(), b.requests()), (2, 1));
    }

    #[test]
    fn api_addresses_are_checked_and_deduplicated() {
        let config = |apis: &[&str]| {
            DirigentConfig::new(apis.iter().map(|a| a.to_string()).collect(), vec!["127.0.0.1:1".into()], "i")
        };
        let target = DirigentTarget::new(config(&["a:1", "b:2", "a:1"])).unwrap();
        assert_eq!(target.config.apis, ["a:1", "b:2"]);
        for (apis, expected) in [(&[][..], "target.api"), (&["a:1", "not an address"][..], "'not an address'")] {
            let Err(error) = DirigentTarget::new(config(apis)) else { panic!("{apis:?} accepted") };
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
}
