//! `experiments run` end to end: real `dirigent` role processes on loopback, the loader in-process, the results
//! folder checked afterwards. Needs the orchestrator's binaries in the same target folder (`cargo test --workspace`
//! builds them).

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{experiments, read_json};

/// `target/<profile>`, where `dirigent` and `trace-function` are.
fn bin_dir() -> PathBuf {
    support::bin_dir(&["dirigent", "trace-function"])
}

fn write_spec(dir: &Path, platform: &str, load: &str, sweep: &str) -> PathBuf {
    let spec = dir.join("spec.yaml");
    let text = format!(
        "name: tiny\noutput: {}\nplatform: {{ kind: dirigent, bin_dir: {}, {platform} }}\nload: {load}\n{sweep}",
        dir.join("results").display(),
        bin_dir().display()
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// The one execution folder under `results/`.
fn execution(dir: &Path) -> PathBuf {
    let mut folders: Vec<_> = std::fs::read_dir(dir.join("results")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders.pop().unwrap()
}

#[test]
fn a_tiny_experiment_leaves_a_complete_results_folder() {
    let dir = tempfile::tempdir().unwrap();
    let load = "{ workload: { kind: rps, rate: 20, duration: 2s, warmup: 500ms, functions: 2, runtime_ms: 2 } }";
    let spec = write_spec(dir.path(), "workers: 2", load, "");
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));

    let folder = execution(dir.path());
    let record = read_json(&folder.join("experiment.json"));
    assert_eq!(record["runs"].as_array().unwrap().len(), 1);
    let entry = &record["runs"][0];
    assert_eq!(entry["sent"], 50);
    assert_eq!(entry["ok"], 50, "{entry}");
    assert_eq!(entry["platformStop"]["survivingSandboxes"], serde_json::json!([]));
    assert!(record["gitCommit"].is_string() && record["host"]["nproc"].as_u64().unwrap() >= 1);
    let run_dir = folder.join("run");
    for file in ["invocations.csv", "summary.json", "manifest.json"] {
        assert!(run_dir.join(file).is_file(), "{file}");
    }
    for role in ["control-plane", "data-plane", "worker-0", "worker-1"] {
        assert!(run_dir.join("platform").join(format!("{role}.log")).is_file(), "{role}");
        assert!(run_dir.join("platform").join(format!("{role}.yaml")).is_file(), "{role}");
    }
    let manifest = read_json(&run_dir.join("manifest.json"));
    assert_eq!(manifest["config"]["workload"]["rate"], 20.0);
    for file in ["report.md", "report.json", "scheduling-latency-cdf.png", "timeline.svg"] {
        assert!(run_dir.join(file).is_file(), "{file}");
    }
    assert_eq!(read_json(&run_dir.join("report.json"))["counts"]["ok"], 40, "the 500 ms warm-up is excluded");
}

#[test]
fn a_sweep_runs_once_per_rate_on_a_fresh_platform() {
    let dir = tempfile::tempdir().unwrap();
    let load = "{ workload: { kind: cold-starts, rate: 1, cooldown: 2s, duration: 2s, runtime_ms: 2 } }";
    let spec = write_spec(dir.path(), "processes: standalone, workers: 1", load, "sweep: { rates: [1, 2] }\n");
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let folder = execution(dir.path());
    let record = read_json(&folder.join("experiment.json"));
    let sent: Vec<u64> = record["runs"].as_array().unwrap().iter().map(|r| r["sent"].as_u64().unwrap()).collect();
    assert_eq!(sent, vec![2, 4], "2 s at 1 and at 2 cold starts per second");
    assert!(folder.join("rate-1/invocations.csv").is_file() && folder.join("rate-2/invocations.csv").is_file());
    assert!(folder.join("rate-2/platform/standalone.log").is_file());
    assert!(folder.join("sweep/sweep.png").is_file() && folder.join("sweep/sweep.md").is_file());
    let sweep = read_json(&folder.join("sweep/sweep.json"));
    assert_eq!(sweep.as_array().unwrap().len(), 2, "{sweep}");
}

#[test]
fn an_invalid_spec_fails_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let rps = "{ workload: { kind: rps, rate: 1 } }";
    let spec = write_spec(dir.path(), "workers: 1, control_plane: { autoscaler: { tick: 0s } }", rps, "");
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("platform.control_plane") && stderr.contains("tick"), "{stderr}");
    assert!(!dir.path().join("results").exists(), "nothing was started or written");
    let spec = write_spec(dir.path(), "workers: 1", "{ trace: /nonexistent/trace }", "");
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("/nonexistent/trace"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!dir.path().join("results").exists(), "nothing was started or written");
    let spec = dir.path().join("bad.yaml");
    std::fs::write(&spec, "name: x\nplatform: { kind: dirigent }\nload: { slice: { minutes: 0 } }\n").unwrap();
    let run = experiments(&["validate", spec.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("slice.minutes"));
}

#[test]
fn ctrl_c_tears_everything_down_and_keeps_what_was_measured() {
    let dir = tempfile::tempdir().unwrap();
    let load = "{ workload: { kind: rps, rate: 20, duration: 10m, functions: 2, runtime_ms: 2 } }";
    let spec = write_spec(dir.path(), "workers: 1", load, "");
    let mut run = Background::start(&spec, dir.path());
    // Interrupt once invocations are being recorded (the CSV has rows beyond its header).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = std::fs::read_dir(dir.path().join("results"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.unwrap().path().join("run/invocations.csv")).ok())
            .map_or(0, |csv| csv.lines().count());
        if rows > 5 {
            break;
        }
        assert!(run.running(), "experiments exited before recording invocations: {}", run.output());
        assert!(Instant::now() < deadline, "no invocations recorded within a minute: {}", run.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    run.interrupt().unwrap();
    // Bounded so that a run that ignores ctrl-c fails the test instead of hanging it; stopping takes seconds.
    let status = run.wait(Duration::from_secs(120));
    let status = status.unwrap_or_else(|| panic!("experiments still runs 2 minutes after ctrl-c: {}", run.output()));
    assert!(!status.success(), "an interrupted experiment is not a success");
    let folder = execution(dir.path());
    let record = read_json(&folder.join("experiment.json"));
    assert_eq!(record["interrupted"], true);
    assert_eq!(record["runs"][0]["platformStop"]["survivingSandboxes"], serde_json::json!([]));
    let summary = read_json(&folder.join("run/summary.json"));
    assert!(summary["overall"]["counts"]["measured"].as_u64().unwrap() > 0);
}

#[test]
fn a_worker_killed_mid_run_is_an_event_in_the_manifest_and_on_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let load = "{ workload: { kind: rps, rate: 20, duration: 3s, functions: 2, runtime_ms: 2 } }";
    let failures =
        "failures: [ { at: 1s, kill: worker-1, restart_after: 1s } ]\nanalysis: { options: { window: 1s } }\n";
    let spec = write_spec(dir.path(), "workers: 2", load, failures);
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));

    let run_dir = execution(dir.path()).join("run");
    let manifest = read_json(&run_dir.join("manifest.json"));
    let events = manifest["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["kill", "restart"], "{events:?}");
    assert!(events.iter().all(|e| e["component"] == "worker-1" && e["unixUs"].is_i64()), "{events:?}");
    assert!(run_dir.join("platform/worker-1.1.log").is_file(), "the restarted worker logs on its own");
    let svg = std::fs::read_to_string(run_dir.join("timeline.svg")).unwrap();
    assert!(svg.contains("kill worker-1") && svg.contains("restart worker-1"), "the timeline marks both");

    let bad = write_spec(dir.path(), "workers: 2", load, "failures: [ { at: 1s, kill: worker-7 } ]\n");
    let run = experiments(&["run", bad.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("failures[0].kill") && stderr.contains("worker-7") && stderr.contains("worker-1"),
        "{stderr}"
    );
}

#[test]
fn a_restarted_data_plane_serves_on_its_old_address() {
    let dir = tempfile::tempdir().unwrap();
    let load = "{ workload: { kind: rps, rate: 20, duration: 5s, functions: 2, runtime_ms: 2 } }";
    let spec =
        write_spec(dir.path(), "workers: 1", load, "failures: [ { at: 1s, kill: data-plane, restart_after: 1s } ]\n");
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));

    let run_dir = execution(dir.path()).join("run");
    let events = read_json(&run_dir.join("manifest.json"))["events"].clone();
    let at = |kind: &str| events.as_array().unwrap().iter().find(|e| e["kind"] == kind).unwrap()["unixUs"].as_i64();
    let (killed, restarted) = (at("kill").unwrap(), at("restart").unwrap());
    let first = read_json(&run_dir.join("platform/data-plane.yaml"));
    let again = read_json(&run_dir.join("platform/data-plane.1.yaml"));
    assert_eq!(first["proxy_listen"], "127.0.0.1:0");
    assert_ne!(again["proxy_listen"], first["proxy_listen"], "the restart binds the announced address");

    // Requests fail while the data plane is down; once it has re-registered every one succeeds on the address the
    // loader knew.
    support::assert_outage_and_recovery(&run_dir, killed, restarted);
}

#[test]
fn a_restarted_control_plane_keeps_its_functions_and_nothing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let load = "{ workload: { kind: rps, rate: 20, duration: 5s, functions: 2, runtime_ms: 2 } }";
    let failures = "failures: [ { at: 1s, kill: control-plane, restart_after: 1s } ]\n";
    let spec = write_spec(dir.path(), "workers: 1", load, failures);
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));

    let run_dir = execution(dir.path()).join("run");
    let kinds: Vec<String> = read_json(&run_dir.join("manifest.json"))["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["kill", "restart"]);
    // The data plane serves the warm sandboxes while the control plane is down, and the restarted one loads the
    // functions from its store (in its working folder) and adopts their sandboxes: no invocation fails.
    let rows = support::outcomes(&run_dir);
    assert!(rows.len() > 50, "{rows:?}");
    let failed: Vec<_> = rows.iter().filter(|(_, outcome)| outcome != "ok").collect();
    assert!(failed.is_empty(), "invocations failed around the control plane's restart: {failed:?}");
}

#[test]
fn three_replicas_lose_their_leader_and_cold_starts_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // Every invocation a cold start (each function is called once), so each one after the kill needs the new
    // leader to place a sandbox.
    // Failure times count from the loader's start, deploying included: 4 s leaves time for the 36 registrations
    // even when other tests share the machine, so the kill falls inside the load.
    let load = "{ workload: { kind: cold-starts, rate: 4, cooldown: 9s, duration: 8s, runtime_ms: 2 } }";
    let failures = "failures: [ { at: 4s, kill: control-plane-leader, restart_after: 1s } ]\n\
                    analysis: { options: { window: 1s } }\n";
    let spec = write_spec(dir.path(), "workers: 2, replicas: 3", load, failures);
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));

    let run_dir = execution(dir.path()).join("run");
    let events = read_json(&run_dir.join("manifest.json"))["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["kill", "restart"], "{events:?}");
    let leader = events[0]["component"].as_str().unwrap().to_owned();
    assert!(leader.starts_with("control-plane"), "the leader is a replica by its name: {events:?}");
    assert_eq!(events[0]["detail"], "SIGKILL (the leader)");
    assert_eq!(events[1]["component"], leader.as_str(), "the restart brings back the replica killed");
    for replica in ["control-plane", "control-plane-1", "control-plane-2"] {
        let config = read_json(&run_dir.join(format!("platform/{replica}.yaml")));
        assert_eq!(config["replication"]["peers"].as_object().unwrap().len(), 3, "{replica}");
    }
    // Queued cold starts wait for the new leader (well within the data plane's queue_timeout): none fails.
    let rows = support::outcomes(&run_dir);
    assert_eq!(rows.len(), 32, "{rows:?}");
    let failed: Vec<_> = rows.iter().filter(|(_, outcome)| outcome != "ok").collect();
    assert!(failed.is_empty(), "cold starts failed around the leader's kill: {failed:?}");
    let svg = std::fs::read_to_string(run_dir.join("timeline.svg")).unwrap();
    assert!(svg.contains(&format!("kill {leader}")), "the timeline marks the kill");
    let report = read_json(&run_dir.join("report.json"));
    let recovery = &report["recovery"][0];
    assert_eq!((recovery["component"].as_str(), recovery["failed"].as_u64()), (Some(leader.as_str()), Some(0)));
    assert!(recovery["firstColdOkS"].as_f64().is_some(), "a cold start was served after the kill: {recovery}");
    let markdown = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(markdown.contains("## Recovery"), "{markdown}");
}

/// `experiments run` in the background, its stdout and stderr in files next to the spec (a pipe nobody reads could
/// fill and stall it). Dropped while it runs (a failed assertion), it is interrupted like a user would, so it stops
/// its `dirigent` processes, and killed if that takes over a minute; the kernel kills it should the test's thread
/// end without dropping it.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn start(spec: &Path, dir: &Path) -> Background {
        let (stdout, stderr) = (dir.join("experiments.stdout"), dir.join("experiments.stderr"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_experiments"));
        command
            .args(["run", spec.to_str().unwrap()])
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap());
        let child = support::die_with_test(&mut command).spawn().unwrap();
        Background { child, stdout, stderr }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGINT (ctrl-c).
    fn interrupt(&self) -> nix::Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT)
    }

    /// Its exit status once it has exited, or `None` if it still runs after `limit`. Never panics (`Drop` uses it).
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it printed so far, for failure messages.
    fn output(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!("\nstdout:\n{}\nstderr:\n{}", read(&self.stdout), read(&self.stderr))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // Panicking here would abort the test binary: errors are ignored, the kill below is the fallback.
        let _ = self.interrupt();
        if self.wait(Duration::from_secs(60)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `trace-function` on a loopback port of its own, killed when dropped (by the kernel when the test's thread ends
/// without dropping it).
struct Function {
    process: std::process::Child,
    port: u16,
}

impl Function {
    fn start() -> Function {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(bin_dir().join("trace-function"));
        command.env("HOST", "127.0.0.1").env("PORT", port.to_string()).stderr(Stdio::null());
        let process = support::die_with_test(&mut command).spawn().unwrap();
        let function = Function { process, port };
        // Ready once it accepts connections (polled every 25 ms for up to 10 s).
        let ready = (0..400).any(|_| {
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !listening {
                std::thread::sleep(Duration::from_millis(25));
            }
            listening
        });
        assert!(ready, "trace-function did not listen on {port}");
        function
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn a_platform_the_runner_does_not_start_is_reached_through_its_loader_target() {
    let function = Function::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let text = format!(
        "name: external\noutput: {}\nplatform: {{ kind: http, url: 'http://127.0.0.1:{}/{{function}}' }}\n\
         load: {{ workload: {{ kind: rps, rate: 20, duration: 2s, functions: 2, runtime_ms: 2 }} }}\n",
        dir.path().join("results").display(),
        function.port
    );
    std::fs::write(&spec, text).unwrap();
    let run = experiments(&["run", spec.to_str().unwrap()]);
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let record = read_json(&execution(dir.path()).join("experiment.json"));
    let entry = &record["runs"][0];
    assert_eq!((entry["sent"].as_u64(), entry["ok"].as_u64()), (Some(40), Some(40)), "{entry}");
    assert!(record["binaries"].is_null(), "nothing was started");
    let manifest = read_json(&execution(dir.path()).join("run/manifest.json"));
    assert_eq!(manifest["config"]["target"]["kind"], "http");
}
