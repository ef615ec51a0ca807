//! The Lambda target against moto's server mode (the real Lambda REST wire protocol) and, for what moto cannot
//! produce (function errors, throttling, hangs, header inspection), a small local HTTP server.
//!
//! moto comes from a venv: `V=${CARGO_TARGET_DIR:-target}/moto-venv; python3 -m venv "$V" && "$V/bin/pip" install
//! "moto[server]"` (scripts/test.sh does it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loader::record::Outcome;
use loader::schedule::Invocation;
use loader::target::lambda::credentials::AwsCredentials;
use loader::target::lambda::{LambdaConfig, LambdaTarget, THROTTLED, cleanup_with_credentials, function_name};
use loader::target::{FunctionDeployment, Target};

const ROLE: &str = "arn:aws:iam::123456789012:role/loader-test-role";
const KEY_ID: &str = "AKIDLOADERTEST7Q3Z";
const SECRET: &str = "s3cr3tLoaderTestValueX9";
const TOKEN: &str = "sessionTokenLoaderTestY8";

/// How long moto_server may take to answer after it starts (it imports all of moto first).
const MOTO_START_DEADLINE: Duration = Duration::from_secs(30);

/// moto_server on a free loopback port; killed (and reaped) on drop, also when the test panics.
struct Moto {
    child: Child,
    url: String,
    _logs: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("moto-venv/bin/moto_server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_moto() -> Moto {
    let binary = moto_server_path();
    assert!(
        binary.exists(),
        "{} is missing: create it with `V={}; python3 -m venv \"$V\" && \"$V/bin/pip\" install \"moto[server]\"` \
         (scripts/test.sh does this)",
        binary.display(),
        binary.parent().and_then(Path::parent).unwrap().display()
    );
    let logs = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(logs.path().join("moto.log")).unwrap();
    let port = free_port();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}"), _logs: logs };
    // Ready when it answers; give up if the process exits or stays silent past the deadline.
    let deadline = Instant::now() + MOTO_START_DEADLINE;
    let log = |moto: &Moto| std::fs::read_to_string(moto._logs.path().join("moto.log")).unwrap_or_default();
    loop {
        if let Some(status) = moto.child.try_wait().unwrap() {
            panic!("moto_server exited with {status}: {}", log(&moto));
        }
        // Each probe is bounded too: a server that accepts but never answers must not outlast the deadline.
        let probe = tokio::time::timeout(Duration::from_secs(2), plain(&moto.url, "GET", "/moto-api/", "")).await;
        if probe.ok().flatten().is_some_and(|(status, _)| status == 200) {
            break;
        }
        if Instant::now() > deadline {
            panic!("moto_server did not answer on {} within {MOTO_START_DEADLINE:?}: {}", moto.url, log(&moto));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) =
        plain(&moto.url, "POST", "/moto-api/config", r#"{"lambda":{"use_docker":false}}"#).await.unwrap();
    assert!(status < 300, "moto config: {status} {body}");
    create_role(&moto).await;
    moto
}

/// An unsigned request (moto's own API); `None` when nothing answers.
async fn plain(base: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// moto's Lambda checks that the execution role exists in its IAM: create it (IAM's query protocol, SigV4).
async fn create_role(moto: &Moto) {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let encoded: String = policy
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let body =
        format!("Action=CreateRole&Version=2010-05-08&RoleName=loader-test-role&AssumeRolePolicyDocument={encoded}");
    let identity = aws_credential_types::Credentials::new("testing", "testing", None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("iam")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let uri = format!("{}/", moto.url);
    let content_type = "application/x-www-form-urlencoded";
    let signable = SignableRequest::new(
        "POST",
        &uri,
        [("content-type", content_type)].into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(&uri)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    instructions.apply_to_request_http1x(&mut request);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "CreateRole: {status} {}", String::from_utf8_lossy(&text));
}

fn credentials() -> AwsCredentials {
    AwsCredentials::new(KEY_ID, SECRET, Some(TOKEN.into()), "test")
}

fn write_zip(dir: &Path) -> PathBuf {
    let binary = dir.join("bootstrap-src");
    std::fs::write(&binary, b"#!/bin/sh\nexit 0\n").unwrap();
    let zip = dir.join("function.zip");
    loader::target::lambda::package::write_zip(&binary, &zip).unwrap();
    zip
}

fn config(endpoint: &str, prefix: &str, zip: &Path) -> LambdaConfig {
    let mut config = LambdaConfig::new(ROLE, zip);
    config.endpoint_url = Some(endpoint.to_string());
    config.function_prefix = prefix.to_string();
    config
}

fn invocation() -> Invocation {
    Invocation::single(5, 128)
}

fn deployment(name: &str) -> FunctionDeployment {
    FunctionDeployment { name: name.into(), requested_memory_mib: 200, ..Default::default() }
}

fn assert_no_secret(text: &str) {
    for secret in [KEY_ID, SECRET, TOKEN] {
        assert!(!text.contains(secret), "a credential leaked into: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_invoke_delete_and_cleanup_against_moto() {
    let moto = start_moto().await;
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path());
    let target = LambdaTarget::with_credentials(config(&moto.url, "lt-a-", &zip), &credentials()).unwrap();
    assert_no_secret(&format!("{target:?}"));

    target.deploy(&[deployment("fn-1"), deployment("odd.name")]).await.unwrap();
    let mut deployed = target.deployed();
    deployed.sort();
    assert_eq!(deployed, vec![function_name("lt-a-", "fn-1"), function_name("lt-a-", "odd.name")]);

    // moto echoes the payload: the request reached the function with the workload parameters.
    let echoed = target.invoke("fn-1", &invocation()).await;
    assert_eq!(echoed.outcome, Outcome::Ok, "{echoed:?}");
    // A canned result shaped like trace-function's reply is parsed like a real one.
    let reply = r#"{"Status":"OK","Function":"fn-1","MachineName":"m","ExecutionTime":5123,"MemoryUsageKb":4096,"ColdStart":true}"#;
    let canned = serde_json::json!({ "results": [reply], "region": "us-east-1" }).to_string();
    assert_eq!(plain(&moto.url, "POST", "/moto-api/static/lambda-simple/response", &canned).await.unwrap().0, 201);
    let parsed = target.invoke("fn-1", &invocation()).await;
    assert_eq!(parsed.outcome, Outcome::Ok);
    assert_eq!(
        (parsed.actual_duration_us, parsed.actual_memory_mib, parsed.cold_start),
        (Some(5123), Some(4), Some(true))
    );

    // moto's Docker-less mode answers Invoke of an unknown function with 200 (see docs/test-cluster.md), so the
    // unknown-function mapping is checked against the local server in the test below.

    target.teardown().await.unwrap();
    assert!(target.deployed().is_empty());
    let left = cleanup_with_credentials(&config(&moto.url, "lt-a-", &zip), &credentials()).await.unwrap();
    assert!(left.is_empty(), "teardown left {left:?}");

    // Leftovers of an "interrupted" run (deployed, never torn down) are found by prefix and deleted; functions with
    // another prefix stay.
    let other = LambdaTarget::with_credentials(config(&moto.url, "lt-keep-", &zip), &credentials()).unwrap();
    other.deploy(&[deployment("fn-keep")]).await.unwrap();
    let interrupted = LambdaTarget::with_credentials(config(&moto.url, "lt-b-", &zip), &credentials()).unwrap();
    let many: Vec<FunctionDeployment> = (0..60).map(|i| deployment(&format!("fn-{i:02}"))).collect();
    interrupted.deploy(&many).await.unwrap();
    drop(interrupted);
    let deleted = cleanup_with_credentials(&config(&moto.url, "lt-b-", &zip), &credentials()).await.unwrap();
    assert_eq!(deleted.len(), 60, "ListFunctions paging (50 per page) must find all: {deleted:?}");
    assert!(deleted.iter().all(|name| name.starts_with("lt-b-")));
    assert!(cleanup_with_credentials(&config(&moto.url, "lt-b-", &zip), &credentials()).await.unwrap().is_empty());
    assert_eq!(
        cleanup_with_credentials(&config(&moto.url, "lt-keep-", &zip), &credentials()).await.unwrap(),
        vec![function_name("lt-keep-", "fn-keep")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_errors_name_the_function_and_leave_nothing() {
    let moto = start_moto().await;
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path());
    let mut bad = config(&moto.url, "lt-c-", &zip);
    bad.role_arn = "arn:aws:iam::123456789012:role/no-such-role".into();
    let target = LambdaTarget::with_credentials(bad, &credentials()).unwrap();
    let err = target.deploy(&[deployment("fn-x")]).await.unwrap_err().to_string();
    assert!(err.contains("fn-x") && err.contains("InvalidParameterValueException"), "{err}");
    assert_no_secret(&err);
    let good = config(&moto.url, "lt-c-", &zip);
    assert!(cleanup_with_credentials(&good, &credentials()).await.unwrap().is_empty());

    let missing = config(&moto.url, "lt-c-", &dir.path().join("absent.zip"));
    let err = LambdaTarget::with_credentials(missing, &credentials()).unwrap_err().to_string();
    assert!(err.contains("absent.zip"), "{err}");
}

/// A whole `loader run` against moto with credentials from the environment: the run folder and the loader's output
/// hold no credential, and teardown leaves no function behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_run_against_moto_keeps_credentials_out_of_every_output() {
    let moto = start_moto().await;
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path());
    let (config_path, output) = write_run_config(dir.path(), &moto, "lt-run-", &zip, "rate: 20, duration: 1s");
    let run = tokio::task::spawn_blocking(move || {
        loader_command(&["run", "--config"], &config_path).env("RUST_LOG", "trace").output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "loader run failed: {stdout}\n{stderr}");
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    let csv = std::fs::read_to_string(output.join("invocations.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let outcome = rows.headers().unwrap().iter().position(|name| name == "outcome").expect("an outcome column");
    for row in rows.records() {
        let row = row.unwrap();
        assert_eq!(row.get(outcome), Some("ok"), "{row:?} in\n{csv}");
    }
    for entry in std::fs::read_dir(&output).unwrap() {
        let path = entry.unwrap().path();
        assert_no_secret(&std::fs::read_to_string(&path).unwrap());
    }
    let manifest = std::fs::read_to_string(output.join("manifest.json")).unwrap();
    assert!(manifest.contains("lt-run-") && manifest.contains("lambda"), "{manifest}");
    let left = cleanup_with_credentials(&config(&moto.url, "lt-run-", &zip), &credentials()).await.unwrap();
    assert!(left.is_empty(), "the run left {left:?}");
}

/// A run config for `loader run` against moto: an rps workload (`rps`: its rate and duration keys) over 2 functions
/// named with `prefix`; returns the config's path and the run folder.
fn write_run_config(dir: &Path, moto: &Moto, prefix: &str, zip: &Path, rps: &str) -> (PathBuf, PathBuf) {
    let output = dir.join("run");
    let config_path = dir.join("run.yaml");
    let text = format!(
        "workload: {{ kind: rps, {rps}, functions: 2 }}\n\
         target: {{ kind: lambda, region: us-east-1, endpoint_url: \"{}\", function_prefix: {prefix}, \
         role_arn: \"{ROLE}\", zip: \"{}\" }}\noutput: {}\n",
        moto.url,
        zip.display(),
        output.display()
    );
    std::fs::write(&config_path, text).unwrap();
    (config_path, output)
}

/// The loader binary with `args` and `config`, credentials in its environment.
fn loader_command(args: &[&str], config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loader"));
    command
        .args(args)
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .stdin(Stdio::null());
    command
}

/// A `loader run` killed with SIGKILL while sending (no teardown ran) leaves its functions on moto; `loader cleanup`
/// with the same config deletes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_cleanup_removes_what_an_interrupted_run_left() {
    let moto = start_moto().await;
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path());
    let (config_path, _) = write_run_config(dir.path(), &moto, "lt-int-", &zip, "rate: 10, duration: 120s");
    let path = config_path.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut run = loader_command(&["run", "--config"], &path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Sending has begun (so every function is deployed) once the first progress line is logged.
        let stderr = std::io::BufReader::new(run.stderr.take().unwrap());
        let sending = stderr.lines().map_while(Result::ok).any(|line| line.contains("completed"));
        run.kill().unwrap();
        run.wait().unwrap();
        assert!(sending, "the loader ended before it logged progress");
    })
    .await
    .unwrap();
    let cleanup = tokio::task::spawn_blocking(move || loader_command(&["cleanup", "--config"], &config_path).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&cleanup.stdout);
    assert!(cleanup.status.success(), "{stdout}{}", String::from_utf8_lossy(&cleanup.stderr));
    assert!(stdout.contains("2 left-over functions deleted") && stdout.contains("lt-int-"), "{stdout}");
    let left = cleanup_with_credentials(&config(&moto.url, "lt-int-", &zip), &credentials()).await.unwrap();
    assert!(left.is_empty(), "cleanup left {left:?}");
}

/// After a throttled call the calls due in the backoff window are not sent: they fail as throttled at once, so the
/// open-loop schedule goes on and every call is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_the_backoff_window_after_throttling_fail_without_being_sent() {
    let (address, seen) = fake_lambda(|path| match path {
        "/2015-03-31/functions/lt-b-busy/invocations" => {
            Some((429, vec![("x-amzn-errortype", "TooManyRequestsException")], r#"{"message":"Rate Exceeded."}"#))
        }
        _ => Some((200, vec![("content-type", "application/json")], r#"{"ExecutionTime": 1000}"#)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(&format!("http://{address}"), "lt-b-", &write_zip(dir.path()));
    // Far longer than the test, so that the window is certainly open for the second call.
    settings.throttle_backoff = Duration::from_secs(600);
    let target = LambdaTarget::with_credentials(settings, &credentials()).unwrap();
    assert!(matches!(target.invoke("busy", &invocation()).await.outcome, Outcome::Status(429, _)));
    match target.invoke("calm", &invocation()).await.outcome {
        Outcome::Status(429, reason) => {
            assert!(reason.contains("not sent") && reason.contains("backing off"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let paths: Vec<String> = seen.lock().unwrap().iter().map(|(_, path, _)| path.clone()).collect();
    assert_eq!(paths, vec!["/2015-03-31/functions/lt-b-busy/invocations".to_string()], "only the first was sent");
}

/// What the local server saw: method, path and headers of each request.
type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>;

/// A canned answer: status, headers, body.
type Canned = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// A local HTTP server playing Lambda for answers moto cannot give: `respond` maps a path to status, headers and
/// body; `None` never answers.
async fn fake_lambda(respond: fn(&str) -> Option<Canned>) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let path = request.uri().path().to_string();
                        log.lock().unwrap().push((
                            request.method().to_string(),
                            path.clone(),
                            request.headers().clone(),
                        ));
                        let Some((status, headers, body)) = respond(&path) else {
                            std::future::pending::<()>().await;
                            unreachable!()
                        };
                        let mut response = http::Response::builder().status(status);
                        for (k, v) in headers {
                            response = response.header(k, v);
                        }
                        Ok::<_, std::convert::Infallible>(response.body(Full::new(Bytes::from(body))).unwrap())
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_throttling_and_timeouts_are_failures_with_their_reason() {
    let (address, seen) = fake_lambda(|path| match path {
        "/2015-03-31/functions/lt-d-broken/invocations" => Some((
            200,
            vec![("x-amz-function-error", "Unhandled"), ("content-type", "application/json")],
            r#"{"errorMessage":"work failed: out of memory","errorType":"Runtime.Error"}"#,
        )),
        "/2015-03-31/functions/lt-d-busy/invocations" => Some((
            429,
            vec![("x-amzn-errortype", "TooManyRequestsException:http://internal.amazon.com/")],
            r#"{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}"#,
        )),
        "/2015-03-31/functions/lt-d-hang/invocations" => None,
        _ => Some((404, vec![("x-amzn-errortype", "ResourceNotFoundException")], r#"{"message":"Function not found"}"#)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let zip = write_zip(dir.path());
    let mut settings = config(&format!("http://{address}"), "lt-d-", &zip);
    settings.request_timeout = Some(Duration::from_millis(300));
    // Every call here is sent; backing off after the throttled one is the next test's.
    settings.throttle_backoff = Duration::ZERO;
    let target = LambdaTarget::with_credentials(settings, &credentials()).unwrap();

    let broken = target.invoke("broken", &invocation()).await;
    match &broken.outcome {
        Outcome::Status(200, reason) => {
            assert!(reason.contains("Unhandled") && reason.contains("out of memory"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let busy = target.invoke("busy", &invocation()).await;
    match &busy.outcome {
        Outcome::Status(429, reason) => assert!(reason.starts_with(THROTTLED), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(target.invoke("hang", &invocation()).await.outcome, Outcome::Timeout);
    let gone = target.invoke("gone", &invocation()).await;
    match &gone.outcome {
        Outcome::Status(404, reason) => assert!(reason.contains("ResourceNotFoundException"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Every request was signed (SigV4, the Lambda service, the configured region, the session token), and a
    // throttled call was not retried.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|(_, path, _)| path.contains("lt-d-busy")).count(), 1);
    for (method, path, headers) in &seen {
        let auth = headers.get("authorization").unwrap_or_else(|| panic!("{method} {path} unsigned")).to_str().unwrap();
        assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/")), "{auth}");
        assert!(auth.contains("/us-east-1/lambda/aws4_request") && auth.contains("Signature="), "{auth}");
        assert!(!auth.contains(SECRET));
        assert!(headers.contains_key("x-amz-date"));
        assert_eq!(headers["x-amz-security-token"], TOKEN);
        assert_eq!(method, "POST");
    }
    for response in [broken, busy, gone] {
        assert_no_secret(&format!("{response:?}"));
    }

    // A control-plane error names the host and the function.
    let err = target.deploy(&[deployment("fn-y")]).await.unwrap_err().to_string();
    assert!(err.contains("fn-y") && err.contains("ResourceNotFoundException"), "{err}");
    let unreachable =
        LambdaTarget::with_credentials(config("http://127.0.0.1:1", "lt-e-", &zip), &credentials()).unwrap();
    let err = unreachable.deploy(&[deployment("fn-z")]).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1") && err.contains("fn-z"), "{err}");
    assert_no_secret(&err);
}
