//! The containerd runtime end to end, against a containerd this test starts (root only: scripts/test.sh runs
//! these with `--ignored`): a cold start through the data plane into a real container, its creation breakdown
//! in Server-Timing, the function's status and `/metrics`, its cgroup limits, and nothing left afterwards —
//! after a clean stop and after a `kill -9` of the worker (its successor reaps what it left).

mod support;

use std::path::{Path, PathBuf};

use contracts::server_timing::{self, ServerTiming};
use orchestrator::test_util::containerd_daemon::ContainerdDaemon;
use orchestrator::worker::runtime::containerd::network::NETNS_DIR;
use support::*;

const IMAGE: &str = "dirigent.test/trace-function:e2e";
const STEPS: [&str; 7] = ["image", "snapshot", "container", "network", "task", "start", "ready"];

/// A containerd with the image imported, and the lease folder the worker's IPAM uses. Tests run at once, so
/// each has its own namespace, bridge and subnet (`slot`).
struct Containerd {
    daemon: ContainerdDaemon,
    ipam: tempfile::TempDir,
    namespace: String,
    bridge: String,
    slot: u8,
}

impl Containerd {
    fn start(slot: u8) -> Self {
        let daemon = ContainerdDaemon::start();
        let namespace = format!("e2e{slot}");
        daemon.import_binary(&namespace, IMAGE, Path::new(TRACE_FUNCTION));
        Self { daemon, ipam: tempfile::tempdir().unwrap(), namespace, bridge: format!("dirigent-e2e{slot}"), slot }
    }

    /// `dirigent standalone` with one containerd worker named `e2e-worker`.
    fn cluster_yaml(&self) -> String {
        standalone_yaml(1, "")
            + &format!(
                "  name: e2e-worker\n  runtime: containerd\n  containerd:\n    socket: {}\n    namespace: {}\n    \
                 subnet: 10.242.{}.0/24\n    bridge: {}\n    ipam_dir: {}\n",
                self.daemon.socket().display(),
                self.namespace,
                self.slot,
                self.bridge,
                self.ipam.path().display()
            )
    }

    /// The ids `ctr <what> ls` lists (its first column, under a header line).
    fn listed(&self, what: &str) -> Vec<String> {
        let listing = self.daemon.ctr(&self.namespace, &[what, "ls"]);
        listing.lines().skip(1).filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
    }

    /// Everything a sandbox makes, as still found: containers, tasks, sandbox snapshots (the image's own
    /// committed snapshot stays), leases, network namespaces, IP leases, cgroups, the bridge.
    fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self.listed("containers").into_iter().map(|c| format!("container {c}")).collect();
        left.extend(self.listed("tasks").into_iter().map(|t| format!("task {t}")));
        let image_layers = self.daemon.ctr(&self.namespace, &["images", "ls"]);
        let snapshots = self.listed("snapshots");
        left.extend(snapshots.into_iter().filter(|s| !s.starts_with("sha256:")).map(|s| format!("snapshot {s}")));
        left.extend(self.listed("leases").into_iter().map(|l| format!("lease {l}")));
        let netns = std::fs::read_dir(NETNS_DIR).into_iter().flatten().filter_map(|e| e.ok());
        let netns = netns
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&format!("{}-", self.namespace)));
        left.extend(netns.map(|n| format!("network namespace {n}")));
        left.extend(ip_leases(self.ipam.path()).into_iter().map(|ip| format!("IP lease {ip}")));
        let cgroups = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().filter_map(|e| e.ok());
        let cgroups = cgroups.map(|controller| controller.path().join(&self.namespace)).filter(|path| path.exists());
        left.extend(cgroups.map(|path| format!("cgroup {}", path.display())));
        if Path::new(&format!("/sys/class/net/{}", self.bridge)).exists() {
            left.push(format!("bridge {}", self.bridge));
        }
        assert!(image_layers.contains(IMAGE), "the image stays imported: {image_layers}");
        left
    }
}

/// host-local keeps one file per leased address (named by the address) beside `lock` and `last_reserved_ip.*`.
fn ip_leases(ipam: &Path) -> Vec<String> {
    let files = walk(ipam);
    let names = files.iter().filter_map(|f| f.file_name()?.to_str().map(str::to_owned));
    names.filter(|name| name.parse::<std::net::IpAddr>().is_ok()).collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] })
        .collect()
}

/// A limit of the container's cgroup (v1: `/sys/fs/cgroup/<controller>/<path>/<file>`; v2: one tree).
fn cgroup_value(pid: u32, controller: &str, file: &str) -> Option<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == controller).then(|| format!("/sys/fs/cgroup/{controller}{path}/{file}"))
    });
    std::fs::read_to_string(v1?).ok().map(|value| value.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and containerd: scripts/test.sh runs it with --ignored"]
async fn a_cold_start_reaches_a_real_container_with_its_breakdown_and_leaves_nothing() {
    let containerd = Containerd::start(0);
    let mut cluster = Role::start("standalone", &containerd.cluster_yaml());
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    let registered = register(&api, "boxed", |spec| {
        spec.image = IMAGE.into();
        spec.cpu_millis = 500;
        spec.memory_mib = 96;
    });
    assert_eq!(registered.await.status(), 201);

    let cold = invoke(&proxy, "boxed", 5).await;
    assert_eq!(cold.status(), 200);
    let header = cold.headers()[server_timing::HEADER].to_str().unwrap().to_owned();
    let timing = ServerTiming::parse(&header);
    assert_eq!(timing.cold_start.as_deref(), Some("triggered"), "{header}");
    let steps: Vec<&str> = timing.create_steps.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(steps, STEPS, "the breakdown in Server-Timing: {header}");
    let create = timing.create_us.unwrap_or(0);
    assert!(timing.create_steps.iter().all(|(_, took)| *took <= create), "each step within create: {header}");
    let body: serde_json::Value = cold.json().await.unwrap();
    assert_eq!(body["ColdStart"], true, "{body}");

    let view = function(&api, "boxed").await;
    let sandbox = &view.status.sandboxes[0];
    assert!(sandbox.address.starts_with("10.242.0."), "the sandbox has an address of the subnet: {sandbox:?}");
    let status_steps: Vec<&str> = sandbox.creation_steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(status_steps, STEPS, "the breakdown in the function's status");
    let metrics = client().get(format!("http://{api}/metrics")).send().await.unwrap().text().await.unwrap();
    for step in STEPS {
        let line = format!("dirigent_sandbox_creation_step_seconds_count{{step=\"{step}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing from /metrics");
    }

    let pids = pids_with_env(&[format!("SANDBOX_ID={}", sandbox.id)]);
    assert_eq!(pids.len(), 1, "one process in the container: {pids:?}");
    assert_eq!(cgroup_value(pids[0], "memory", "memory.limit_in_bytes").as_deref(), Some("100663296"), "96 MiB");
    assert_eq!(cgroup_value(pids[0], "cpu", "cpu.cfs_quota_us").as_deref(), Some("50000"), "half a core");

    let warm = invoke(&proxy, "boxed", 0).await;
    assert_eq!((warm.status().as_u16(), cold_start_of(&warm)), (200, "none".to_owned()));
    assert!(!containerd.listed("containers").is_empty(), "the container runs while the worker does");
    assert!(cluster.stop().success());
    assert_eq!(containerd.leftovers(), Vec::<String>::new(), "a stopped worker leaves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and containerd: scripts/test.sh runs it with --ignored"]
async fn a_killed_workers_containers_are_reaped_by_its_successor() {
    let containerd = Containerd::start(1);
    let mut cluster = Role::start("standalone", &containerd.cluster_yaml());
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    assert_eq!(register(&api, "orphaned", |spec| spec.image = IMAGE.into()).await.status(), 201);
    assert_eq!(invoke(&proxy, "orphaned", 0).await.status(), 200);
    cluster.crash();
    let orphans = containerd.listed("containers");
    assert_eq!(orphans.len(), 1, "a SIGKILLed worker cannot remove its container: {orphans:?}");

    // The same worker (by name) starts again: it removes what its predecessor left before it serves.
    let mut successor = Role::start("standalone", &containerd.cluster_yaml());
    assert_eq!(containerd.listed("containers"), Vec::<String>::new(), "reaped before the successor was ready");
    assert!(successor.stop().success());
    assert_eq!(containerd.leftovers(), Vec::<String>::new(), "nothing is left after the successor stops");
}
