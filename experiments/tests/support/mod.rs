//! Test support shared by the experiment tests: a cluster of namespace hosts (`scripts/test-cluster.sh`, brought
//! up and torn down also when a test panics; tests using it need root and run with `--ignored`), and readers of a
//! run folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use experiments::ssh::{Destination, SessionOptions};

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
        require_root_and_ip();
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

/// Fails loudly (never passes silently) where the cluster cannot be made.
pub fn require_root_and_ip() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root (network namespaces, a bridge, sshd); run it as root with --ignored"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(ip.is_ok_and(|o| o.status.success()), "this test needs iproute2 (`ip`): apt-get install -y iproute2");
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

/// Checks that some invocations meant for `[down, up)` failed and every one meant from `settled` on succeeded.
pub fn assert_outage_and_recovery(run_dir: &Path, down: i64, up: i64, settled: i64) {
    let rows = outcomes(run_dir);
    assert!(rows.iter().any(|(t, o)| (down..up).contains(t) && o != "ok"), "the outage shows: {rows:?}");
    let after: Vec<&(i64, String)> = rows.iter().filter(|(t, _)| *t >= settled).collect();
    assert!(after.len() > 10 && after.iter().all(|(_, o)| o == "ok"), "all ok after the recovery: {after:?}");
}
