//! Test support shared by the experiment tests: a cluster of namespace hosts (`scripts/test-cluster.sh`, brought
//! up and torn down also when a test panics; tests using it need root and run with `--ignored`), the workspace's
//! binaries, `experiments` runs, readers of a run folder and a look at this machine's processes.
// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use experiments::ssh::{Destination, SessionOptions};
use serde_json::Value;

/// A cluster from `scripts/test-cluster.sh up`; dropping it runs `down` (also when the test panics).
pub struct Cluster {
    /// The folder `up` wrote (keys, known_hosts, inventory.txt, ssh_config, state).
    pub dir: PathBuf,
    /// A scratch folder removed with the cluster.
    pub scratch: tempfile::TempDir,
    down: bool,
}

impl Cluster {
    pub fn up(hosts: usize) -> Cluster {
        // The script installs what else it needs (iproute2, procps, openssh-server); root it cannot install.
        require_root();
        let parent = tempfile::tempdir().expect("temp dir");
        let cluster = Cluster { dir: parent.path().join("cluster"), scratch: parent, down: false };
        let status = Command::new(script()).arg("up").arg(&cluster.dir).arg(hosts.to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "scripts/test-cluster.sh up failed (see its output above)");
        cluster
    }

    pub fn destinations(&self) -> Vec<Destination> {
        let inventory = std::fs::read_to_string(self.dir.join("inventory.txt")).expect("inventory.txt");
        inventory
            .lines()
            .map(|line| {
                let (user, address) = line.split_once('@').expect("user@address");
                Destination { user: user.into(), address: address.into(), port: 22 }
            })
            .collect()
    }

    /// The hosts as a node list (`root@ADDRESS ...`, h1 first), as a spec's `inventory.nodes` takes it.
    pub fn node_list(&self) -> String {
        self.destinations().iter().map(|d| format!("{}@{}", d.user, d.address)).collect::<Vec<_>>().join(" ")
    }

    /// An address on the cluster's subnet where no host answers: the script gives hosts .11 up to .210 at most.
    pub fn absent_address(&self) -> String {
        let first = &self.destinations()[0].address;
        let subnet = first.rsplit_once('.').expect("an IPv4 address").0;
        format!("{subnet}.250")
    }

    /// The log of host `k`'s sshd (h1 is 1): the script runs each sshd with `-e`, so it logs there.
    pub fn sshd_log(&self, k: usize) -> PathBuf {
        self.dir.join(format!("sshd/h{k}.log"))
    }

    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            key_file: Some(self.dir.join("id_ed25519")),
            known_hosts: self.dir.join("known_hosts"),
            ..SessionOptions::default()
        }
    }

    /// Runs `down` and checks that no namespace, bridge or sshd of this cluster is left.
    pub fn down_and_check(&mut self) {
        let state = self.dir.join("state");
        let slot = std::fs::read_to_string(state.join("slot")).expect("state/slot").trim().to_string();
        let pids = std::fs::read_to_string(state.join("pids")).expect("state/pids");
        self.down = true;
        let status = Command::new(script()).arg("down").arg(&self.dir).status();
        assert!(status.is_ok_and(|s| s.success()), "scripts/test-cluster.sh down failed");
        let namespaces = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
        let namespaces = String::from_utf8_lossy(&namespaces.stdout);
        let prefix = format!("tc{slot}h");
        assert!(!namespaces.lines().any(|line| line.starts_with(&prefix)), "namespaces left: {namespaces}");
        let bridge = Command::new("ip").args(["link", "show", &format!("tcbr{slot}")]).output().expect("ip link show");
        assert!(!bridge.status.success(), "bridge tcbr{slot} left");
        for pid in pids.lines() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
            assert!(!running, "sshd {pid} still runs");
        }
        assert!(!self.dir.exists(), "{} left", self.dir.display());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        let status = Command::new(script()).arg("down").arg(&self.dir).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("scripts/test-cluster.sh down {} failed: remove the cluster by hand", self.dir.display());
        }
    }
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-cluster.sh")
}

/// Fails loudly (never passes silently) where the cluster cannot be made: without root nothing can be installed or
/// set up, with root the script installs the rest.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (network namespaces, a bridge, sshd); run it as root with --ignored"
    );
}

/// `target/<profile>` of this test build, checked to hold `binaries` (from `dirigent`, `trace-function`, `loader`).
pub fn bin_dir(binaries: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_experiments")).parent().expect("target/<profile>").to_owned();
    for bin in binaries {
        assert!(
            dir.join(bin).is_file(),
            "{bin} is not in {}: build it first (cargo build -p orchestrator -p loader; cargo test --workspace does)",
            dir.display()
        );
    }
    dir
}

/// Runs the `experiments` binary to its end; its stderr is echoed (the harness shows it when the test fails).
pub fn experiments(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_experiments")).args(args).output().expect("run experiments");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A process on this machine (the namespace hosts share its process table); NULs in its files read as spaces.
#[derive(Debug)]
pub struct ProcessInfo {
    pub pid: u32,
    pub cmdline: String,
    pub environ: String,
}

/// The processes for which `keep` holds; those that exit while being read are skipped.
pub fn processes_where(keep: impl Fn(&ProcessInfo) -> bool) -> Vec<ProcessInfo> {
    let read = |pid: u32, file: &str| {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\0', " ")
    };
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .map(|pid| ProcessInfo { pid, cmdline: read(pid, "cmdline"), environ: read(pid, "environ") })
        .filter(keep)
        .collect()
}

/// `(intendedTime, outcome)` of every invocation in `run_dir/invocations.csv`.
pub fn outcomes(run_dir: &Path) -> Vec<(i64, String)> {
    let csv = std::fs::read_to_string(run_dir.join("invocations.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (intended, outcome) = (column("intendedTime"), column("outcome"));
    csv.lines()
        .skip(1)
        .map(|line| line.split(',').collect::<Vec<_>>())
        .map(|cells| (cells[intended].parse().unwrap(), cells[outcome].to_owned()))
        .collect()
}

/// Checks that some invocations meant for `[down, up)` failed, that one meant after `up` (the restart) succeeded, and
/// that from the first such one on every invocation succeeded (more than 10 of them, so the recovery is seen to
/// last). How long the restarted component takes to serve again is not bounded here: that depends on the machine.
pub fn assert_outage_and_recovery(run_dir: &Path, down: i64, up: i64) {
    let mut rows = outcomes(run_dir);
    rows.sort_by_key(|(t, _)| *t);
    assert!(rows.iter().any(|(t, o)| (down..up).contains(t) && o != "ok"), "the outage shows: {rows:?}");
    let settled = rows.iter().find(|(t, o)| *t >= up && o == "ok").map(|(t, _)| *t);
    let settled = settled.unwrap_or_else(|| panic!("no invocation succeeded after the restart at {up}: {rows:?}"));
    let after: Vec<&(i64, String)> = rows.iter().filter(|(t, _)| *t >= settled).collect();
    assert!(after.len() > 10, "too few invocations after the recovery at {settled} to show it lasts: {after:?}");
    assert!(after.iter().all(|(_, o)| o == "ok"), "all ok after the recovery at {settled}: {after:?}");
}

/// Makes the kernel SIGKILL the child when the thread that started it ends (the test's thread, also a runner killed
/// outright): a backstop for the guards' `Drop`, which cannot run then.
#[allow(unsafe_code)]
pub fn die_with_test(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec and makes one async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        })
    }
}
