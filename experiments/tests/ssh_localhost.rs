//! `experiments run` on a cluster reached over SSH, without root and without network namespaces: one sshd that the
//! test starts on a free port of 127.0.0.1, as the user running the test, with its own host key, client key and
//! config, and one host in the inventory with every duty (loader, control plane, data plane, worker). The whole
//! cluster path runs: preflight, shipping, components started detached over SSH, the loader binary on the loader
//! host, a worker killed and restarted, logs and results fetched, folders and binaries removed. Then a control plane
//! that cannot bind its port fails naming the component and the host. Needs openssh-server (`/usr/sbin/sshd`) and the
//! workspace's binaries in the same target folder (`cargo test --workspace` builds them).

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{experiments, read_json};

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// An sshd on 127.0.0.1 with everything it needs in `dir`; killed when dropped (by the kernel when the test's
/// thread ends without dropping it).
struct Sshd {
    process: Child,
    port: u16,
    user: String,
    dir: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        assert!(Path::new(SSHD).is_file() && Path::new(SFTP_SERVER).is_file(), "needs openssh-server ({SSHD})");
        for key in ["host_key", "client_key"] {
            let status =
                Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(dir.join(key)).status();
            assert!(status.expect("ssh-keygen (openssh-client)").success(), "ssh-keygen {key}");
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_owned();
        if user == "root" {
            // sshd's privilege separation folder when it runs as root; nothing creates it without systemd.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("sshd_config");
        // StrictModes no: the authorized keys live in a temporary folder, not in a home folder sshd would check.
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nUseDNS no\n\
             PermitRootLogin prohibit-password\nSubsystem sftp {SFTP_SERVER}\n",
            dir = dir.display()
        );
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let mut command = Command::new(SSHD);
        command.arg("-D").arg("-e").arg("-f").arg(&config).stdin(Stdio::null()).stderr(log);
        let process = support::die_with_test(&mut command).spawn().expect("start sshd");
        let mut sshd = Sshd { process, port, user, dir: dir.to_owned() };
        sshd.wait_ready();
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(dir.join("known_hosts"), format!("[127.0.0.1]:{port} {}\n", host_key.join(" "))).unwrap();
        sshd
    }

    /// Returns once sshd accepts connections; fails when it exits first or takes over 15 s.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let log = || std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
            assert!(self.process.try_wait().unwrap().is_none(), "sshd exited: {}", log());
            assert!(Instant::now() < deadline, "sshd does not accept connections on {}: {}", self.port, log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `user@127.0.0.1:port`, as the runner names the host.
    fn host(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A spec named `name` for the one host behind `sshd`, with `platform` keys, `cluster` keys (each `key: value\n`)
/// and top-level `extra` added.
fn write_spec(dir: &Path, sshd: &Sshd, name: &str, platform: &str, cluster: &str, extra: &str) -> PathBuf {
    let spec = dir.join(format!("{name}.yaml"));
    let text = format!(
        "name: {name}\noutput: {results}\n\
         platform: {{ kind: dirigent, bin_dir: {bins}, nice: 0, start_timeout: 30s{platform} }}\n\
         cluster:\n  known_hosts: {dir}/known_hosts\n  remote_dir: {dir}/remote\n  connect_timeout: 5s\n{cluster}  \
           inventory: {{ hosts: [ {{ address: 127.0.0.1, port: {port}, user: {user}, key_file: {dir}/client_key,\n    \
           roles: [loader, control-plane, data-plane, worker] }} ] }}\n\
         load: {{ workload: {{ kind: rps, rate: 20, duration: 4s, functions: 2, runtime_ms: 2 }} }}\n{extra}",
        results = dir.join("results").display(),
        bins = support::bin_dir(&["dirigent", "trace-function", "loader"]).display(),
        dir = dir.display(),
        port = sshd.port,
        user = sshd.user,
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

/// Processes of spec `name`'s runs still alive: every process the runner starts carries
/// `FAAS_TOOLKIT_RUN=<spec name>-...` in its environment.
fn processes_of(name: &str) -> Vec<support::ProcessInfo> {
    let marker = format!("FAAS_TOOLKIT_RUN={name}-");
    support::processes_where(|process| process.environ.contains(&marker))
}

/// The one execution folder of spec `name` under `results/`.
fn execution(dir: &Path, name: &str) -> PathBuf {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{name}-")))
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders.pop().unwrap()
}

#[test]
fn an_experiment_runs_over_ssh_on_this_machine_with_a_worker_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let name = format!("sshlocal{}", std::process::id());

    // A control plane that cannot bind its API port (sshd holds it) does not start; nothing is left running.
    let taken = format!(", control_plane: {{ http_listen: '127.0.0.1:{}' }}", sshd.port);
    let bad = format!("{name}bad");
    let output = experiments(&["run", write_spec(dir.path(), &sshd, &bad, &taken, "", "").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    let expected = format!("starting the platform: control-plane on {} did not start", sshd.host());
    assert!(stdout.contains(&expected) && stdout.contains("its log ends with"), "{stdout}");
    assert!(processes_of(&bad).is_empty(), "processes of the failed run left: {:?}", processes_of(&bad));

    let failure = "failures: [ { at: 1s, kill: worker-0, restart_after: 1s } ]\n";
    let spec = write_spec(dir.path(), &sshd, &name, "", "  keep_binaries: false\n", failure);
    let output = experiments(&["run", spec.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "experiments run failed: {stdout}");

    let folder = execution(dir.path(), &name);
    let record = read_json(&folder.join("experiment.json"));
    let run = &record["runs"][0];
    assert!(run["error"].is_null(), "{run}");
    assert_eq!(run["platformStop"], serde_json::json!({ "unclean": [], "survivingSandboxes": [], "errors": [] }));
    assert!(run["ok"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(record["clusterHosts"][0]["host"], sshd.host());

    let run_dir = folder.join("run");
    let manifest = read_json(&run_dir.join("manifest.json"));
    let events = manifest["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["kill", "restart"], "{events:?}");
    assert!(events.iter().all(|e| e["component"] == "worker-0" && e["host"] == sshd.host().as_str()), "{events:?}");
    for file in ["control-plane.yaml", "control-plane.log", "data-plane.log", "worker-0.log", "worker-0.1.log"] {
        assert!(run_dir.join("platform").join(file).is_file(), "platform/{file} was not fetched");
    }
    for file in ["loader.log", "loader.yaml", "invocations.csv", "summary.json"] {
        assert!(run_dir.join(file).is_file(), "{file} was not fetched");
    }

    // Nothing left: no process of the run, no run folder, no binaries (keep_binaries: false).
    assert!(processes_of(&name).is_empty(), "processes of the run left: {:?}", processes_of(&name));
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("remote/runs")).unwrap().flatten().collect();
    assert!(runs.is_empty(), "run folders left: {runs:?}");
    assert!(!dir.path().join("remote/bin").exists(), "the binaries were not removed");
}
