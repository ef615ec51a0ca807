//! `experiments provision`: a cluster's one-time setup with the Ansible playbooks in `ansible/` (packages, binaries,
//! configs, service units, sysctls; see ansible/README.md). The experiment's [`Inventory`] becomes an Ansible
//! inventory (groups `loader`, `control_plane`, `data_plane`, `worker`; the SSH key, known_hosts file and host-key
//! policy of [`SessionOptions`]) in a private temporary folder; `ansible-playbook` runs `site.yml` with it, its
//! output is streamed line by line, and its PLAY RECAP becomes a per-host [`ProvisionReport`]. A failing host is
//! reported with the step (the task) that failed and Ansible's message.
//!
//! Blocking: call it from `spawn_blocking` in async code.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::cluster::inventory::{Duty, Inventory};
use crate::ssh::{Destination, SessionOptions, shell_quote};

/// The program that runs the playbooks.
pub const ANSIBLE_PLAYBOOK: &str = "ansible-playbook";

/// The playbook in the playbook folder.
pub const SITE_PLAYBOOK: &str = "site.yml";

/// How many output lines an error quotes when ansible-playbook stops without a host failing.
const TAIL_LINES: usize = 20;

/// What to run and with which settings.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// The folder holding `site.yml` and its roles (the workspace's `ansible/`).
    pub playbook_dir: PathBuf,
    /// Controller-side folder with `dirigent`, `trace-function` and `loader` (the playbook's `faas_binary_dir`).
    pub binary_dir: PathBuf,
    /// More playbook variables (`--extra-vars`), e.g. `faas_ports_open: true` or `faas_install_dir`.
    pub extra_vars: Map<String, Value>,
    /// The ansible-playbook executable (default: `ansible-playbook` from `PATH`).
    pub program: PathBuf,
    /// At most this many hosts at once (`--forks`).
    pub forks: usize,
}

impl ProvisionOptions {
    /// `site.yml` in `playbook_dir`, binaries from `binary_dir`, no extra variables, up to 20 hosts at once.
    pub fn new(playbook_dir: impl Into<PathBuf>, binary_dir: impl Into<PathBuf>) -> Self {
        ProvisionOptions {
            playbook_dir: playbook_dir.into(),
            binary_dir: binary_dir.into(),
            extra_vars: Map::new(),
            program: ANSIBLE_PLAYBOOK.into(),
            forks: 20,
        }
    }
}

/// One host's line of the PLAY RECAP: how many tasks ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recap {
    /// Tasks that ran without changing anything (or changed something: `ok` counts those too).
    pub ok: u32,
    /// Tasks that changed the host.
    pub changed: u32,
    /// 1 when the host could not be reached.
    pub unreachable: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Tasks skipped by their condition.
    pub skipped: u32,
    /// Failures handled by a rescue block.
    pub rescued: u32,
    /// Failures ignored (`ignore_errors`).
    pub ignored: u32,
}

impl Recap {
    /// Whether the host came through: reached, and no task failed.
    pub fn succeeded(&self) -> bool {
        self.unreachable == 0 && self.failed == 0
    }
}

/// One host's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// The host.
    pub destination: Destination,
    /// Its name in the generated Ansible inventory (the address, made unique).
    pub name: String,
    /// Its PLAY RECAP line.
    pub recap: Recap,
}

/// What a provisioning run did, per host in inventory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionReport {
    /// Every host of the inventory.
    pub hosts: Vec<HostReport>,
    /// How long ansible-playbook ran.
    pub elapsed: Duration,
}

impl ProvisionReport {
    /// Tasks that changed something, over all hosts (0: the cluster was already provisioned).
    pub fn changed(&self) -> u32 {
        self.hosts.iter().map(|host| host.recap.changed).sum()
    }
}

impl fmt::Display for ProvisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for host in &self.hosts {
            let r = &host.recap;
            writeln!(
                f,
                "{}: ok={} changed={} unreachable={} failed={} skipped={}",
                host.destination, r.ok, r.changed, r.unreachable, r.failed, r.skipped
            )?;
        }
        write!(f, "{} host(s) in {:.1} s, {} change(s)", self.hosts.len(), self.elapsed.as_secs_f64(), self.changed())
    }
}

/// Why one host did not come through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    /// `user@address:port`.
    pub host: String,
    /// The task that failed (`role : task name`), or `Gathering Facts` when the host was never reached.
    pub step: String,
    /// Ansible's message.
    pub message: String,
    /// Whether the host could not be reached (SSH) rather than a task failing on it.
    pub unreachable: bool,
}

impl fmt::Display for HostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.unreachable { "unreachable" } else { "failed" };
        write!(f, "{} {what} at step `{}`: {}", self.host, self.step, self.message)
    }
}

/// Why provisioning did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// "{program} not found: apt-get install ansible-core (or pip install ansible-core)".
    #[error("{program} not found: apt-get install ansible-core (or pip install ansible-core)", program = .program.display())]
    NotInstalled {
        /// The program looked for.
        program: PathBuf,
    },
    /// "playbook {path} not found: point the playbook folder at the workspace's ansible/".
    #[error("playbook {path} not found: point the playbook folder at the workspace's ansible/", path = .path.display())]
    PlaybookMissing {
        /// The playbook looked for.
        path: PathBuf,
    },
    /// "binary folder {path}: {reason}; build the binaries (cargo build --release) or point it at them".
    #[error(
        "binary folder {path}: {reason}; build the binaries (cargo build --release) or point it at them",
        path = .path.display()
    )]
    BinaryDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// "cannot write {path} for ansible-playbook", with the cause.
    #[error("cannot write {path} for ansible-playbook", path = .path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "cannot run {program}", with the cause.
    #[error("cannot run {program}", program = .program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "provisioning failed on {count} host(s): {list}[; not provisioned, ansible-playbook stopped first: {hosts}]".
    #[error("provisioning failed on {} host(s): {}{}", .failures.len(), join(.failures), not_run_note(.not_run))]
    HostsFailed {
        /// Each failing host with its step and message.
        failures: Vec<HostFailure>,
        /// Hosts never reached because ansible-playbook stopped first (every host of a play failed).
        not_run: Vec<String>,
        /// The recap of every host that ran (the others may have succeeded).
        report: ProvisionReport,
    },
    /// "ansible-playbook {status} before any host failed; its output ends with: {tail}".
    #[error("ansible-playbook {status} before any host failed; its output ends with:\n{tail}")]
    Aborted {
        /// How it exited.
        status: String,
        /// The last lines of its output.
        tail: String,
    },
    /// "ansible-playbook's PLAY RECAP has no line for host {host}; its output ends with: {tail}".
    #[error("ansible-playbook's PLAY RECAP has no line for host {host}; its output ends with:\n{tail}")]
    MissingFromRecap {
        /// `user@address:port`.
        host: String,
        /// The last lines of its output.
        tail: String,
    },
}

fn join(failures: &[HostFailure]) -> String {
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn not_run_note(hosts: &[String]) -> String {
    if hosts.is_empty() {
        String::new()
    } else {
        format!("; not provisioned, ansible-playbook stopped first: {}", hosts.join(", "))
    }
}

/// Runs the playbook against `inventory`, printing its output on stdout as it comes.
pub fn provision(
    inventory: &Inventory,
    ssh: &SessionOptions,
    options: &ProvisionOptions,
) -> Result<ProvisionReport, ProvisionError> {
    provision_with_output(inventory, ssh, options, |line| println!("{line}"))
}

/// Runs the playbook against `inventory`, handing each line of its output (stdout and stderr) to `on_line`.
pub fn provision_with_output(
    inventory: &Inventory,
    ssh: &SessionOptions,
    options: &ProvisionOptions,
    mut on_line: impl FnMut(&str),
) -> Result<ProvisionReport, ProvisionError> {
    let playbook = options.playbook_dir.join(SITE_PLAYBOOK);
    if !playbook.is_file() {
        return Err(ProvisionError::PlaybookMissing { path: playbook });
    }
    let binary_dir = std::path::absolute(&options.binary_dir)
        .and_then(|path| path.metadata().map(|meta| (path, meta)))
        .map_err(|e| ProvisionError::BinaryDir { path: options.binary_dir.clone(), reason: e.to_string() })?;
    if !binary_dir.1.is_dir() {
        return Err(ProvisionError::BinaryDir { path: binary_dir.0, reason: "not a folder".into() });
    }

    let work = WorkDir::create()?;
    let generated = ansible_inventory(inventory, ssh);
    let inventory_file = work.path().join("inventory.yml");
    write(&inventory_file, &serde_json::to_string_pretty(&generated.inventory).expect("JSON of JSON values"))?;
    let mut vars = options.extra_vars.clone();
    vars.insert("faas_binary_dir".into(), binary_dir.0.to_string_lossy().into());
    let vars_file = work.path().join("extra-vars.json");
    write(&vars_file, &Value::Object(vars).to_string())?;

    let mut command = Command::new(&options.program);
    command
        .arg("-i")
        .arg(&inventory_file)
        .arg("--extra-vars")
        .arg(format!("@{}", vars_file.display()))
        .arg("--forks")
        .arg(options.forks.max(1).to_string())
        .arg(&playbook)
        .envs(ansible_env(work.path(), ssh.connect_timeout))
        .env_remove("ANSIBLE_FORCE_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProvisionError::NotInstalled { program: options.program.clone() },
        _ => ProvisionError::Spawn { program: options.program.clone(), source },
    })?;
    let mut child = KillOnDrop(child);
    let mut output = OutputParser::default();
    let (sender, lines) = mpsc::channel();
    let readers = [
        forward_lines(child.0.stdout.take().expect("piped stdout"), sender.clone()),
        forward_lines(child.0.stderr.take().expect("piped stderr"), sender),
    ];
    for line in lines {
        on_line(&line);
        output.feed(&line);
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().map_err(|source| ProvisionError::Spawn { program: options.program.clone(), source })?;
    let elapsed = started.elapsed();
    drop(work); // closes the SSH connections ansible keeps open, removes the inventory
    outcome(&generated.hosts, output, status, elapsed)
}

/// Turns the parsed output and the exit status into the report or the error.
fn outcome(
    hosts: &[(String, Destination)],
    output: OutputParser,
    status: ExitStatus,
    elapsed: Duration,
) -> Result<ProvisionReport, ProvisionError> {
    let recap = parse_recap(&output.recap_lines);
    if recap.is_empty() && !status.success() {
        return Err(ProvisionError::Aborted { status: describe(status), tail: output.tail() });
    }
    let mut report = ProvisionReport { hosts: Vec::with_capacity(hosts.len()), elapsed };
    let mut not_run = Vec::new();
    for (name, destination) in hosts {
        match recap.get(name) {
            Some(line) => {
                report.hosts.push(HostReport { destination: destination.clone(), name: name.clone(), recap: *line })
            }
            None => not_run.push(destination.to_string()),
        }
    }
    let failures: Vec<HostFailure> = report
        .hosts
        .iter()
        .filter(|host| !host.recap.succeeded())
        .map(|host| {
            let seen = output.failures.iter().rev().find(|failure| failure.host == host.name);
            HostFailure {
                host: host.destination.to_string(),
                step: seen.map_or_else(|| "unknown (see the output above)".into(), |f| f.step.clone()),
                message: seen.map_or_else(|| "no message".into(), |f| f.message.clone()),
                unreachable: host.recap.unreachable > 0,
            }
        })
        .collect();
    if !failures.is_empty() {
        return Err(ProvisionError::HostsFailed { failures, not_run, report });
    }
    if let Some(host) = not_run.into_iter().next() {
        return Err(ProvisionError::MissingFromRecap { host, tail: output.tail() });
    }
    if !status.success() {
        return Err(ProvisionError::Aborted { status: describe(status), tail: output.tail() });
    }
    Ok(report)
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was stopped ({status})"),
    }
}

/// The generated Ansible inventory and which inventory name is which host.
#[derive(Debug, Clone, PartialEq)]
struct AnsibleInventory {
    /// The inventory (Ansible's YAML inventory format; JSON is valid YAML).
    inventory: Value,
    /// Inventory name and host, in inventory order.
    hosts: Vec<(String, Destination)>,
}

/// The Ansible group of a role (Ansible group names take no `-`).
fn group(duty: Duty) -> &'static str {
    match duty {
        Duty::Loader => "loader",
        Duty::ControlPlane => "control_plane",
        Duty::DataPlane => "data_plane",
        Duty::Worker => "worker",
    }
}

/// Builds the Ansible inventory for `inventory`: each host under a name made from its address, with its address,
/// port, user and key file, in the groups of its roles; host keys checked against `ssh.known_hosts` (new keys
/// accepted and recorded only with `insecure_accept_new_host_keys`).
fn ansible_inventory(inventory: &Inventory, ssh: &SessionOptions) -> AnsibleInventory {
    let names = host_names(inventory);
    let mut hosts = Map::new();
    let mut groups: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for duty in [Duty::Loader, Duty::ControlPlane, Duty::DataPlane, Duty::Worker] {
        groups.insert(group(duty), Map::new());
    }
    for (host, name) in inventory.hosts.iter().zip(&names) {
        let mut vars = Map::new();
        vars.insert("ansible_host".into(), host.destination.address.clone().into());
        vars.insert("ansible_port".into(), host.destination.port.into());
        vars.insert("ansible_user".into(), host.destination.user.clone().into());
        let key_file = host.key_file.as_ref().or(ssh.key_file.as_ref());
        let mut ssh_args = vec![
            format!("-o UserKnownHostsFile={}", shell_quote(&ssh.known_hosts.to_string_lossy())),
            format!(
                "-o StrictHostKeyChecking={}",
                if ssh.insecure_accept_new_host_keys { "accept-new" } else { "yes" }
            ),
            "-o BatchMode=yes".into(),
        ];
        if let Some(key_file) = key_file {
            vars.insert("ansible_ssh_private_key_file".into(), key_file.to_string_lossy().into());
            ssh_args.push("-o IdentitiesOnly=yes".into());
        }
        vars.insert("ansible_ssh_common_args".into(), ssh_args.join(" ").into());
        hosts.insert(name.clone(), Value::Object(vars));
        for duty in &host.duties {
            groups.get_mut(group(*duty)).expect("every duty has a group").insert(name.clone(), Value::Null);
        }
    }
    let children: Map<String, Value> =
        groups.into_iter().map(|(group, members)| (group.to_string(), json!({ "hosts": members }))).collect();
    let inventory_value = json!({
        "all": {
            "vars": { "ansible_python_interpreter": "/usr/bin/python3" },
            "hosts": hosts,
            "children": children,
        }
    });
    AnsibleInventory {
        inventory: inventory_value,
        hosts: names.into_iter().zip(inventory.hosts.iter().map(|host| host.destination.clone())).collect(),
    }
}

/// Inventory names: the address with anything but letters, digits, `.`, `-` and `_` made `_` (Ansible reads `:`
/// as a port and `[a:b]` as a range), with `_PORT` added when two hosts share an address.
fn host_names(inventory: &Inventory) -> Vec<String> {
    let plain = |address: &str| -> String {
        address.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
    };
    let bases: Vec<String> = inventory.hosts.iter().map(|host| plain(&host.destination.address)).collect();
    inventory
        .hosts
        .iter()
        .zip(&bases)
        .map(|(host, base)| {
            if bases.iter().filter(|other| *other == base).count() > 1 {
                format!("{base}_{}", host.destination.port)
            } else {
                base.clone()
            }
        })
        .collect()
}

/// The environment that makes ansible-playbook's output parseable and keeps its files in `work`.
fn ansible_env(work: &Path, connect_timeout: Duration) -> Vec<(&'static str, String)> {
    vec![
        ("ANSIBLE_STDOUT_CALLBACK", "default".into()),
        ("ANSIBLE_CALLBACK_RESULT_FORMAT", "json".into()),
        ("ANSIBLE_NOCOLOR", "1".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED", "False".into()),
        // An ansible.cfg saying host_key_checking = False would add StrictHostKeyChecking=no ahead of ours.
        ("ANSIBLE_HOST_KEY_CHECKING", "True".into()),
        ("ANSIBLE_TIMEOUT", connect_timeout.as_secs().max(1).to_string()),
        ("ANSIBLE_PIPELINING", "True".into()),
        ("ANSIBLE_LOCAL_TEMP", work.join("tmp").to_string_lossy().into()),
        // One SSH connection per host for the whole run, its socket here so that it can be closed afterwards.
        ("ANSIBLE_SSH_ARGS", "-C -o ControlMaster=auto -o ControlPersist=60s".into()),
        ("ANSIBLE_SSH_CONTROL_PATH_DIR", work.join("cp").to_string_lossy().into()),
        ("PYTHONUNBUFFERED", "1".into()),
    ]
}

/// Parses the lines after `PLAY RECAP`: `NAME : ok=N changed=N unreachable=N failed=N skipped=N rescued=N
/// ignored=N`, by host name. Lines that do not have that shape are left out.
fn parse_recap(lines: &[String]) -> BTreeMap<String, Recap> {
    let mut recap = BTreeMap::new();
    for line in lines {
        let Some((name, counts)) = line.split_once(" : ") else { continue };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        let mut host = Recap::default();
        let mut seen = 0;
        for pair in counts.split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else { continue };
            let Ok(value) = value.parse::<u32>() else { continue };
            let slot = match key {
                "ok" => &mut host.ok,
                "changed" => &mut host.changed,
                "unreachable" => &mut host.unreachable,
                "failed" => &mut host.failed,
                "skipped" => &mut host.skipped,
                "rescued" => &mut host.rescued,
                "ignored" => &mut host.ignored,
                _ => continue,
            };
            *slot = value;
            seen += 1;
        }
        if seen > 0 {
            recap.insert(name.to_string(), host);
        }
    }
    recap
}

/// Follows ansible-playbook's default output: the current task, every failure with its host, the recap lines and
/// the last lines.
#[derive(Debug, Default)]
struct OutputParser {
    task: Option<String>,
    /// Failures as printed: `host` is the inventory name.
    failures: Vec<HostFailure>,
    in_recap: bool,
    recap_lines: Vec<String>,
    tail: VecDeque<String>,
}

impl OutputParser {
    fn feed(&mut self, line: &str) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        if header(line, "PLAY RECAP").is_some() {
            self.in_recap = true;
            return;
        }
        if self.in_recap {
            if line.contains(" : ") && line.contains("ok=") {
                self.recap_lines.push(line.to_string());
            }
            return;
        }
        if let Some(name) = header(line, "TASK [") {
            self.task = Some(name);
        } else if let Some(name) = header(line, "RUNNING HANDLER [") {
            self.task = Some(format!("handler {name}"));
        } else if let Some(name) = header(line, "PLAY [") {
            self.task = Some(format!("play {name}"));
        } else if line.trim() == "...ignoring" {
            self.failures.pop();
        } else if let Some(failure) = self.failure(line) {
            self.failures.push(failure);
        }
    }

    /// `fatal: [HOST]: FAILED! => {...}`, `fatal: [HOST]: UNREACHABLE! => {...}` or (a loop item)
    /// `failed: [HOST] (item=X) => {...}`; `HOST` may be `NAME -> DELEGATE`.
    fn failure(&self, line: &str) -> Option<HostFailure> {
        let (kind, rest) = line.split_once(": [")?;
        if kind != "fatal" && kind != "failed" {
            return None;
        }
        let (host, rest) = rest.split_once(']')?;
        let host = host.split(" -> ").next().unwrap_or(host).to_string();
        let (what, json_text) = rest.split_once("=> ").unwrap_or((rest, ""));
        let unreachable = what.contains("UNREACHABLE!");
        let mut step = self.task.clone().unwrap_or_else(|| "before the first task".into());
        if let Some(item) = what.trim().strip_prefix("(item=").and_then(|item| item.strip_suffix(')')) {
            step = format!("{step} (item={item})");
        }
        Some(HostFailure { host, step, message: message(json_text), unreachable })
    }

    fn tail(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// `TASK [name] *****` -> `name` (for the prefix `TASK [`), or `PLAY RECAP ****` -> `` for `PLAY RECAP`.
fn header(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    if !line.trim_end().ends_with('*') {
        return None;
    }
    let rest = rest.trim_end().trim_end_matches('*').trim_end();
    Some(rest.strip_suffix(']').unwrap_or(rest).to_string())
}

/// The useful part of a failed result: `msg`, with `stderr` (or `stdout`) when the module ran a command.
fn message(json_text: &str) -> String {
    let Ok(Value::Object(result)) = serde_json::from_str::<Value>(json_text.trim()) else {
        return json_text.trim().to_string();
    };
    // One line: ssh's messages end in \r\n, command output has several lines.
    let text = |key: &str| {
        let value = result.get(key).and_then(Value::as_str)?;
        let line = value.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ");
        (!line.is_empty()).then_some(line)
    };
    let mut message = text("msg").unwrap_or_else(|| "no message".into());
    if let Some(output) = text("stderr").or_else(|| text("stdout")) {
        message = format!("{message}: {output}");
    }
    message
}

fn forward_lines(stream: impl Read + Send + 'static, sender: mpsc::Sender<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    })
}

fn write(path: &Path, text: &str) -> Result<(), ProvisionError> {
    std::fs::write(path, text).map_err(|source| ProvisionError::Write { path: path.into(), source })
}

/// Kills ansible-playbook if we leave before it ends.
struct KillOnDrop(Child);

impl KillOnDrop {
    fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.0.wait()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A private folder for the inventory, the variables and ansible's own files; dropping it closes the SSH master
/// connections ansible left open (ControlPersist) and removes the folder.
struct WorkDir {
    /// Removed when dropped, which happens after [`WorkDir`]'s own drop has closed the connections.
    dir: tempfile::TempDir,
}

impl WorkDir {
    fn create() -> Result<Self, ProvisionError> {
        // Private: the inventory names key files and the control sockets reach the hosts.
        let dir = tempfile::Builder::new()
            .prefix("experiments-provision-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|source| ProvisionError::Write { path: std::env::temp_dir(), source })?;
        let work = WorkDir { dir };
        for sub in ["tmp", "cp"] {
            let path = work.path().join(sub);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(|source| ProvisionError::Write { path: path.clone(), source })?;
        }
        Ok(work)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Ok(sockets) = std::fs::read_dir(self.path().join("cp")) {
            for socket in sockets.flatten() {
                // The control socket alone decides which master is asked; the host name is not used.
                let _ = Command::new("ssh")
                    .arg("-o")
                    .arg(format!("ControlPath={}", socket.path().display()))
                    .args(["-O", "exit", "provisioned-host"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    fn options(accept_new: bool) -> SessionOptions {
        SessionOptions {
            key_file: Some("/keys/id".into()),
            known_hosts: "/k/known hosts".into(),
            insecure_accept_new_host_keys: accept_new,
            ..SessionOptions::default()
        }
    }

    #[test]
    fn the_inventory_has_the_groups_hosts_and_ssh_settings() {
        let inventory = Inventory::from_node_list("root@10.0.0.1 root@10.0.0.2 ubuntu@node3:2222 root@10.0.0.4", None)
            .expect("inventory");
        let generated = ansible_inventory(&inventory, &options(false));
        let all = &generated.inventory["all"];
        assert_eq!(all["vars"]["ansible_python_interpreter"], "/usr/bin/python3");
        let node3 = &all["hosts"]["node3"];
        assert_eq!(node3["ansible_host"], "node3");
        assert_eq!(node3["ansible_port"], 2222);
        assert_eq!(node3["ansible_user"], "ubuntu");
        assert_eq!(node3["ansible_ssh_private_key_file"], "/keys/id");
        assert_eq!(
            node3["ansible_ssh_common_args"],
            "-o UserKnownHostsFile='/k/known hosts' -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
        );
        let members = |group: &str| -> Vec<String> {
            all["children"][group]["hosts"].as_object().expect("hosts").keys().cloned().collect()
        };
        assert_eq!(members("loader"), ["10.0.0.1"]);
        assert_eq!(members("control_plane"), ["10.0.0.2"]);
        assert_eq!(members("data_plane"), ["node3"]);
        assert_eq!(members("worker"), ["10.0.0.4"]);
        let names: Vec<_> = generated.hosts.iter().map(|(name, d)| format!("{name}={d}")).collect();
        assert_eq!(
            names,
            [
                "10.0.0.1=root@10.0.0.1:22",
                "10.0.0.2=root@10.0.0.2:22",
                "node3=ubuntu@node3:2222",
                "10.0.0.4=root@10.0.0.4:22"
            ]
        );
    }

    #[test]
    fn new_host_keys_are_accepted_only_when_asked_and_the_agent_needs_no_key_option() {
        let inventory = Inventory::from_node_list("r@a r@b r@c r@d", None).expect("inventory");
        let generated = ansible_inventory(&inventory, &SessionOptions { key_file: None, ..options(true) });
        let host = &generated.inventory["all"]["hosts"]["a"];
        assert_eq!(
            host["ansible_ssh_common_args"],
            "-o UserKnownHostsFile='/k/known hosts' -o StrictHostKeyChecking=accept-new -o BatchMode=yes"
        );
        assert!(host.get("ansible_ssh_private_key_file").is_none(), "{host}");
    }

    #[test]
    fn a_host_s_own_key_wins_and_several_roles_mean_several_groups() {
        let text = "user: root\nkey_file: /own\nhosts:\n\
                    - { address: 'fe80::1', roles: [loader, control-plane] }\n\
                    - { address: h, port: 22, roles: [data-plane] }\n\
                    - { address: h, port: 2200, roles: [worker] }\n";
        let inventory = Inventory::parse(text).expect("inventory");
        let generated = ansible_inventory(&inventory, &options(false));
        let names: Vec<_> = generated.hosts.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["fe80__1", "h_22", "h_2200"]);
        let all = &generated.inventory["all"];
        assert_eq!(all["hosts"]["fe80__1"]["ansible_host"], "fe80::1");
        assert_eq!(all["hosts"]["h_2200"]["ansible_ssh_private_key_file"], "/own");
        assert!(all["children"]["loader"]["hosts"].get("fe80__1").is_some());
        assert!(all["children"]["control_plane"]["hosts"].get("fe80__1").is_some());
        assert!(all["children"]["worker"]["hosts"].get("h_2200").is_some());
    }

    const RUN: &str = "\
PLAY [Workers] *****************************************************************

TASK [Gathering Facts] *********************************************************
ok: [10.0.0.4]
fatal: [10.0.0.9]: UNREACHABLE! => {\"changed\": false, \"msg\": \"Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: No route to host\\r\\nsecond line\\r\\n\", \"unreachable\": true}

TASK [faas_dirigent : Write the config (checked with dirigent --check)] ********
fatal: [10.0.0.4]: FAILED! => {\"changed\": false, \"exit_status\": 1, \"msg\": \"failed to validate\", \"stderr\": \"invalid config: sandbox_host\"}

TASK [faas_sysctl : Set the values that differ] ********************************
failed: [10.0.0.5] (item=net.core.somaxconn=65535) => {\"ansible_loop_var\": \"item\", \"changed\": true, \"msg\": \"non-zero return code\", \"rc\": 255, \"stderr\": \"sysctl: permission denied\"}
fatal: [10.0.0.6]: FAILED! => {\"msg\": \"ignored one\"}
...ignoring

PLAY RECAP *********************************************************************
10.0.0.4                   : ok=3    changed=1    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0   
10.0.0.5                   : ok=2    changed=0    unreachable=0    failed=1    skipped=1    rescued=0    ignored=0   
10.0.0.6                   : ok=4    changed=2    unreachable=0    failed=0    skipped=0    rescued=0    ignored=1   
10.0.0.9                   : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0   
";

    fn parsed(text: &str) -> OutputParser {
        let mut parser = OutputParser::default();
        for line in text.lines() {
            parser.feed(line);
        }
        parser
    }

    #[test]
    fn the_recap_gives_every_count_per_host() {
        let recap = parse_recap(&parsed(RUN).recap_lines);
        assert_eq!(recap.len(), 4);
        assert_eq!(
            recap["10.0.0.6"],
            Recap { ok: 4, changed: 2, unreachable: 0, failed: 0, skipped: 0, rescued: 0, ignored: 1 }
        );
        assert_eq!(recap["10.0.0.9"].unreachable, 1);
        assert!(!recap["10.0.0.9"].succeeded() && !recap["10.0.0.4"].succeeded() && recap["10.0.0.6"].succeeded());
        assert!(parse_recap(&lines("no recap here\nhost ok=1")).is_empty());
    }

    #[test]
    fn failures_name_the_host_the_step_and_the_message() {
        let failures = parsed(RUN).failures;
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert_eq!(failures[0].host, "10.0.0.9");
        assert_eq!(failures[0].step, "Gathering Facts");
        assert!(failures[0].unreachable && failures[0].message.ends_with("No route to host second line"));
        assert_eq!(failures[1].step, "faas_dirigent : Write the config (checked with dirigent --check)");
        assert_eq!(failures[1].message, "failed to validate: invalid config: sandbox_host");
        assert_eq!(failures[2].host, "10.0.0.5");
        assert_eq!(failures[2].step, "faas_sysctl : Set the values that differ (item=net.core.somaxconn=65535)");
        assert!(failures[2].message.contains("permission denied"));
    }

    fn exit(code: i32) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus::from_raw(code << 8)
    }

    fn run_hosts() -> Vec<(String, Destination)> {
        ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.9"]
            .iter()
            .map(|a| (a.to_string(), Destination { user: "root".into(), address: a.to_string(), port: 22 }))
            .collect()
    }

    #[test]
    fn failing_hosts_become_one_error_naming_each() {
        let error = outcome(&run_hosts(), parsed(RUN), exit(2), Duration::ZERO).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("provisioning failed on 3 host(s): "), "{text}");
        assert!(text.contains("root@10.0.0.9:22 unreachable at step `Gathering Facts`: Failed to connect"), "{text}");
        assert!(text.contains("root@10.0.0.4:22 failed at step `faas_dirigent : Write the config"), "{text}");
        let ProvisionError::HostsFailed { report, not_run, .. } = error else { panic!("{text}") };
        let host = |address: &str| report.hosts.iter().find(|host| host.destination.address == address);
        assert_eq!(host("10.0.0.6").expect("host").recap.ignored, 1);
        assert!(not_run.is_empty());

        // Every host of a play failed: ansible-playbook stops, later plays' hosts are not in the recap.
        let mut hosts = run_hosts();
        hosts.push(("10.0.0.10".into(), Destination { user: "root".into(), address: "10.0.0.10".into(), port: 22 }));
        let text = outcome(&hosts, parsed(RUN), exit(4), Duration::ZERO).unwrap_err().to_string();
        assert!(text.ends_with("; not provisioned, ansible-playbook stopped first: root@10.0.0.10:22"), "{text}");
    }

    #[test]
    fn a_clean_run_is_a_report_and_a_run_without_recap_an_abort() {
        let clean = "PLAY [x] ***\n\nTASK [t] ***\nok: [a]\n\nPLAY RECAP ***\n\
                     a : ok=5 changed=0 unreachable=0 failed=0 skipped=1 rescued=0 ignored=0\n";
        let hosts = vec![("a".to_string(), Destination { user: "u".into(), address: "a".into(), port: 22 })];
        let report = outcome(&hosts, parsed(clean), exit(0), Duration::from_secs(3)).expect("report");
        assert_eq!(report.changed(), 0);
        assert_eq!(report.hosts[0].recap.ok, 5);
        assert!(report.to_string().contains("u@a:22: ok=5 changed=0"), "{report}");

        let broken = "ERROR! the role 'faas_x' was not found in /work/ansible/roles\n";
        let error = outcome(&hosts, parsed(broken), exit(1), Duration::ZERO).unwrap_err().to_string();
        assert!(error.contains("exited with status 1") && error.contains("role 'faas_x' was not found"), "{error}");

        let missing = "PLAY RECAP ***\nb : ok=1 changed=0 unreachable=0 failed=0\n";
        let error = outcome(&hosts, parsed(missing), exit(0), Duration::ZERO).unwrap_err().to_string();
        assert!(error.contains("no line for host u@a:22"), "{error}");
    }

    #[test]
    fn a_missing_program_or_playbook_says_what_to_do() {
        let dir = std::env::temp_dir();
        let inventory = Inventory::from_node_list("r@a r@b r@c r@d", None).expect("inventory");
        let playbooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible");
        let mut options = ProvisionOptions::new(&playbooks, &dir);
        options.program = "/nonexistent/ansible-playbook".into();
        let error = provision(&inventory, &SessionOptions::default(), &options).unwrap_err().to_string();
        assert_eq!(
            error,
            "/nonexistent/ansible-playbook not found: apt-get install ansible-core (or pip install ansible-core)"
        );
        let error = provision(&inventory, &SessionOptions::default(), &ProvisionOptions::new(&dir, &dir))
            .unwrap_err()
            .to_string();
        assert!(error.contains("site.yml not found"), "{error}");
        let options = ProvisionOptions::new(&playbooks, "/nonexistent/bin");
        let error = provision(&inventory, &SessionOptions::default(), &options).unwrap_err().to_string();
        assert!(error.starts_with("binary folder /nonexistent/bin:") && error.contains("cargo build"), "{error}");
    }
}
