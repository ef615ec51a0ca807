//! CPU time of the benchmark process (the loader) and of the target server, so that each figure can say how much of
//! the two cores each side used.

use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use serde::Serialize;

/// Microseconds per clock tick of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICK_US: u64 = 10_000;

/// CPU used over a span of wall time, in cores (1.0 = one core busy throughout).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// The benchmark process, which is the loader library at work.
    pub loader_cores: f64,
    /// The target server process (or `wrk`'s target during the `wrk` run).
    pub server_cores: f64,
    /// The loader's CPU time per completed invocation, µs.
    pub loader_us_per_invocation: f64,
}

/// A CPU-time reading started before a measured span.
pub struct CpuSpan {
    wall: Instant,
    loader_us: u64,
    server_us: u64,
    server_pid: u32,
}

impl CpuSpan {
    /// Starts a span; `server_pid` is the target server's process.
    pub fn start(server_pid: u32) -> Self {
        Self { wall: Instant::now(), loader_us: self_cpu_us(), server_us: process_cpu_us(server_pid), server_pid }
    }

    /// Ends the span; `invocations` completed in it.
    pub fn finish(&self, invocations: u64) -> CpuUse {
        let wall_us = self.wall.elapsed().as_secs_f64() * 1e6;
        let loader = self_cpu_us().saturating_sub(self.loader_us) as f64;
        let server = process_cpu_us(self.server_pid).saturating_sub(self.server_us) as f64;
        CpuUse {
            loader_cores: loader / wall_us,
            server_cores: server / wall_us,
            loader_us_per_invocation: if invocations > 0 { loader / invocations as f64 } else { 0.0 },
        }
    }
}

fn timeval_us(tv: TimeVal) -> u64 {
    u64::try_from(tv.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(tv.tv_usec()).unwrap_or(0)
}

/// User plus system CPU time of this process, µs.
fn self_cpu_us() -> u64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| timeval_us(u.user_time()) + timeval_us(u.system_time()))
}

/// User plus system CPU time of this process's reaped children, µs.
pub fn children_cpu_us() -> u64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0, |u| timeval_us(u.user_time()) + timeval_us(u.system_time()))
}

/// User plus system CPU time of process `pid` from `/proc/<pid>/stat`, µs; 0 when it cannot be read.
pub fn process_cpu_us(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the parenthesis.
    (ticks(11) + ticks(12)) * TICK_US
}
