//! The `ssh` module against real sshd servers: a two-host cluster of network namespaces from
//! `scripts/test-cluster.sh`, removed again at the end (also when an assertion fails).

mod support;

use std::time::{Duration, Instant};

use experiments::ssh::{Destination, Hosts, Session, SessionOptions, SshError};
use support::Cluster;

const SHORT: Duration = Duration::from_secs(10);

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it as root with --ignored"]
fn ssh_against_a_namespace_cluster() {
    let mut cluster = Cluster::up(2);
    let destinations = cluster.destinations();
    assert_eq!(destinations.len(), 2);

    let started = Instant::now();
    let mut session = Session::connect(&destinations[0], &cluster.options()).expect("connect to h1");
    eprintln!("one connect (TCP + curve25519 key exchange + ed25519 auth): {:?}", started.elapsed());

    commands(&mut session);
    timeouts(&mut session);
    transfers(&mut session, &cluster);
    pool(&cluster, &destinations);
    host_keys(&cluster, &destinations[0]);
    wrong_key(&cluster, &destinations[0]);
    unreachable(&cluster, &destinations[0]);
    accept_many_at_once(&cluster, &destinations);
    drop(session);
    cluster.down_and_check();
}

fn commands(session: &mut Session) {
    let host = session.destination().to_string();
    let output = session.exec("hostname", SHORT).unwrap();
    assert_eq!((output.status, output.stdout.trim(), output.stderr.as_str()), (0, "h1", ""));

    let failing = "echo out; echo err >&2; exit 3";
    let output = session.exec(failing, SHORT).unwrap();
    assert_eq!((output.status, output.stdout.as_str(), output.stderr.as_str()), (3, "out\n", "err\n"));
    let error = session.exec_ok(failing, SHORT).unwrap_err();
    assert!(matches!(error, SshError::Failed { status: 3, .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&host) && message.contains(failing) && message.contains("err"), "{message}");

    // More output than one channel window on both streams at once must not stall.
    let output = session.exec("head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2", SHORT).unwrap();
    assert_eq!((output.stdout.len(), output.stderr.len()), (3_000_000, 3_000_000));
}

fn timeouts(session: &mut Session) {
    // No bound on how soon the limit is noticed (that depends on the machine): a Timeout, rather than the command's
    // Ok after 31.7 s, shows the limit cut it short, and the error names the limit it applied.
    let limit = Duration::from_millis(500);
    let error = session.exec("echo begun; sleep 31.7", limit).unwrap_err();
    let SshError::Timeout { ref stdout, timeout, .. } = error else { panic!("expected a timeout, got {error}") };
    assert_eq!((stdout.as_str(), timeout), ("begun\n", limit));
    let message = error.to_string();
    assert!(message.contains(&session.destination().to_string()) && message.contains("sleep 31.7"), "{message}");
    // The command was killed on the host, and the session is still usable.
    let left = session.exec("pgrep -f 'sleep 31[.]7'", SHORT).unwrap();
    assert_eq!(left.status, 1, "the timed-out command still runs: {}", left.stdout);
}

fn transfers(session: &mut Session, cluster: &Cluster) {
    let local = cluster.scratch.path().join("tool");
    std::fs::write(&local, "#!/bin/sh\necho tool ran\n").unwrap();
    let remote = "/root/bin/tool";
    assert!(session.upload(&local, remote, 0o755).unwrap(), "first upload transfers");
    assert!(!session.upload(&local, remote, 0o755).unwrap(), "an unchanged file is skipped");
    assert_eq!(session.exec_ok(remote, SHORT).unwrap().stdout, "tool ran\n");
    assert_eq!(session.exec_ok(&format!("stat -c %a {remote}"), SHORT).unwrap().stdout.trim(), "755");
    std::fs::write(&local, "#!/bin/sh\necho tool v2\n").unwrap();
    assert!(session.upload(&local, remote, 0o700).unwrap(), "a changed file is sent again");
    assert_eq!(session.exec_ok(&format!("stat -c %a {remote}"), SHORT).unwrap().stdout.trim(), "700");

    let back = cluster.scratch.path().join("down/tool");
    assert_eq!(session.download(remote, &back).unwrap(), std::fs::metadata(&local).unwrap().len());
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&local).unwrap());

    let error = session.download("/root/missing", &back).unwrap_err().to_string();
    assert!(error.contains("/root/missing") && error.contains(&session.destination().to_string()), "{error}");
}

fn pool(cluster: &Cluster, destinations: &[Destination]) {
    let all_logins = || (1..=destinations.len()).map(|k| logins(cluster, k)).collect::<Vec<_>>();
    let initial = all_logins();
    let hosts = Hosts::new(destinations.iter().cloned(), cluster.options());
    let names: Vec<String> = hosts
        .run_all(2, |session| Ok(session.exec_ok("hostname", SHORT)?.stdout.trim().to_string()))
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["h1", "h2"]);
    // Each host has its own /root: h2 does not see what was uploaded to h1.
    let seen = hosts.with(1, |session| session.exec("test -e /root/bin/tool", SHORT)).unwrap();
    assert_eq!(seen.status, 1);
    // One login per host so far, seen in its sshd's log (sshd logs a login before it confirms it to the client, so
    // it is there once the command ran); this also shows the count sees logins at all.
    let connected = all_logins();
    let expected: Vec<usize> = initial.iter().map(|n| n + 1).collect();
    assert_eq!(connected, expected, "logins per host before the pool and after its first commands");
    // The sessions are reused: more rounds log no new login.
    for _ in 0..5 {
        for result in hosts.run_all(2, |session| session.exec_ok("true", SHORT)) {
            result.unwrap();
        }
    }
    assert_eq!(all_logins(), connected, "logins per host before and after 5 rounds on the pooled sessions");
}

/// Logins host `k`'s sshd has accepted so far (`Accepted publickey for ...` lines in its log).
fn logins(cluster: &Cluster, k: usize) -> usize {
    let log = std::fs::read_to_string(cluster.sshd_log(k)).expect("the sshd log");
    log.lines().filter(|line| line.contains("Accepted publickey for ")).count()
}

fn host_keys(cluster: &Cluster, destination: &Destination) {
    let host = destination.to_string();
    let fresh = cluster.scratch.path().join("fresh/known_hosts");
    let strict = SessionOptions { known_hosts: fresh.clone(), ..cluster.options() };
    let error = Session::connect(destination, &strict).unwrap_err();
    assert!(matches!(error, SshError::UnknownHostKey { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&host) && message.contains("insecure_accept_new_host_keys"), "{message}");

    let accepting = SessionOptions { insecure_accept_new_host_keys: true, ..strict.clone() };
    Session::connect(destination, &accepting).expect("an unknown key is accepted when told so");
    let recorded = std::fs::read_to_string(&fresh).unwrap();
    assert!(recorded.starts_with(&format!("{} ssh-ed25519 ", destination.address)), "{recorded}");
    Session::connect(destination, &strict).expect("the recorded key is known now");

    // A different key for the same address: refused, also with the insecure option.
    let client_key = std::fs::read_to_string(cluster.dir.join("id_ed25519.pub")).unwrap();
    let wrong = cluster.scratch.path().join("wrong_known_hosts");
    std::fs::write(&wrong, format!("{} {}", destination.address, client_key)).unwrap();
    let mismatched = SessionOptions { known_hosts: wrong, insecure_accept_new_host_keys: true, ..cluster.options() };
    let error = Session::connect(destination, &mismatched).unwrap_err();
    assert!(matches!(error, SshError::HostKeyMismatch { .. }), "{error}");
    assert!(error.to_string().contains(&host), "{error}");
}

fn wrong_key(cluster: &Cluster, destination: &Destination) {
    let options = SessionOptions { key_file: Some(cluster.dir.join("ssh_host_ed25519_key")), ..cluster.options() };
    let error = Session::connect(destination, &options).unwrap_err();
    assert!(matches!(error, SshError::Auth { .. }), "{error}");
    assert!(error.to_string().contains(&destination.to_string()), "{error}");
}

fn unreachable(cluster: &Cluster, h1: &Destination) {
    // No bound on how long failing takes: ARP gives up after about 3 s whatever the connect limit, so time would not
    // show the limit anyway. The short limit only keeps the wait short should ARP ever answer.
    let nobody = Destination { address: cluster.absent_address(), ..h1.clone() };
    let options = SessionOptions { connect_timeout: Duration::from_millis(300), ..cluster.options() };
    let error = Session::connect(&nobody, &options).unwrap_err();
    let SshError::Connect { ref host, .. } = error else { panic!("expected a connect error, got {error}") };
    assert_eq!(host, &nobody.to_string());
    let message = error.to_string();
    assert!(message.starts_with(&format!("cannot connect to {nobody}: ")), "names the host and the step: {message}");
}

fn accept_many_at_once(cluster: &Cluster, destinations: &[Destination]) {
    // The pool connects to new hosts in parallel; each key must land in the file once, on its own line.
    let fresh = cluster.scratch.path().join("many/known_hosts");
    let options =
        SessionOptions { known_hosts: fresh.clone(), insecure_accept_new_host_keys: true, ..cluster.options() };
    let hosts = Hosts::new(destinations.iter().cloned(), options);
    for result in hosts.run_all(destinations.len(), |session| session.exec_ok("true", SHORT)) {
        result.unwrap();
    }
    let recorded = std::fs::read_to_string(&fresh).unwrap();
    let mut addresses: Vec<&str> = recorded.lines().map(|line| line.split(' ').next().unwrap()).collect();
    addresses.sort();
    let expected: Vec<&str> = destinations.iter().map(|d| d.address.as_str()).collect();
    assert_eq!(addresses, expected, "{recorded}");
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it as root with --ignored"]
fn preflight_reports_the_host_its_busy_ports_and_a_clock_offset_within_its_bound() {
    let mut cluster = Cluster::up(1);
    let destination = cluster.destinations().remove(0);
    let mut session = Session::connect(&destination, &cluster.options()).expect("connect");
    let report = experiments::cluster::preflight::check(&mut session, &[22, 9090]).expect("preflight");
    assert_eq!(report.os, "Linux");
    assert!(!report.arch.is_empty() && report.cores >= 1, "{report:?}");
    assert_eq!((report.home.as_str(), report.address.as_str()), ("/root", destination.address.as_str()));
    assert_eq!(report.busy_ports, vec![22], "sshd listens on 22 in the host's namespace, nothing on 9090");
    // The namespaces share this machine's clock: the true offset is 0, so the estimate must lie within its bound.
    assert!(report.clock_offset_us.unsigned_abs() <= report.clock_uncertainty_us + 1, "{report:?}");
    assert_eq!(report.warnings, vec![format!("{destination}: ports already in use: [22]")]);
    drop(session);
    cluster.down_and_check();
}
