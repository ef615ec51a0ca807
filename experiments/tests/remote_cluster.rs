//! `experiments run` on a cluster of namespace hosts, each with its own sshd (`scripts/test-cluster.sh`): the loader,
//! the control plane, the data plane and two workers each on a host of their own, a compressed trace, a worker and
//! the data plane killed and restarted mid-run; results collected and analysed locally; nothing left on the hosts.
//! Then three control-plane replicas whose leader is killed and restarted mid-run. Then the bad cases: unreachable host, wrong key, unknown host key and a role that cannot start (that one
//! authenticating through an ssh-agent). Needs root (`--ignored`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Cluster, experiments, read_json};

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../loader/traces/azure-100")
}

/// A spec for `cluster`'s hosts in the paper's placement (node0 loader, node1 control plane, node2 data plane, the
/// rest workers), with `extra` appended at the top level and `worker` as the worker section.
/// `key`: the key file for every host; `None`: the ssh-agent.
/// The spec is named after `dir`'s test, so that tests running at once find only their own processes.
fn write_spec(dir: &Path, nodes: &str, known_hosts: &Path, key: Option<&Path>, extra: &str) -> PathBuf {
    write_spec_for(dir, &format!("nodes: '{nodes}'"), known_hosts, key, extra)
}

/// [`write_spec`] with `inventory` (the keys of an inline inventory, e.g. `hosts: [...]`) instead of a node list.
fn write_spec_for(dir: &Path, inventory: &str, known_hosts: &Path, key: Option<&Path>, extra: &str) -> PathBuf {
    let spec = dir.join("spec.yaml");
    let text = format!(
        "name: {name}\noutput: {results}\n\
         platform: {{ kind: dirigent, bin_dir: {bins}, nice: 0, start_timeout: 20s,\n  \
           control_plane: {{ autoscaler: {{ stable_window: 4s, panic_window: 2s, tick: 500ms }} }} }}\n\
         cluster:\n  known_hosts: {known_hosts}\n  inventory: {{ {inventory}{key} }}\n\
         load:\n  trace: {trace}\n  slice: {{ start_minute: 600, minutes: 3, functions: 30 }}\n  \
           schedule: {{ seed: 7, compression: 6, duration_bounds_ms: [1, 10], memory_bounds_mib: [1, 8] }}\n  \
           driver: {{ request_timeout: 10s, drain_timeout: 5s }}\n\
         analysis: {{ options: {{ window: 2s }} }}\n{extra}",
        name = spec_name(dir),
        results = dir.join("results").display(),
        bins = support::bin_dir(&["dirigent", "trace-function", "loader"]).display(),
        known_hosts = known_hosts.display(),
        key = key.map(|key| format!(", key_file: {}", key.display())).unwrap_or_default(),
        trace = trace().display(),
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// A name of its own per test folder: `remote-<folder>`, with only the characters a spec name allows.
fn spec_name(dir: &Path) -> String {
    let folder = dir.file_name().unwrap().to_string_lossy();
    format!("remote-{}", folder.chars().filter(char::is_ascii_alphanumeric).collect::<String>())
}

/// Processes of the run of `dir`'s spec still alive on this machine (the namespace hosts share its process table):
/// every process the runner starts carries `FAAS_TOOLKIT_RUN=<spec name>-...` in its environment.
fn processes_of_run(dir: &Path) -> Vec<support::ProcessInfo> {
    let marker = format!("FAAS_TOOLKIT_RUN={}-", spec_name(dir));
    support::processes_where(|process| process.environ.contains(&marker))
}

/// `experiments run SPEC`, which must succeed with its one run free of errors and surviving sandboxes; returns the
/// execution folder under `dir/results` and its `experiment.json`.
fn run_cleanly(spec: &Path, dir: &Path) -> (PathBuf, serde_json::Value) {
    let output = experiments(&["run", spec.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "experiments run failed: {stdout}");
    let folder = std::fs::read_dir(dir.join("results")).unwrap().next().unwrap().unwrap().path();
    let record = read_json(&folder.join("experiment.json"));
    let run = &record["runs"][0];
    assert!(run["error"].is_null(), "{run}");
    assert_eq!(run["platformStop"]["survivingSandboxes"], serde_json::json!([]), "{run}");
    (folder, record)
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it as root with --ignored"]
fn three_control_planes_on_namespace_hosts_lose_their_leader_and_nothing_fails() {
    let mut cluster = Cluster::up(5);
    let dir = cluster.scratch.path().to_owned();
    let (known_hosts, key) = (cluster.dir.join("known_hosts"), cluster.dir.join("id_ed25519"));
    let hosts: Vec<String> = cluster.node_list().split(' ').map(|d| d.rsplit_once('@').unwrap().1.to_owned()).collect();
    let roles = ["[loader]", "[control-plane]", "[control-plane, data-plane]", "[control-plane, worker]", "[worker]"];
    let listed: Vec<String> = hosts.iter().zip(roles).map(|(h, r)| format!("{{ address: {h}, roles: {r} }}")).collect();
    let inventory = format!("user: root, hosts: [ {} ]", listed.join(", "));
    let failure = "failures: [ { at: 8s, kill: control-plane-leader, restart_after: 3s } ]\n";
    let spec = write_spec_for(&dir, &inventory, &known_hosts, Some(&key), failure);
    let (folder, _) = run_cleanly(&spec, &dir);
    let run_dir = folder.join("run");
    let events = read_json(&run_dir.join("manifest.json"))["events"].clone();
    assert_eq!(events[0]["detail"], "SIGKILL (the leader)", "{events}");
    let leader = events[0]["component"].as_str().unwrap();
    assert!(leader.starts_with("control-plane") && events[1]["component"] == leader, "{events}");
    // Every replica on its own host, at the default gRPC port, each told the others' addresses.
    let config = read_json(&run_dir.join("platform/control-plane-2.yaml"));
    assert_eq!(config["grpc_listen"], format!("{}:9090", hosts[3]), "{config}");
    assert_eq!(config["replication"]["peers"].as_object().unwrap().len(), 3, "{config}");
    // Warm requests go on through the data plane and cold starts wait for the new leader: none fails.
    let rows = support::outcomes(&run_dir);
    assert!(rows.len() > 20, "{rows:?}");
    let failed: Vec<_> = rows.iter().filter(|(_, outcome)| outcome != "ok").collect();
    assert!(failed.is_empty(), "invocations failed around the leader's kill: {failed:?}");
    let report = read_json(&run_dir.join("report.json"));
    assert_eq!(report["recovery"][0]["component"], leader, "{}", report["recovery"]);
    let left = processes_of_run(&dir);
    assert!(left.is_empty(), "processes of the run left: {left:?}");
    cluster.down_and_check();
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it as root with --ignored"]
fn an_experiment_runs_on_namespace_hosts_with_a_worker_and_the_data_plane_killed_and_restarted() {
    let mut cluster = Cluster::up(5);
    let dir = cluster.scratch.path().to_owned();
    let (known_hosts, key) = (cluster.dir.join("known_hosts"), cluster.dir.join("id_ed25519"));
    let failure = "failures: [ { at: 8s, kill: worker-1, restart_after: 4s }, \
                   { at: 16s, kill: data-plane, restart_after: 2s } ]\n";
    let spec = write_spec(&dir, &cluster.node_list(), &known_hosts, Some(&key), failure);
    let (folder, record) = run_cleanly(&spec, &dir);
    let run = &record["runs"][0];
    assert_eq!(run["platformStop"]["unclean"], serde_json::json!([]), "{run}");
    assert!(run["sent"].as_u64().unwrap() > 20, "{run}");
    assert_eq!(record["clusterHosts"].as_array().unwrap().len(), 5);

    // The loader ran on node0: its host facts are that host's, and the kill and restart are in its manifest.
    let run_dir = folder.join("run");
    let manifest = read_json(&run_dir.join("manifest.json"));
    assert_eq!(manifest["host"]["hostname"], "h1", "the loader ran on the first node");
    let kinds: Vec<&str> = manifest["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["kill", "restart", "kill", "restart"], "{}", manifest["events"]);
    assert_eq!(manifest["events"][0]["component"], "worker-1");
    assert_eq!(manifest["events"][2]["component"], "data-plane");
    let started = manifest["startedUnixUs"].as_i64().unwrap();
    let killed = manifest["events"][0]["unixUs"].as_i64().unwrap();
    assert!(killed > started && killed < manifest["endedUnixUs"].as_i64().unwrap(), "{manifest}");
    // The restarted data plane listens where the loader sends: requests recover once it has re-registered.
    let at = |i: usize| manifest["events"][i]["unixUs"].as_i64().unwrap();
    support::assert_outage_and_recovery(&run_dir, at(2), at(3));

    // Analysed locally: the timeline marks the kill.
    let report = read_json(&run_dir.join("report.json"));
    assert_eq!(report["events"][0]["kind"], "kill", "{}", report["events"]);
    let svg = std::fs::read_to_string(run_dir.join("timeline.svg")).unwrap();
    assert!(svg.contains("kill worker-1"), "the timeline marks the kill");

    // Configs and logs of every role, the restarted worker's second log too, and the loader's.
    for file in [
        "control-plane.yaml",
        "control-plane.log",
        "data-plane.log",
        "data-plane.1.yaml",
        "data-plane.1.log",
        "worker-0.log",
        "worker-1.log",
        "worker-1.1.log",
    ] {
        assert!(run_dir.join("platform").join(file).is_file(), "platform/{file} missing");
    }
    assert!(run_dir.join("loader.log").is_file() && run_dir.join("invocations.csv").is_file());

    // Nothing left: no process of the run, no run folder on any host; the binaries stay for the next run.
    let left = processes_of_run(&dir);
    assert!(left.is_empty(), "processes of the run left: {left:?}");
    for host in 1..=5 {
        let root = cluster.dir.join(format!("hosts/h{host}/faas-toolkit"));
        let runs: Vec<_> = std::fs::read_dir(root.join("runs")).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(runs.is_empty(), "h{host} keeps {runs:?}");
        assert!(root.join("bin").is_dir(), "h{host} keeps its binaries");
    }
    cluster.down_and_check();
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it as root with --ignored"]
fn bad_clusters_fail_naming_the_host_and_the_step_and_leave_nothing_running() {
    let mut cluster = Cluster::up(4);
    let dir = cluster.scratch.path().to_owned();
    let (known_hosts, key) = (cluster.dir.join("known_hosts"), cluster.dir.join("id_ed25519"));
    let good = cluster.node_list();
    let first = cluster.destinations()[0].address.clone();

    // The first node at an address where no host answers.
    let absent = cluster.absent_address();
    let unreachable = good.replacen(&first, &absent, 1);
    let spec = write_spec(&dir, &unreachable, &known_hosts, Some(&key), "");
    let stderr = failure(&spec);
    assert!(stderr.contains("preflight") && stderr.contains(&format!("root@{absent}:22")), "{stderr}");

    // A key the hosts do not accept.
    let wrong_key = dir.join("wrong_key");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&wrong_key).status();
    assert!(keygen.unwrap().success());
    let spec = write_spec(&dir, &good, &known_hosts, Some(&wrong_key), "");
    let stderr = failure(&spec);
    assert!(stderr.contains(&format!("root@{first}:22")) && stderr.contains("auth"), "{stderr}");

    // Host keys not in known_hosts.
    let empty = dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let spec = write_spec(&dir, &good, &empty, Some(&key), "");
    let stderr = failure(&spec);
    assert!(stderr.contains("host key of root@") && stderr.contains("not in"), "{stderr}");
    assert!(!dir.join("results").exists(), "nothing was started, so no results folder");

    // A control plane that cannot bind its port (sshd holds 22 on every host) does not start. The key comes from an
    // ssh-agent this time.
    let agent = Agent::start(&dir.join("agent.sock"), &key);
    let spec = write_spec(&dir, &good, &known_hosts, None, "");
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "control_plane: {",
        &format!("control_plane: {{ http_listen: '{}:22', ", cluster.destinations()[1].address),
    );
    std::fs::write(&spec, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_experiments"))
        .args(["run", spec.to_str().unwrap()])
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    drop(agent);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("starting the platform"), "authenticated through the agent, then failed: {stdout}");
    let control_plane = format!("root@{}:22", cluster.destinations()[1].address);
    assert!(stdout.contains("control-plane on") && stdout.contains(&control_plane), "{stdout}");
    assert!(stdout.contains("did not start"), "{stdout}");
    let left = processes_of_run(&dir);
    assert!(left.is_empty(), "processes of the run left: {left:?}");
    cluster.down_and_check();
}

/// An `ssh-agent` holding one key, killed when dropped (by the kernel when the test's thread ends without dropping it).
struct Agent {
    socket: PathBuf,
    process: std::process::Child,
}

impl Agent {
    fn start(socket: &Path, key: &Path) -> Agent {
        let mut command = Command::new("ssh-agent");
        command.arg("-D").arg("-a").arg(socket).stdout(std::process::Stdio::null());
        let process = support::die_with_test(&mut command).spawn().expect("ssh-agent (openssh-client)");
        let agent = Agent { socket: socket.to_owned(), process };
        // Ready once ssh-add can talk to it (exit 2: no agent at the socket yet).
        let added = (0..200).find_map(|_| {
            let status = Command::new("ssh-add").arg("-q").arg(key).env("SSH_AUTH_SOCK", socket).status().unwrap();
            if status.code() == Some(2) {
                std::thread::sleep(std::time::Duration::from_millis(25));
                return None;
            }
            Some(status.success())
        });
        assert_eq!(added, Some(true), "ssh-add {} to the agent at {}", key.display(), socket.display());
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs `spec`, expects failure, returns stderr.
fn failure(spec: &Path) -> String {
    let output = experiments(&["run", spec.to_str().unwrap()]);
    assert!(!output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}
