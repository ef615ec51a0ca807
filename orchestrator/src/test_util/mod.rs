//! Test support (feature `test-util`, and the crate's own unit tests): a recording, scriptable fake at
//! every port — the roles' calls to each other ([`peers`]), the sandbox runtime ([`runtime`]), the proxy's
//! cold-start requests ([`cold_starts`]) — the contract suites every sandbox runtime ([`contract`]) and every
//! registry store ([`store`]) passes, a real Redis server for tests ([`redis`]), an in-memory network between
//! registry replicas ([`raft`]) and replicas over loopback gRPC ([`replicas`]).
//!
//! Each fake records every call, with its arguments, in a [`script::Journal`] that a test reads or waits
//! on, and answers as a [`script::Script`] says: by default success, or a failure, or held until a
//! [`script::Gate`] opens.

pub mod cold_starts;
pub mod containerd;
pub mod containerd_daemon;
pub mod contract;
pub mod peers;
pub mod raft;
pub mod redis;
pub mod replicas;
pub mod runtime;
pub mod script;
pub mod store;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// User + system CPU time of process `pid` so far, seconds, from `/proc/<pid>/stat` (0 when unreadable).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Counted after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    ticks / 100.0
}
