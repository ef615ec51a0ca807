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
    run_loader_with(config, &[])
}

fn run_loader_with(config: &Path, flags: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loader"));
    command.args(["run", "--config"]).arg(config).args(flags).output().expect("run loader")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rps_run_with_command_line_overrides() {
    let address = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rps.yaml");
    std::fs::write(
        &config,
        format!(
            "workload: {{ kind: rps, rate: 1000, duration: 1h, warmup: 200ms, functions: 3, runtime_ms: 2 }}\n\
             target: {{ kind: http, url: \"http://{address}/function/{{function}}\" }}\noutput: unused\n"
        ),
    )
    .unwrap();
    let output = dir.path().join("run");
    let run = tokio::task::spawn_blocking({
        let (config, output) = (config.clone(), output.to_str().unwrap().to_owned());
        move || run_loader_with(&config, &["--rate", "200", "--duration", "1s", "--seed", "9", "--output", &output])
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // 1.2 s at 200/s: 40 warm-up and 200 measured invocations over rps-0..rps-2, each with its own CSV row.
    let csv = std::fs::read_to_string(output.join("invocations.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 240);
    for name in ["rps-0", "rps-1", "rps-2"] {
        assert_eq!(rows.iter().filter(|r| r.contains(&format!(",{name},"))).count(), 80, "{name}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["overall"]["counts"]["measured"], 200);
    assert_eq!(summary["overall"]["counts"]["warmup"], 40);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 9);
    assert_eq!(manifest["config"]["workload"]["rate"], 200.0);
    assert!(manifest["traceChecksum"].is_null());

    let wrong = run_loader_with(&config, &["--rate", "0"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("workload.rate"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

#[test]
fn rate_flags_on_a_trace_replay_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trace.yaml");
    std::fs::write(&config, "target: { kind: http, url: \"http://127.0.0.1:9/\" }\n").unwrap();
    let run = run_loader_with(&config, &["--rate", "10"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--rate"), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn package_lambda_writes_the_same_zip_twice_and_names_a_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("trace-function");
    std::fs::write(&binary, b"\x7fELF not really").unwrap();
    let package = |out: &str| {
        Command::new(env!("CARGO_BIN_EXE_loader"))
            .args(["package-lambda", "--binary"])
            .arg(&binary)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap()
    };
    for out in ["a.zip", "b.zip"] {
        let output = package(out);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let (a, b) = (std::fs::read(dir.path().join("a.zip")).unwrap(), std::fs::read(dir.path().join("b.zip")).unwrap());
    assert_eq!(a, b, "the zip is reproducible");
    assert!(a.windows(9).any(|w| w == b"bootstrap"), "the entry is named bootstrap");
    std::fs::remove_file(&binary).unwrap();
    let output = package("c.zip");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("trace-function"), "the error names the binary");
}
