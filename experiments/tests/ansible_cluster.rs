//! The Ansible playbooks (`ansible/site.yml`, run by `experiments::provision`) against four network-namespace hosts
//! of `scripts/test-cluster.sh` in the paper's layout (loader, control plane, data plane, worker): they converge, a
//! second run changes nothing, and a cluster with an unreachable host or unknown host keys fails naming the host and
//! the step. Needs root and ansible-core; `scripts/test.sh` runs it with `--ignored`.
//!
//! The namespace hosts share this machine's filesystem and dpkg and cannot reach the package mirrors, so the test
//! installs the packages the playbooks want in the root namespace first (the hosts then find them installed) and
//! points every path variable of the playbooks into the test's temporary folder. Sysctls are per network namespace
//! and iptables rules too: the test checks that the root namespace's stay as they were.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use experiments::cluster::inventory::Inventory;
use experiments::provision::{ProvisionError, ProvisionOptions, ProvisionReport, provision};
use experiments::ssh::{Destination, Session, SessionOptions};
use serde_json::{Value, json};
use support::Cluster;

/// What the playbooks install on workers and (with faas_ports_open) on the other roles.
const PACKAGES: [&str; 6] = ["containerd", "runc", "crun", "containernetworking-plugins", "iproute2", "iptables"];
const BINARIES: [&str; 3] = ["dirigent", "trace-function", "loader"];
const SHORT: Duration = Duration::from_secs(10);
/// How provision() names its private folder in the temp dir (a random suffix follows).
const PROVISION_FOLDER: &str = "experiments-provision-";

#[test]
#[ignore = "needs root, network namespaces and ansible-core: scripts/test.sh runs it as root with --ignored"]
fn the_playbooks_converge_on_a_namespace_cluster_and_a_second_run_changes_nothing() {
    let binaries = support::bin_dir(&BINARIES);
    install_missing_packages();
    let root_namespace_before = root_namespace_state();
    let mut cluster = Cluster::up(4);
    let destinations = cluster.destinations();
    let inventory = paper_inventory(&cluster);
    let ssh = cluster.options();
    let paths = cluster.scratch.path().join("provisioned");
    let options = options(&binaries, &paths);
    hide_python_apt(&ssh, &destinations, cluster.scratch.path());

    let folders_before = provision_folders();
    let started = Instant::now();
    let first = provision(&inventory, &ssh, &options).unwrap_or_else(|e| panic!("first run: {e}"));
    eprintln!("first run: {:?}\n{first}", started.elapsed());
    assert_eq!(first.hosts.len(), 4);
    for host in &first.hosts {
        assert!(host.recap.succeeded() && host.recap.ok > 0, "{}: {:?}", host.destination, host.recap);
    }
    assert!(first.changed() > 0, "a fresh cluster must be changed: {first}");
    nothing_left_by_provision(&folders_before);
    check_the_hosts(&ssh, &destinations, &paths, &binaries);

    let started = Instant::now();
    let second = provision(&inventory, &ssh, &options).unwrap_or_else(|e| panic!("second run: {e}"));
    eprintln!("second run: {:?}\n{second}", started.elapsed());
    unchanged(&second);
    nothing_left_by_provision(&folders_before);

    unreachable_host(&cluster, &options);
    unknown_host_keys(&cluster, &inventory, &options);

    assert_eq!(root_namespace_state(), root_namespace_before, "the root namespace's sysctls or iptables changed");
    cluster.down_and_check();
}

/// The paper's placement over the cluster's hosts: h1 loader, h2 control plane, h3 data plane, h4 worker.
fn paper_inventory(cluster: &Cluster) -> Inventory {
    Inventory::from_node_list(&cluster.node_list(), Some(&cluster.dir.join("id_ed25519"))).expect("inventory")
}

/// The playbooks' paths inside `paths` (the hosts share this machine's filesystem), ports opened (iptables rules
/// in each host's namespace).
fn options(binaries: &Path, paths: &Path) -> ProvisionOptions {
    std::fs::create_dir_all(paths.join("sysctl.d")).expect("sysctl.d folder");
    let mut options = ProvisionOptions::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible"), binaries);
    let vars = json!({
        "faas_install_dir": paths.join("bin"),
        "faas_config_dir": paths.join("etc"),
        "faas_unit_dir": paths.join("systemd"),
        "faas_sysctl_file": paths.join("sysctl.d/60-faas-toolkit.conf"),
        "faas_ports_open": true,
    });
    let Value::Object(vars) = vars else { unreachable!() };
    options.extra_vars = vars;
    options
}

/// Hides python3-apt on every host, as on a minimal Debian host that lacks the package (package_facts needed it):
/// each host's sshd has a mount namespace of its own, so bind mounts over the package's files change what that host
/// sees and nothing else; they go with the host. (An empty folder over `apt` would import as a namespace package.)
fn hide_python_apt(ssh: &SessionOptions, destinations: &[Destination], scratch: &Path) {
    let stand_in = scratch.join("hidden-python-apt");
    std::fs::create_dir_all(&stand_in).expect("stand-in folder");
    std::fs::write(stand_in.join("__init__.py"), "raise ImportError('python3-apt is hidden by the test')\n")
        .expect("stand-in module");
    let hide = format!(
        "set -e; packages=/usr/lib/python3/dist-packages; mount --bind {} \"$packages/apt\"; \
         for module in \"$packages\"/apt_pkg.*.so; do mount --bind /dev/null \"$module\"; done; \
         for module in apt apt_pkg; do if /usr/bin/python3 -c \"import $module\" 2>/dev/null; then \
         echo \"$module still imports\" >&2; exit 1; fi; done",
        experiments::ssh::shell_quote(&stand_in.to_string_lossy())
    );
    for host in destinations {
        run(ssh, host, &hide);
    }
    assert!(
        Command::new("/usr/bin/python3").args(["-c", "import apt"]).status().is_ok_and(|s| s.success()),
        "hiding python3-apt on the hosts reached the root namespace"
    );
}

fn check_the_hosts(ssh: &SessionOptions, destinations: &[Destination], paths: &Path, binaries: &Path) {
    for binary in BINARIES {
        let installed = paths.join("bin").join(binary);
        let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(size(&installed), size(&binaries.join(binary)), "{installed:?}");
    }
    let config = |name: &str| {
        let path = paths.join("etc").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    };
    let (control_plane, data_plane, worker) = (&destinations[1].address, &destinations[2].address, &destinations[3]);
    assert!(config("control-plane.yaml").contains(&format!("advertise_host: {control_plane}\n")));
    let data_plane_config = config("data-plane.yaml");
    assert!(data_plane_config.contains(&format!("advertise_host: {data_plane}\n")), "{data_plane_config}");
    assert!(data_plane_config.contains(&format!("control_plane: {control_plane}:9090\n")), "{data_plane_config}");
    let worker_config = config("worker.yaml");
    assert!(worker_config.contains(&format!("sandbox_host: {}\n", worker.address)), "{worker_config}");
    for role in ["control-plane", "data-plane", "worker"] {
        let unit = std::fs::read_to_string(paths.join(format!("systemd/faas-{role}.service"))).expect("unit");
        let (dirigent, config) = (paths.join("bin/dirigent"), paths.join(format!("etc/{role}.yaml")));
        let exec = format!("ExecStart={} {role} --config {}", dirigent.display(), config.display());
        assert!(unit.contains(&exec), "{unit}");
    }

    // Sysctls on the data plane and the loader (their own namespaces), not on the worker.
    let sysctl = "sysctl -n net.core.somaxconn net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse";
    for host in [&destinations[0], &destinations[2]] {
        let output = run(ssh, host, sysctl);
        assert_eq!(output.split_whitespace().collect::<Vec<_>>(), ["65535", "30000", "65000", "1"], "{host}");
    }
    assert_ne!(run(ssh, worker, "sysctl -n net.core.somaxconn").trim(), "65535", "the worker got the sysctls");
    // Ports: the control plane's accepted in its own namespace.
    let rules = run(ssh, &destinations[1], "iptables -S INPUT");
    for port in ["9090", "9091"] {
        assert!(rules.contains(&format!("--dport {port} "),) && rules.contains("faas-toolkit"), "{rules}");
    }
}

fn unchanged(report: &ProvisionReport) {
    let changed: Vec<String> = report
        .hosts
        .iter()
        .filter(|host| host.recap.changed > 0 || !host.recap.succeeded())
        .map(|host| format!("{}: {:?}", host.destination, host.recap))
        .collect();
    assert!(changed.is_empty(), "the second run changed or failed hosts: {changed:?}");
}

/// A fifth host (a worker) at an address of the cluster's subnet where nothing answers.
fn unreachable_host(cluster: &Cluster, options: &ProvisionOptions) {
    let ghost = cluster.absent_address();
    let list = format!("{} root@{ghost}", cluster.node_list());
    let inventory = Inventory::from_node_list(&list, Some(&cluster.dir.join("id_ed25519"))).unwrap();
    let ssh = SessionOptions { connect_timeout: Duration::from_secs(3), ..cluster.options() };
    let error = provision(&inventory, &ssh, options).expect_err("a run with an unreachable host must fail");
    let message = error.to_string();
    eprintln!("unreachable host: {message}");
    let ProvisionError::HostsFailed { failures, not_run, report } = error else {
        panic!("expected HostsFailed: {message}")
    };
    assert_eq!((failures.len(), not_run.len()), (1, 0), "{message}");
    assert_eq!(failures[0].host, format!("root@{ghost}:22"));
    assert!(failures[0].unreachable && failures[0].step == "Gathering Facts", "{message}");
    assert!(message.contains(&format!("root@{ghost}:22 unreachable at step `Gathering Facts`")), "{message}");
    unchanged(&ProvisionReport {
        hosts: report.hosts.into_iter().filter(|host| host.destination.address != ghost).collect(),
        elapsed: report.elapsed,
    });
}

/// An empty known_hosts file: the control plane's host (the first play's) is refused and named; ansible-playbook
/// stops there (every host of the play failed), so the others are named as not provisioned.
fn unknown_host_keys(cluster: &Cluster, inventory: &Inventory, options: &ProvisionOptions) {
    let known_hosts = cluster.scratch.path().join("empty_known_hosts");
    std::fs::write(&known_hosts, "").expect("known_hosts");
    let ssh = SessionOptions { known_hosts: known_hosts.clone(), ..cluster.options() };
    let error = provision(inventory, &ssh, options).expect_err("unknown host keys must fail");
    let message = error.to_string();
    eprintln!("unknown host keys: {message}");
    let ProvisionError::HostsFailed { failures, not_run, .. } = &error else {
        panic!("expected HostsFailed: {message}")
    };
    let control_plane = inventory.hosts[1].destination.to_string();
    assert_eq!(failures.len(), 1, "{message}");
    assert_eq!((failures[0].host.as_str(), failures[0].step.as_str()), (control_plane.as_str(), "Gathering Facts"));
    assert!(failures[0].unreachable && failures[0].message.contains("Host key verification failed"), "{message}");
    let others: Vec<String> = [0, 2, 3].iter().map(|&i| inventory.hosts[i].destination.to_string()).collect();
    assert_eq!(not_run, &others, "{message}");
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), "", "strict checking must not record keys");
}

/// provision()'s private folders (`experiments-provision-<random>` in the temp dir) that exist now.
fn provision_folders() -> BTreeSet<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(PROVISION_FOLDER))
        .map(|entry| entry.path())
        .collect()
}

/// provision() closed the SSH connections ansible keeps open (ControlPersist, control sockets in its folder) and
/// removed its folder: none but those in `before` (another program's, from before the run) is left. The masters
/// exit once they have answered the exit request: wait for that with a deadline.
fn nothing_left_by_provision(before: &BTreeSet<PathBuf>) {
    let ours = |cmdline: &str| {
        cmdline.contains(PROVISION_FOLDER) && !before.iter().any(|folder| cmdline.contains(&*folder.to_string_lossy()))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let masters = support::processes_where(|p| ours(&p.cmdline) && p.cmdline.contains("[mux]"));
        if masters.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "SSH master connections left: {masters:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<PathBuf> = provision_folders().difference(before).cloned().collect();
    assert!(left.is_empty(), "provision() left {left:?}");
}

fn run(ssh: &SessionOptions, host: &Destination, command: &str) -> String {
    let mut session = Session::connect(host, ssh).unwrap_or_else(|e| panic!("{e}"));
    session.exec_ok(command, SHORT).unwrap_or_else(|e| panic!("{e}")).stdout
}

/// Installs what the playbooks would install, from the root namespace (the namespace hosts reach no mirror).
fn install_missing_packages() {
    let missing: Vec<&str> = PACKAGES
        .into_iter()
        .filter(|package| {
            let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", package]).output();
            !status.is_ok_and(|o| String::from_utf8_lossy(&o.stdout) == "install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("installing {missing:?} with apt-get (the playbooks' packages; the namespace hosts reach no mirror)");
    let apt = |args: &[&str]| {
        Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status().expect("run apt-get")
    };
    assert!(apt(&["update", "-qq"]).success(), "apt-get update failed");
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    assert!(apt(&install).success(), "apt-get install {missing:?} failed: install them by hand");
}

/// The root namespace's sysctls the playbooks set in the hosts' namespaces, and its iptables rules.
fn root_namespace_state() -> (String, String) {
    let sysctls = ["net/core/somaxconn", "net/ipv4/ip_local_port_range", "net/ipv4/tcp_tw_reuse"]
        .iter()
        .map(|key| std::fs::read_to_string(Path::new("/proc/sys").join(key)).expect("read a sysctl"))
        .collect();
    let iptables = Command::new("iptables").arg("-S").output().expect("iptables -S");
    (sysctls, String::from_utf8_lossy(&iptables.stdout).into_owned())
}
