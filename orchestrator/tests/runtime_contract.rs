//! The sandbox runtime contract (`orchestrator::test_util::contract`) against the process runtime, with
//! `trace-function` as the image that serves. Each runtime added later gets its own harness and one
//! `runtime_contract!` line.

mod support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orchestrator::test_util::contract::{self, Harness};
use orchestrator::worker::runtime::ports::PortRange;
use orchestrator::worker::runtime::process::ProcessRuntime;
use orchestrator::worker::runtime::{SandboxInfo, SandboxRuntime, SandboxSpec};

/// Each harness gets ports of its own, so that checks running at once never race for one.
static NEXT_PORTS: AtomicU16 = AtomicU16::new(33_000);
const PORTS_EACH: u16 = 20;

/// [`ProcessRuntime`] under the contract. Its sandboxes carry this test process's id in their environment,
/// so that finding them in `/proc` never touches another test's sandbox with the same id.
struct ProcessHarness {
    runtime: ProcessRuntime,
    marker: String,
}

impl ProcessHarness {
    fn new() -> Self {
        let first = NEXT_PORTS.fetch_add(PORTS_EACH, Ordering::Relaxed);
        let ports = PortRange { first, last: first + PORTS_EACH - 1 };
        let runtime = ProcessRuntime::new(IpAddr::from([127, 0, 0, 1]), ports);
        Self { runtime, marker: format!("RUNTIME_CONTRACT_TEST={}", std::process::id()) }
    }

    fn spec(&self, id: &str, image: &str, args: &[&str]) -> SandboxSpec {
        let mut spec = contract::spec(id, image, args);
        let (name, value) = self.marker.split_once('=').unwrap_or_default();
        spec.env.insert(name.to_owned(), value.to_owned());
        // trace-function logs each start at info; the test output needs only its warnings.
        spec.env.insert("RUST_LOG".to_owned(), "warn".to_owned());
        spec
    }

    fn pids(&self, sandbox: &SandboxInfo) -> Vec<u32> {
        support::pids_with_env(&[format!("SANDBOX_ID={}", sandbox.id), self.marker.clone()])
    }
}

impl Harness for ProcessHarness {
    fn runtime(&self) -> &dyn SandboxRuntime {
        &self.runtime
    }

    fn serving(&self, id: &str) -> SandboxSpec {
        self.spec(id, support::TRACE_FUNCTION, &[])
    }

    fn never_ready(&self, id: &str) -> SandboxSpec {
        self.spec(id, "/bin/sleep", &["60"])
    }

    fn exits_at_once(&self, id: &str) -> SandboxSpec {
        // Not at once: readiness is to be waiting when the exit comes.
        self.spec(id, "/bin/sh", &["-c", "sleep 0.2; exit 3"])
    }

    fn unstartable(&self, id: &str) -> SandboxSpec {
        self.spec(id, "/nonexistent/sandbox-image", &[])
    }

    fn crash(&self, sandbox: &SandboxInfo) {
        kill_all(&self.pids(sandbox), sandbox);
    }

    fn running(&self, sandbox: &SandboxInfo) -> bool {
        !self.pids(sandbox).is_empty()
    }
}

orchestrator::runtime_contract!(ProcessHarness::new());

/// SIGKILLs every process of a sandbox (a crash from outside); there must be one.
fn kill_all(pids: &[u32], sandbox: &SandboxInfo) {
    assert!(!pids.is_empty(), "no process of sandbox {} to crash", sandbox.id);
    for &pid in pids {
        let _ = kill(Pid::from_raw(i32::try_from(pid).unwrap_or(0)), Signal::SIGKILL);
    }
}

/// [`SimulatedRuntime`] under the contract: sandboxes are tasks, so crashing one and seeing whether it runs go
/// through the runtime's own test hooks (there is no process to signal).
mod simulated {
    use super::*;
    use orchestrator::worker::runtime::simulated::{EXIT_AFTER, NEVER_READY, SimulatedRuntime};

    struct SimulatedHarness {
        runtime: SimulatedRuntime,
    }

    impl SimulatedHarness {
        fn new() -> Self {
            let first = NEXT_PORTS.fetch_add(PORTS_EACH, Ordering::Relaxed);
            let ports = PortRange { first, last: first + PORTS_EACH - 1 };
            let delay = std::time::Duration::from_millis(40);
            Self { runtime: SimulatedRuntime::new(IpAddr::from([127, 0, 0, 1]), ports, delay) }
        }
    }

    impl Harness for SimulatedHarness {
        fn runtime(&self) -> &dyn SandboxRuntime {
            &self.runtime
        }

        fn serving(&self, id: &str) -> SandboxSpec {
            contract::spec(id, "trace-function", &[])
        }

        fn never_ready(&self, id: &str) -> SandboxSpec {
            contract::spec(id, NEVER_READY, &[])
        }

        fn exits_at_once(&self, id: &str) -> SandboxSpec {
            contract::spec(id, &format!("{EXIT_AFTER}200ms"), &[])
        }

        fn unstartable(&self, id: &str) -> SandboxSpec {
            contract::spec(id, "", &[])
        }

        fn crash(&self, sandbox: &SandboxInfo) {
            assert!(self.runtime.crash(&sandbox.id), "no sandbox {} to crash", sandbox.id);
        }

        fn running(&self, sandbox: &SandboxInfo) -> bool {
            self.runtime.task_alive(&sandbox.id)
        }
    }

    orchestrator::runtime_contract!(SimulatedHarness::new());

    /// The port of [`sandboxes_spread_over_several_loopback_addresses`]: no other test uses it.
    const ONE_PORT: u16 = 32_700;

    /// Beyond the contract: with several addresses each sandbox listens on a (loopback address, port) pair of
    /// its own, and the runtime refuses a sandbox only when every pair is taken.
    #[tokio::test]
    async fn sandboxes_spread_over_several_loopback_addresses() {
        // One port, below the kernel's ephemeral range (32768 up): there an outgoing connection of another test may
        // hold it for a moment, and with a single port the allocator has no other to try (seen in CI).
        let first = ONE_PORT;
        let one_port = PortRange { first, last: first };
        let runtime =
            SimulatedRuntime::new(IpAddr::from([127, 0, 0, 1]), one_port, std::time::Duration::ZERO).with_addresses(2);
        let timeout = std::time::Duration::from_secs(10);
        let a = runtime.create(contract::spec("a", "trace-function", &[])).await.unwrap();
        let b = runtime.create(contract::spec("b", "trace-function", &[])).await.unwrap();
        runtime.wait_ready(&a, timeout).await.unwrap();
        runtime.wait_ready(&b, timeout).await.unwrap();
        let mut hosts = vec![a.address.ip(), b.address.ip()];
        hosts.sort();
        assert_eq!(hosts, [IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])]);
        assert!(a.address.port() == first && b.address.port() == first);
        let refused = runtime.create(contract::spec("c", "trace-function", &[])).await.unwrap_err();
        assert!(refused.to_string().contains("127.0.0.1-127.0.0.2"), "{refused}");
        runtime.destroy(&a.id).await.unwrap();
        // Destroy returns once the task has ended, and the task gives its pair back before that.
        let c = runtime.create(contract::spec("c", "trace-function", &[])).await.unwrap();
        assert_eq!(c.address, a.address, "the freed pair is handed out again");
        runtime.wait_ready(&c, timeout).await.unwrap();
        runtime.shutdown().await;
    }
}

/// [`ContainerdRuntime`] under the contract, against a containerd of its own (root only: scripts/test.sh runs
/// these with `--ignored`). Each harness has its own containerd, namespace, bridge, subnet and lease folder, and
/// on drop removes what a failed check may have left: shims (with the daemon), network namespaces, leases and
/// the bridge.
mod containerd {
    use super::*;
    use orchestrator::config::ContainerdConfig;
    use orchestrator::test_util::containerd_daemon::ContainerdDaemon;
    use orchestrator::worker::runtime::containerd::ContainerdRuntime;
    use orchestrator::worker::runtime::containerd::api::GrpcContainerd;
    use orchestrator::worker::runtime::containerd::network::{CniNetwork, NETNS_DIR, SandboxNetwork};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU8;

    const IMAGE: &str = "dirigent.test/trace-function:contract";
    static NEXT: AtomicU8 = AtomicU8::new(0);

    struct ContainerdHarness {
        runtime: ContainerdRuntime,
        config: ContainerdConfig,
        _ipam: tempfile::TempDir,
        _daemon: ContainerdDaemon,
    }

    impl ContainerdHarness {
        async fn new() -> Self {
            let daemon = ContainerdDaemon::start();
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let ipam = tempfile::tempdir().unwrap();
            let config = ContainerdConfig {
                socket: daemon.socket().to_path_buf(),
                namespace: format!("contract{}-{n}", std::process::id()),
                subnet: format!("10.241.{n}.0/24"),
                bridge: format!("dctr{n}"),
                ipam_dir: ipam.path().to_path_buf(),
                ..ContainerdConfig::default()
            };
            daemon.import_binary(&config.namespace, IMAGE, std::path::Path::new(support::TRACE_FUNCTION));
            let api = GrpcContainerd::connect(&config.socket, &config.namespace, &config.snapshotter).await.unwrap();
            let runtime =
                ContainerdRuntime::start(Arc::new(api), Arc::new(CniNetwork::new(&config)), config.clone(), "contract")
                    .await
                    .expect("the runtime starts");
            Self { runtime, config, _ipam: ipam, _daemon: daemon }
        }

        fn spec(&self, id: &str, args: &[&str], env: &[(&str, &str)]) -> SandboxSpec {
            let mut spec = contract::spec(id, IMAGE, args);
            spec.env.insert("RUST_LOG".into(), "warn".into());
            spec.env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            spec
        }

        fn pids(&self, sandbox: &SandboxInfo) -> Vec<u32> {
            support::pids_with_env(&[format!("SANDBOX_ID={}", sandbox.id), "RUST_LOG=warn".to_owned()])
                .into_iter()
                .filter(|pid| in_namespace(*pid, &self.config.namespace))
                .collect()
        }
    }

    /// Whether the process's cgroup is under this harness's containerd namespace (the cgroup parent).
    fn in_namespace(pid: u32, namespace: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroup| cgroup.contains(namespace))
    }

    impl Drop for ContainerdHarness {
        fn drop(&mut self) {
            // What a failed check left: the daemon's drop kills the shims; the network is this host's.
            let prefix = format!("{}-", self.config.namespace);
            let left = std::fs::read_dir(NETNS_DIR).into_iter().flatten().filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.starts_with(&prefix).then_some(name)
            });
            let left: Vec<String> = left.collect();
            if !left.is_empty() {
                // On a thread with a runtime of its own: the test's runtime is the thread being dropped on.
                let config = self.config.clone();
                let _ = std::thread::spawn(move || {
                    let network = CniNetwork::new(&config);
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(futures_util::future::join_all(left.iter().map(|n| network.detach(n))));
                })
                .join();
            }
            orchestrator::worker::runtime::containerd::remove_cgroup_parent(&self.config.namespace);
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.config.bridge])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    impl Harness for ContainerdHarness {
        fn runtime(&self) -> &dyn SandboxRuntime {
            &self.runtime
        }

        fn serving(&self, id: &str) -> SandboxSpec {
            self.spec(id, &[], &[])
        }

        fn never_ready(&self, id: &str) -> SandboxSpec {
            // It listens, but not on the port the runtime probes.
            self.spec(id, &[], &[("PORT", "8089")])
        }

        fn exits_at_once(&self, id: &str) -> SandboxSpec {
            // trace-function refuses an unknown flag and exits 2.
            self.spec(id, &["/trace-function", "--no-such-flag"], &[])
        }

        fn unstartable(&self, id: &str) -> SandboxSpec {
            let mut spec = self.spec(id, &[], &[]);
            spec.image = "dirigent.test/not-imported:1".into();
            spec
        }

        fn crash(&self, sandbox: &SandboxInfo) {
            kill_all(&self.pids(sandbox), sandbox);
        }

        fn running(&self, sandbox: &SandboxInfo) -> bool {
            !self.pids(sandbox).is_empty()
        }
    }

    orchestrator::runtime_contract!(
        ignored: "needs root and containerd: scripts/test.sh runs it with --ignored",
        ContainerdHarness::new().await
    );
}
