//! Preflight of one host before a cluster run: the OS and architecture (the binaries shipped must fit), the cores,
//! which of the ports the roles need are already taken, and the host's clock offset against the runner's, since
//! latencies are compared across hosts.
//!
//! Clock offset, NTP-style: several `date +%s%N` round trips; for the one with the shortest round trip the remote
//! clock was read at some point inside it, so `offset = remote - midpoint` is off by at most half that round trip,
//! which the report gives as the offset's uncertainty.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::ssh::{Session, SshError};

/// Clock-offset samples taken per host.
const CLOCK_SAMPLES: usize = 5;
/// A host whose clock is surely further off than this gets a warning.
pub const CLOCK_WARNING: Duration = Duration::from_millis(1);
/// Limit for each preflight command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What preflight found on one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    /// `user@address:port`.
    pub host: String,
    /// `uname -s`, e.g. `Linux`.
    pub os: String,
    /// `uname -m`, e.g. `x86_64`.
    pub arch: String,
    /// `nproc`.
    pub cores: u32,
    /// Remote clock minus the runner's, µs.
    pub clock_offset_us: i64,
    /// Half the shortest round trip: how far the offset may be off, µs.
    pub clock_uncertainty_us: u64,
    /// Of the ports asked about, those something already listens on (TCP, IPv4 or IPv6).
    pub busy_ports: Vec<u16>,
    /// The login user's home folder (remote paths are relative to it).
    pub home: String,
    /// The host's own address on the connection the runner came in on (from `SSH_CONNECTION`): the address the
    /// roles listen on, so that the other hosts reach them the way the runner did.
    pub address: String,
    /// What the runner should tell the user.
    pub warnings: Vec<String>,
}

/// Checks the host behind `session`; `ports` are the TCP ports the roles there will listen on.
pub fn check(session: &mut Session, ports: &[u16]) -> Result<HostReport, SshError> {
    let command = r#"uname -s; uname -m; nproc; printf '%s\n' "$HOME" "$SSH_CONNECTION""#;
    let facts = session.exec_ok(command, COMMAND_TIMEOUT)?.stdout;
    let mut lines = facts.lines().map(str::trim);
    let mut next = || lines.next().unwrap_or_default().to_owned();
    let (os, arch, cores, home, connection) = (next(), next(), next(), next(), next());
    let cores = cores.parse().unwrap_or(0);
    // SSH_CONNECTION is "client-address client-port server-address server-port".
    let address =
        connection.split_whitespace().nth(2).map_or_else(|| session.destination().address.clone(), Into::into);
    let (clock_offset_us, clock_uncertainty_us) = clock_offset(session)?;
    // Asking for no ports needs no round trip.
    let busy_ports = if ports.is_empty() {
        Vec::new()
    } else {
        let listening = session.exec_ok("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null", COMMAND_TIMEOUT)?.stdout;
        busy(ports, &listening_ports(&listening))
    };
    let mut report = HostReport {
        host: session.destination().to_string(),
        os,
        arch,
        cores,
        clock_offset_us,
        clock_uncertainty_us,
        busy_ports,
        home,
        address,
        warnings: Vec::new(),
    };
    report.warnings = warnings(&report);
    Ok(report)
}

/// `(offset, uncertainty)` in µs from the sample with the shortest round trip.
fn clock_offset(session: &mut Session) -> Result<(i64, u64), SshError> {
    let mut best: Option<(u64, i64)> = None;
    for _ in 0..CLOCK_SAMPLES {
        let before = unix_us();
        let output = session.exec_ok("date +%s%N", COMMAND_TIMEOUT)?;
        let after = unix_us();
        let Some(remote_us) = output.stdout.trim().parse::<i128>().ok().map(|ns| ns / 1000) else { continue };
        let round_trip = after.saturating_sub(before);
        let midpoint = i128::from(before) + i128::from(round_trip / 2);
        let offset = i64::try_from(remote_us - midpoint).unwrap_or(i64::MAX);
        if best.is_none_or(|(shortest, _)| round_trip < shortest) {
            best = Some((round_trip, offset));
        }
    }
    Ok(best.map_or((0, u64::MAX), |(round_trip, offset)| (offset, round_trip / 2)))
}

fn unix_us() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()).unwrap_or(u64::MAX)
}

/// Local ports in state LISTEN (`0A`) in `/proc/net/tcp`-format text.
fn listening_ports(proc_net_tcp: &str) -> Vec<u16> {
    proc_net_tcp
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let port = local.rsplit_once(':')?.1;
            (state == "0A").then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect()
}

fn busy(wanted: &[u16], listening: &[u16]) -> Vec<u16> {
    wanted.iter().copied().filter(|port| listening.contains(port)).collect()
}

fn warnings(report: &HostReport) -> Vec<String> {
    let mut warnings = Vec::new();
    let surely_off = report.clock_offset_us.unsigned_abs().saturating_sub(report.clock_uncertainty_us);
    if report.clock_uncertainty_us == u64::MAX {
        warnings.push(format!("{}: the clock offset could not be measured", report.host));
    } else if surely_off > CLOCK_WARNING.as_micros() as u64 {
        warnings.push(format!(
            "{}: clock differs from this machine's by {} ± {} µs: latencies compared across hosts are off by as \
             much; synchronise the clocks (chrony/NTP)",
            report.host, report.clock_offset_us, report.clock_uncertainty_us
        ));
    }
    if !report.busy_ports.is_empty() {
        warnings.push(format!("{}: ports already in use: {:?}", report.host, report.busy_ports));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_come_from_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                    0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n\
                    1: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n\
                    2: 0100007F:9C40 0100007F:2382 01 00000000:00000000 00:00000000 00000000     0        0 3\n\
                    0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0 0 0 0 0 4\n";
        assert_eq!(listening_ports(text), vec![22, 9090, 8080]);
        assert_eq!(busy(&[8080, 9091, 22], &listening_ports(text)), vec![8080, 22]);
    }

    #[test]
    fn warnings_name_the_host_and_allow_for_the_uncertainty() {
        let report = |offset, uncertainty, busy: Vec<u16>| HostReport {
            host: "root@10.0.0.1:22".into(),
            os: "Linux".into(),
            arch: "x86_64".into(),
            cores: 2,
            clock_offset_us: offset,
            clock_uncertainty_us: uncertainty,
            busy_ports: busy,
            home: "/root".into(),
            address: "10.0.0.1".into(),
            warnings: Vec::new(),
        };
        assert!(warnings(&report(1_500, 800, vec![])).is_empty(), "within 1 ms once the uncertainty is allowed for");
        let w = warnings(&report(-5_000, 800, vec![9090]));
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("root@10.0.0.1:22") && w[0].contains("-5000"), "{w:?}");
        assert!(w[1].contains("9090"));
        assert!(warnings(&report(0, u64::MAX, vec![]))[0].contains("could not be measured"));
    }
}
