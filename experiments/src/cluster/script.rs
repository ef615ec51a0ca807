//! The POSIX shell the runner sends to hosts: detached starts that survive the SSH session, waits that poll on the
//! host (one round trip instead of one per poll), stops, kills and the survivor scan. Every word that comes from
//! the user is quoted with [`shell_quote`].
//!
//! A process counts as alive while `/proc/PID/stat` exists and is not a zombie: a detached process is re-parented
//! to the host's init, which in containers does not always reap, and `kill -0` succeeds on zombies.

use std::time::Duration;

use contracts::ready;

use crate::ssh::shell_quote;

/// `alive PID`: true while the process exists and is not a zombie.
const ALIVE: &str =
    r#"alive() { s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); [ -n "$s" ] && [ "$s" != Z ]; };"#;

/// How often the host-side loops look again.
const POLL: &str = "0.05";

/// Starts `command` in `dir`, detached (own session, no terminal, stdin from /dev/null, output to `log`), with the
/// environment `env`; writes its PID to `pid_file` and prints it. `nohup` and `setsid` exec in place (a background
/// job of a non-interactive shell is no group leader, so `setsid` need not fork), so the PID is the command's own.
pub fn start_detached(dir: &str, env: &[(&str, &str)], command: &[String], log: &str, pid_file: &str) -> String {
    let env: Vec<String> = env.iter().map(|(key, value)| format!("{key}={}", shell_quote(value))).collect();
    let command: Vec<String> = command.iter().map(|word| shell_quote(word)).collect();
    format!(
        "cd {dir} || exit 2; {env} nohup setsid {command} >{log} 2>&1 </dev/null & echo $! >{pid}; echo $!",
        dir = shell_quote(dir),
        env = env.join(" "),
        command = command.join(" "),
        log = shell_quote(log),
        pid = shell_quote(pid_file),
    )
}

/// Waits on the host until `log` holds a ready line (one starting with [`ready::PREFIX`]; printed then, exit 0), the process `pid`
/// exits (exit 3, the log's tail on stderr) or `timeout` passes (exit 4).
pub fn wait_ready(dir: &str, pid: u32, log: &str, timeout: Duration) -> String {
    format!(
        r#"{ALIVE} cd {dir} || exit 2; end=$(( $(date +%s) + {secs} ));
while :; do
  if line=$(grep -m1 '^{prefix}' {log}); then printf '%s\n' "$line"; exit 0; fi
  if ! alive {pid}; then echo "it exited before it was ready; its log ends with:" >&2; tail -n 15 {log} >&2; exit 3; fi
  if [ "$(date +%s)" -ge "$end" ]; then echo "no ready line within {secs} s; its log ends with:" >&2; tail -n 15 {log} >&2; exit 4; fi
  sleep {POLL}
done"#,
        dir = shell_quote(dir),
        log = shell_quote(log),
        prefix = ready::PREFIX,
        secs = timeout.as_secs().max(1),
    )
}

/// Stops the process whose PID is in `pid_file`: SIGTERM, then SIGKILL after `grace`. Prints `stopped`, `killed`
/// (it outlived the grace period) or `gone` (it was not running).
pub fn stop(pid_file: &str, grace: Duration) -> String {
    format!(
        r#"{ALIVE} pid=$(cat {pid_file} 2>/dev/null); if [ -z "$pid" ] || ! alive "$pid"; then echo gone; exit 0; fi
kill -TERM "$pid"; end=$(( $(date +%s) + {secs} ))
while alive "$pid"; do
  if [ "$(date +%s)" -ge "$end" ]; then kill -KILL "$pid"; echo killed; exit 0; fi
  sleep {POLL}
done; echo stopped"#,
        pid_file = shell_quote(pid_file),
        secs = grace.as_secs().max(1),
    )
}

/// Kills the process whose PID is in `pid_file` with SIGKILL and prints the host's time of the kill in
/// nanoseconds since the epoch; exit 3 when it was not running.
pub fn kill_now(pid_file: &str) -> String {
    format!(
        r#"{ALIVE} pid=$(cat {pid_file} 2>/dev/null); if [ -z "$pid" ] || ! alive "$pid"; then echo "it was not running" >&2; exit 3; fi
kill -KILL "$pid" && date +%s%N"#,
        pid_file = shell_quote(pid_file),
    )
}

/// Sends `signal` (e.g. `INT`) to `pid` if it is alive.
pub fn signal(pid: u32, signal: &str) -> String {
    format!("{ALIVE} if alive {pid}; then kill -{signal} {pid}; fi")
}

/// Prints `running` or `exited` for `pid`, then the bytes of `log` from byte `offset` on (0-based).
pub fn poll_log(pid: u32, log: &str, offset: u64) -> String {
    format!(
        "{ALIVE} if alive {pid}; then echo running; else echo exited; fi; tail -c +{from} {log} 2>/dev/null",
        from = offset + 1,
        log = shell_quote(log),
    )
}

/// Prints the PIDs of live processes whose environment holds `variable=value`, and kills them with SIGKILL.
pub fn kill_marked(variable: &str, value: &str) -> String {
    format!(
        r#"{ALIVE} for e in /proc/[0-9]*/environ; do
  if tr '\0' '\n' <"$e" 2>/dev/null | grep -qxF {entry}; then p=${{e#/proc/}}; p=${{p%/environ}}; if alive "$p"; then echo "$p $(cat /proc/$p/comm 2>/dev/null)"; kill -KILL "$p" 2>/dev/null; fi; fi
done; true"#,
        entry = shell_quote(&format!("{variable}={value}")),
    )
}

/// Lists the regular files directly in `dir`, one name per line.
pub fn list_files(dir: &str) -> String {
    format!("cd {} && for f in *; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done; true", shell_quote(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a script with the local `sh`, as a host would.
    fn sh(script: &str) -> (i32, String, String) {
        let output = std::process::Command::new("sh").arg("-c").arg(script).output().expect("sh");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
    }

    #[test]
    fn a_detached_process_is_started_waited_for_polled_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let command: Vec<String> =
            ["sh", "-c", r#"echo starting >&2; echo "{\"ready\": \"$X\"}"; exec sleep 30"#].map(String::from).into();
        let (status, stdout, _) = sh(&start_detached(path, &[("X", "it's")], &command, "a.log", "a.pid"));
        assert_eq!(status, 0);
        let pid: u32 = stdout.trim().parse().unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a.pid")).unwrap().trim(), pid.to_string());
        let (status, stdout, stderr) = sh(&wait_ready(path, pid, "a.log", Duration::from_secs(10)));
        assert_eq!((status, stdout.as_str()), (0, "{\"ready\": \"it's\"}\n"), "{stderr}");
        let (_, stdout, _) = sh(&poll_log(pid, &dir.path().join("a.log").display().to_string(), 9));
        assert_eq!(stdout, "running\n{\"ready\": \"it's\"}\n");
        let (_, stdout, _) = sh(&stop(&dir.path().join("a.pid").display().to_string(), Duration::from_secs(5)));
        assert_eq!(stdout.trim(), "stopped");
        let (_, stdout, _) = sh(&stop(&dir.path().join("a.pid").display().to_string(), Duration::from_secs(5)));
        assert_eq!(stdout.trim(), "gone");
    }

    #[test]
    fn a_process_that_exits_early_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let command: Vec<String> = ["sh", "-c", "echo bad config >&2; exit 1"].map(String::from).into();
        let (_, stdout, _) = sh(&start_detached(path, &[], &command, "b.log", "b.pid"));
        let pid: u32 = stdout.trim().parse().unwrap();
        let (status, _, stderr) = sh(&wait_ready(path, pid, "b.log", Duration::from_secs(10)));
        assert_eq!(status, 3);
        assert!(stderr.contains("exited before it was ready") && stderr.contains("bad config"), "{stderr}");
    }

    /// Waits until the process in `pid_file` is dead: SIGKILL takes effect a moment after `kill` returns. Bounded,
    /// so that a kill that never lands fails the test.
    fn wait_dead(pid_file: &str) {
        let pid_file = shell_quote(pid_file);
        let dead = format!(
            "{ALIVE} pid=$(cat {pid_file}); end=$(( $(date +%s) + 10 )); \
             while alive \"$pid\"; do [ \"$(date +%s)\" -ge \"$end\" ] && exit 1; sleep 0.01; done"
        );
        assert_eq!(sh(&dead).0, 0, "the process in {pid_file} is still alive 10 s after SIGKILL");
    }

    #[test]
    fn kills_report_the_time_and_marked_processes_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let marker = format!("test-{}", std::process::id());
        let command: Vec<String> = ["sleep", "30"].map(String::from).into();
        sh(&start_detached(path, &[("FAAS_TEST_MARK", &marker)], &command, "c.log", "c.pid"));
        sh(&start_detached(path, &[("FAAS_TEST_MARK", &marker)], &command, "d.log", "d.pid"));
        let pid_file = dir.path().join("c.pid").display().to_string();
        let (status, stdout, _) = sh(&kill_now(&pid_file));
        assert_eq!(status, 0);
        assert!(stdout.trim().parse::<u128>().unwrap() > 1_600_000_000_000_000_000);
        wait_dead(&pid_file);
        assert_eq!(sh(&kill_now(&pid_file)).0, 3, "a dead process cannot be killed again");
        let (_, stdout, _) = sh(&kill_marked("FAAS_TEST_MARK", &marker));
        let d: String = std::fs::read_to_string(dir.path().join("d.pid")).unwrap().trim().into();
        assert_eq!(stdout, format!("{d} sleep\n"));
        wait_dead(&dir.path().join("d.pid").display().to_string());
        assert_eq!(sh(&kill_marked("FAAS_TEST_MARK", &marker)).1, "", "nothing is left the second time");
        let (_, files, _) = sh(&list_files(path));
        assert_eq!(files, "c.log\nc.pid\nd.log\nd.pid\n");
    }
}
