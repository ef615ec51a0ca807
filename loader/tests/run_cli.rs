//! `loader run` end to end against a local HTTP server: the three run files, and no overwriting.

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A function stand-in: replies at once with the execution time the request asked for.
async fn start_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let cpu: u64 = request
                        .headers()
                        .get("requested_cpu")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let body = format!(r#"{{"Status":"OK","ExecutionTime":{},"MemoryUsageKb":1024}}"#, cpu * 1000);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    address
}

fn run_loader(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loader")).args(["run", "--config"]).arg(config).output().expect("run loader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_the_three_files_and_never_overwrites_one() {
    let address = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/azure-100");
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "trace: {}\nslice: {{ start_minute: 600, minutes: 2, functions: 5 }}\nschedule: {{ compression: 60 }}\n\
             warmup_minutes: 1\ntarget: {{ kind: http, url: \"http://{address}/function/{{function}}\" }}\n\
             output: {}\n",
            trace.display(),
            output.display()
        ),
    )
    .unwrap();
    let first = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run_loader(&config)
    })
    .await
    .unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    let csv = std::fs::read_to_string(output.join("invocations.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.contains(",ok,")), "every invocation succeeded");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap()).unwrap();
    let counts = &summary["overall"]["counts"];
    let recorded = counts["measured"].as_u64().unwrap() + counts["warmup"].as_u64().unwrap();
    assert_eq!(recorded, rows.len() as u64, "the summary counts every row");
    assert!(counts["warmup"].as_u64().unwrap() > 0, "the first minute is warm-up");
    assert!(summary["trustworthy"].is_boolean());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 42);
    assert_eq!(manifest["traceChecksum"].as_str().unwrap().len(), 16);

    let again = tokio::task::spawn_blocking(move || run_loader(&config)).await.unwrap();
    assert!(!again.status.success(), "a second run into the same folder is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(output.join("invocations.csv")).unwrap(), csv, "nothing measured is lost");
}
