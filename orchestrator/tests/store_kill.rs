//! `kill -9` of a process writing the registry store loses no acknowledged change: the SQLite store in
//! `synchronous: normal`, and the Redis store (its own `redis-server`, which stays up: what a Redis crash keeps is
//! the server's persistence setting, not ours).
//!
//! The test binary is its own child: started again with `STORE_KILL_CHILD=<file or redis:// URL>`, it registers
//! functions without end (many in flight at once, so the kill lands among commits) and prints each name once its
//! apply is acknowledged. The parent reads until [`ACKS`] names, kills the child with SIGKILL, opens the store
//! again and finds every acknowledged function. (`harness = false`: `main` chooses the role.)

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use contracts::api::FunctionSpec;
use contracts::config::Synchronous;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use orchestrator::control_plane::store::{RedisStore, RegistryStore, SqliteStore, StoreChange};
use orchestrator::test_util::redis::RedisServer;

const CHILD: &str = "STORE_KILL_CHILD";
/// Acknowledgements read before the kill.
const ACKS: usize = 5000;
/// Applies the child keeps in flight.
const IN_FLIGHT: usize = 256;
/// How long the parent waits for any one acknowledgement.
const PATIENCE: Duration = Duration::from_secs(30);
/// The key prefix of the Redis store.
const PREFIX: &str = "kill:";

fn main() {
    match std::env::var(CHILD) {
        Ok(store) => child(&store),
        Err(_) => {
            let dir = tempfile::tempdir().expect("a temporary folder");
            survives("sqlite", &dir.path().join("registry.sqlite").display().to_string());
            let server = RedisServer::start();
            survives("redis", &server.url());
        }
    }
}

/// The store `location` names: a `redis://` URL, else an SQLite file.
fn open(location: &str) -> Box<dyn RegistryStore> {
    let opened: Result<Box<dyn RegistryStore>, _> = if location.starts_with("redis://") {
        RedisStore::open(location, PREFIX).map(|s| Box::new(s) as Box<dyn RegistryStore>)
    } else {
        SqliteStore::open(Path::new(location), Synchronous::Normal).map(|s| Box::new(s) as Box<dyn RegistryStore>)
    };
    opened.unwrap_or_else(|e| panic!("opening {location}: {e}"))
}

/// Registers `fn-0`, `fn-1`, ... until killed, printing each acknowledged name.
fn child(location: &str) {
    let store = open(location);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    runtime.block_on(async {
        let apply = |i: usize| {
            let name = format!("fn-{i}");
            let change = StoreChange::SaveFunction(FunctionSpec::new(&name, "image"));
            let stored = store.apply(change);
            async move { (name, stored.await) }
        };
        let mut pending: FuturesUnordered<_> = (0..IN_FLIGHT).map(apply).collect();
        let mut next = IN_FLIGHT;
        while let Some((name, stored)) = pending.next().await {
            stored.unwrap_or_else(|e| panic!("child: {name}: {e}"));
            println!("{name}");
            pending.push(apply(next));
            next += 1;
        }
    });
}

/// Kills the child (SIGKILL) when dropped, also when the test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a child writing to `location` and checks that the store holds every acknowledged function.
fn survives(kind: &str, location: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .env(CHILD, location)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Killed)
        .expect("starting the child");
    let acked = read_acks(child.0.stdout.take().expect("its stdout"));
    drop(child);
    let store = open(location);
    let stored: BTreeSet<String> = store.load().expect("loading").functions.into_iter().map(|spec| spec.name).collect();
    let lost: Vec<&String> = acked.iter().filter(|name| !stored.contains(*name)).collect();
    let some = &lost[..lost.len().min(20)];
    assert!(
        lost.is_empty(),
        "{kind}: {} of {} acknowledged functions lost after kill -9, e.g. {some:?}",
        lost.len(),
        acked.len()
    );
    println!("store_kill {kind}: {} acknowledged, {} stored after kill -9, none lost", acked.len(), stored.len());
}

/// The first [`ACKS`] names the child prints; a reader thread lets each wait end at [`PATIENCE`].
fn read_acks(stdout: std::process::ChildStdout) -> Vec<String> {
    let (lines, received) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.map(|line| lines.send(line)).is_err() {
                break;
            }
        }
    });
    (0..ACKS)
        .map(|i| {
            received
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("acknowledgement {i} of {ACKS} did not come within {PATIENCE:?}: {e}"))
        })
        .collect()
}
