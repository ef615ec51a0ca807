//! Runs the real `trace-function` binary on a loopback port and talks HTTP/1.1, h2c and gRPC to it.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use contracts::workload::{self, ErrorReply, FunctionReply};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orchestrator::proto::faas::FaasRequest;
use orchestrator::proto::faas::executor_client::ExecutorClient;
use reqwest::{Client, StatusCode, Version};

/// Readiness and exit polls: attempts × interval bounds the wait on a loaded machine.
const POLL_ATTEMPTS: u32 = 1000;
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running `trace-function`; killed when dropped, so a failing test leaves no process behind.
struct FunctionProcess {
    child: Child,
    port: u16,
}

impl FunctionProcess {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_trace-function"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start trace-function");
        let mut process = Self { child, port };
        process.wait_ready().await;
        process
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_ready(&mut self) {
        let client = http1();
        for _ in 0..POLL_ATTEMPTS {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                panic!("trace-function exited before becoming ready: {status}");
            }
            if let Ok(response) = client.get(self.url(workload::HEALTH_PATH)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!("trace-function on port {} never became ready", self.port);
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// CPU time (user + system, in clock ticks) the process has used, from `/proc/<pid>/stat`.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("read stat");
        // Fields after the parenthesised command name start at field 3; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    /// Waits until the process has burnt `ticks` of CPU: proof that an invocation is spinning.
    async fn wait_cpu_ticks(&self, ticks: u64) {
        for _ in 0..POLL_ATTEMPTS {
            if self.cpu_ticks() >= ticks {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!("trace-function never used {ticks} ticks of CPU");
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        for _ in 0..POLL_ATTEMPTS {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return status;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!("trace-function did not exit");
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (bind to port 0, read it back, release it).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local address").port()
}

fn http1() -> Client {
    Client::builder().http1_only().no_proxy().build().expect("HTTP/1.1 client")
}

fn h2c() -> Client {
    Client::builder().http2_prior_knowledge().no_proxy().build().expect("h2c client")
}

/// Posts an invocation to `/` with the loader's headers.
async fn invoke(client: &Client, function: &FunctionProcess, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client.post(function.url("/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("send invocation")
}

#[tokio::test]
async fn http1_invocation_spins_holds_memory_and_reports_cold_start_once() {
    let function = FunctionProcess::start().await;
    let client = http1();
    let headers = [
        (workload::WORKLOAD, "trace"),
        (workload::FUNCTION, "fn-http1"),
        (workload::REQUESTED_CPU, "50"),
        (workload::REQUESTED_MEMORY, "8"),
        (workload::MULTIPLIER, "155"),
    ];

    let response = invoke(&client, &function, &headers).await;
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::OK);
    let first: FunctionReply = response.json().await.expect("JSON reply");
    assert_eq!(first.status, workload::STATUS_OK);
    assert_eq!(first.function, "fn-http1");
    assert!(!first.machine_name.is_empty());
    assert!(first.execution_time >= 50_000, "{first:?}");
    assert_eq!((first.requested_cpu_ms, first.requested_memory_mib), (50, 8));
    assert_eq!(first.memory_usage_kb, 8 * 1024);
    assert_eq!(first.multiplier, 155);
    assert!(first.cold_start);

    let second: FunctionReply = invoke(&client, &function, &headers).await.json().await.expect("JSON reply");
    assert!(second.execution_time >= 50_000, "{second:?}");
    assert!(!second.cold_start);
}

#[tokio::test]
async fn h2c_invocation_with_query_parameters_where_headers_win() {
    let function = FunctionProcess::start().await;
    let url = function.url("/?function=fn-h2c&requested_cpu=1&requested_memory=2");
    let response = h2c().get(url).header(workload::REQUESTED_CPU, "30").send().await.expect("send");
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let reply: FunctionReply = response.json().await.expect("JSON reply");
    assert_eq!(reply.function, "fn-h2c");
    assert_eq!((reply.requested_cpu_ms, reply.requested_memory_mib), (30, 2));
    assert!(reply.execution_time >= 30_000, "{reply:?}");
    assert!(reply.cold_start);
}

#[tokio::test]
async fn grpc_execute_spins_and_reports_memory() {
    let function = FunctionProcess::start().await;
    let mut client = ExecutorClient::connect(function.url("")).await.expect("gRPC connect");
    let request = FaasRequest { message: "fn-grpc".into(), runtime_in_milli_sec: 20, memory_in_mebi_bytes: 4 };
    let reply = client.execute(request).await.expect("Execute").into_inner();
    assert!(reply.message.starts_with("OK - fn-grpc"), "{reply:?}");
    assert!(reply.duration_in_micro_sec >= 20_000, "{reply:?}");
    assert_eq!(reply.memory_usage_in_kb, 4 * 1024);

    let too_much = FaasRequest { memory_in_mebi_bytes: u32::MAX, ..FaasRequest::default() };
    let status = client.execute(too_much).await.expect_err("out of range");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains(workload::REQUESTED_MEMORY), "{status:?}");
}

#[tokio::test]
async fn bad_parameters_get_400_with_json_naming_them() {
    let function = FunctionProcess::start().await;
    let client = http1();
    for (name, value) in [
        (workload::REQUESTED_CPU, "abc"),
        (workload::REQUESTED_MEMORY, "-1"),
        (workload::MULTIPLIER, "x1"),
        (workload::WORKLOAD, "nonsense"),
        (workload::REQUESTED_CPU, "100000000"),
    ] {
        let response = invoke(&client, &function, &[(name, value)]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}: {value}");
        let error: ErrorReply = response.json().await.expect("JSON error");
        assert!(error.error.contains(name) && error.error.contains(value), "{error:?}");
    }
    let reply: FunctionReply = invoke(&client, &function, &[]).await.json().await.expect("JSON reply");
    assert!(reply.cold_start, "rejected requests are not the first invocation");
}

#[tokio::test]
async fn empty_workload_does_no_work() {
    let function = FunctionProcess::start().await;
    let headers = [(workload::WORKLOAD, "empty"), (workload::FUNCTION, "fn-empty"), (workload::REQUESTED_CPU, "60000")];
    let response = invoke(&http1(), &function, &headers).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reply: FunctionReply = response.json().await.expect("JSON reply");
    assert_eq!(reply.status, workload::STATUS_OK_EMPTY);
    assert!(reply.is_ok());
    assert_eq!((reply.function.as_str(), reply.execution_time), ("fn-empty", 0));
    assert_eq!(reply.requested_cpu_ms, 60_000);
}

#[tokio::test]
async fn health_answers_while_an_invocation_spins_and_sigterm_exits_cleanly() {
    let mut function = FunctionProcess::start().await;
    let client = h2c();
    let spinning = tokio::spawn({
        let request = client.post(function.url("/")).header(workload::REQUESTED_CPU, "4000");
        async move { request.send().await.expect("send").json::<FunctionReply>().await.expect("JSON reply") }
    });
    function.wait_cpu_ticks(20).await;
    let health = client.get(function.url(workload::HEALTH_PATH)).send().await.expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!spinning.is_finished(), "the health probe waited for the spin");

    kill(function.pid(), Signal::SIGTERM).expect("send SIGTERM");
    let reply = spinning.await.expect("invocation task");
    assert!(reply.execution_time >= 4_000_000, "in-flight invocation was cut short: {reply:?}");
    let status = function.wait_exit().await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn any_path_and_method_is_an_invocation() {
    let function = FunctionProcess::start().await;
    let client = http1();
    for request in
        [client.get(function.url("/")), client.put(function.url("/some/path")), client.post(function.url("/health"))]
    {
        let response = request.header(workload::WORKLOAD, "empty").send().await.expect("send");
        assert_eq!(response.status(), StatusCode::OK);
        let reply: FunctionReply = response.json().await.expect("JSON reply");
        assert_eq!(reply.status, workload::STATUS_OK_EMPTY);
    }
}

#[tokio::test]
async fn http1_connection_is_reused_after_a_request_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

    let function = FunctionProcess::start().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", function.port)).await.expect("connect");
    let mut stream = BufReader::new(stream);
    let payload = vec![b'x'; 256 * 1024];
    for round in 0..2 {
        let head =
            format!("POST / HTTP/1.1\r\nHost: f\r\nworkload: empty\r\ncontent-length: {}\r\n\r\n", payload.len());
        stream.get_mut().write_all(head.as_bytes()).await.expect("write head");
        stream.get_mut().write_all(&payload).await.expect("write body");
        let (status, body) = read_response(&mut stream).await;
        assert!(status.starts_with("HTTP/1.1 200"), "round {round}: {status}");
        let reply: FunctionReply = serde_json::from_slice(&body).expect("JSON reply");
        assert_eq!(reply.status, workload::STATUS_OK_EMPTY);
    }

    /// Reads one response with a `content-length` body; returns its status line and body.
    async fn read_response(stream: &mut BufReader<tokio::net::TcpStream>) -> (String, Vec<u8>) {
        use tokio::io::AsyncBufReadExt;
        let (mut status, mut length) = (String::new(), 0);
        stream.read_line(&mut status).await.expect("status line");
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.expect("header line");
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}
