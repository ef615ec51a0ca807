//! The trivial HTTP target: a hyper HTTP/1.1 server answering every request with 200 and a tiny JSON body, run as a
//! separate process (the bench binary re-executed with [`ROLE_VAR`] set) so that its CPU is accounted apart from the
//! loader's, as a real target's would be. It still shares the machine's cores with the loader and with `wrk`.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::ROLE_VAR;

/// The reply: what a workload function's JSON looks like, trimmed to the fields the HTTP target parses.
const BODY: &[u8] = br#"{"Status":"OK","ExecutionTime":0}"#;

/// The helper role's name.
pub const ROLE: &str = "server";

/// Runs the server (the helper role): prints its address on stdout, serves until stdin closes (the benchmark went).
pub fn serve(threads: usize) -> anyhow::Result<()> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    // The benchmark holds our stdin open; when it exits, even by a crash, the read returns and so do we.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    runtime.block_on(accept_loop())
}

async fn accept_loop() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors under a connection storm: keep serving the connections already open.
                eprintln!("bench server: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(reply)).await;
        });
    }
}

async fn reply(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The running server process; dropping it kills and reaps it.
pub struct ServerProcess {
    child: Child,
    _stdin: ChildStdin,
    address: String,
}

impl ServerProcess {
    /// Starts the server as a child process and waits for its address line.
    pub fn start(threads: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the bench executable")?;
        let mut child = Command::new(exe)
            .env(ROLE_VAR, ROLE)
            .env("BENCH_SERVER_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the target server")?;
        let stdin = child.stdin.take().context("the server's stdin")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the server's address")?;
        let address = line.trim().to_owned();
        let server = Self { child, _stdin: stdin, address };
        anyhow::ensure!(!server.address.is_empty(), "the target server exited before printing its address");
        Ok(server)
    }

    /// `host:port` it listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Its process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
