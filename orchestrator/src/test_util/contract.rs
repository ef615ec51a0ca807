//! The contract every [`SandboxRuntime`] keeps, as one suite: each check is an async function over a
//! [`Harness`] (the runtime, and how to make its sandboxes serve, hang, exit or crash), and
//! [`runtime_contract!`](crate::runtime_contract) stamps out one `#[tokio::test]` per check.
//!
//! A new runtime passes the suite by implementing [`Harness`] and adding one line to a test module:
//! `orchestrator::runtime_contract!(MyHarness::new());`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::broadcast;

use super::script::PATIENCE;
use crate::worker::runtime::{RuntimeError, SandboxExited, SandboxInfo, SandboxRuntime, SandboxSpec};

/// A runtime under test, and how to make its sandboxes do what the suite checks.
pub trait Harness: Send + Sync {
    /// The runtime.
    fn runtime(&self) -> &dyn SandboxRuntime;
    /// A sandbox that starts and becomes ready.
    fn serving(&self, id: &str) -> SandboxSpec;
    /// A sandbox that starts and keeps running without ever becoming ready.
    fn never_ready(&self, id: &str) -> SandboxSpec;
    /// A sandbox that starts and soon exits by itself, never ready (its readiness is still being waited for
    /// when it exits).
    fn exits_at_once(&self, id: &str) -> SandboxSpec;
    /// A sandbox that cannot be started.
    fn unstartable(&self, id: &str) -> SandboxSpec;
    /// Ends a running sandbox from outside the runtime, as a crash does.
    fn crash(&self, sandbox: &SandboxInfo);
    /// Whether anything of the sandbox still runs, whatever the runtime's own list says.
    fn running(&self, sandbox: &SandboxInfo) -> bool;
}

/// A spec of function `contract` with no resources asked.
pub fn spec(id: &str, image: &str, args: &[&str]) -> SandboxSpec {
    SandboxSpec {
        id: id.to_owned(),
        function: "contract".to_owned(),
        image: image.to_owned(),
        args: args.iter().map(|&arg| arg.to_owned()).collect(),
        env: BTreeMap::new(),
        cpu_millis: 0,
        memory_mib: 0,
    }
}

/// How long a never-ready sandbox is waited for: the check is that readiness gives up, not when.
const SHORT_READY_TIMEOUT: Duration = Duration::from_millis(200);

/// Stamps out one `#[tokio::test]` per check of the runtime contract, each with a fresh harness from
/// `$harness` (an expression, evaluated inside the test's tokio runtime); `ignored: "why", $harness` marks
/// every test `#[ignore = "why"]` (for runtimes that need root).
#[macro_export]
macro_rules! runtime_contract {
    (ignored: $reason:literal, $harness:expr) => {
        $crate::runtime_contract!(@all [#[ignore = $reason]] $harness);
    };
    ($harness:expr) => {
        $crate::runtime_contract!(@all [] $harness);
    };
    (@all [$($attrs:tt)*] $harness:expr) => {
        $crate::runtime_contract!(@checks [$($attrs)*] $harness;
            creates_a_sandbox_that_becomes_ready,
            gives_each_sandbox_its_own_address,
            refuses_a_duplicate_id,
            destroy_stops_the_sandbox_and_is_no_exit,
            notifies_a_crash_and_unlists_the_sandbox,
            fails_readiness_of_a_sandbox_that_exits_first,
            gives_up_readiness_at_the_timeout,
            fails_creation_of_an_unstartable_image,
            refuses_unknown_ids,
            shutdown_destroys_every_sandbox
        );
    };
    // One check at a time: the attributes repeat once per check, which a nested repetition cannot say.
    (@checks [$($attrs:tt)*] $harness:expr; $check:ident $(, $rest:ident)*) => {
        #[tokio::test]
        $($attrs)*
        async fn $check() {
            let harness = $harness;
            $crate::test_util::contract::$check(&harness).await;
        }
        $crate::runtime_contract!(@checks [$($attrs)*] $harness; $($rest),*);
    };
    (@checks [$($attrs:tt)*] $harness:expr;) => {};
}

/// Creates a sandbox and waits for its readiness; panics naming the sandbox if either fails.
async fn started(harness: &impl Harness, spec: SandboxSpec) -> SandboxInfo {
    let runtime = harness.runtime();
    let id = spec.id.clone();
    let sandbox = runtime.create(spec).await.unwrap_or_else(|err| panic!("creating {id}: {err}"));
    runtime.wait_ready(&sandbox, PATIENCE).await.unwrap_or_else(|err| panic!("{id} did not become ready: {err}"));
    sandbox
}

fn listed(runtime: &dyn SandboxRuntime, id: &str) -> bool {
    runtime.list().iter().any(|sandbox| sandbox.id == id)
}

/// The next exit notification, or a panic after [`PATIENCE`].
async fn next_exit(exits: &mut broadcast::Receiver<SandboxExited>) -> SandboxExited {
    match tokio::time::timeout(PATIENCE, exits.recv()).await {
        Ok(Ok(exited)) => exited,
        Ok(Err(err)) => panic!("the exit notifications ended: {err}"),
        Err(_) => panic!("no exit was notified within {PATIENCE:?}"),
    }
}

/// `create` answers with the spec's id and function; the sandbox is listed, becomes ready and runs.
pub async fn creates_a_sandbox_that_becomes_ready(harness: &impl Harness) {
    let spec = harness.serving("ready-1");
    let function = spec.function.clone();
    let sandbox = started(harness, spec).await;
    assert_eq!((sandbox.id.as_str(), sandbox.function.as_str()), ("ready-1", function.as_str()));
    assert!(listed(harness.runtime(), "ready-1"), "a created sandbox is listed");
    assert!(harness.running(&sandbox), "a ready sandbox runs");
    harness.runtime().destroy("ready-1").await.expect("destroying it");
}

/// Two sandboxes alive at once serve at two addresses.
pub async fn gives_each_sandbox_its_own_address(harness: &impl Harness) {
    let first = started(harness, harness.serving("own-1")).await;
    let second = started(harness, harness.serving("own-2")).await;
    assert_ne!(first.address, second.address);
    harness.runtime().shutdown().await;
}

/// A second sandbox with a live sandbox's id is refused, and the first one stays.
pub async fn refuses_a_duplicate_id(harness: &impl Harness) {
    let sandbox = started(harness, harness.serving("dup-1")).await;
    let again = harness.runtime().create(harness.serving("dup-1")).await;
    assert!(matches!(again, Err(RuntimeError::Duplicate(ref id)) if id == "dup-1"), "{again:?}");
    assert!(listed(harness.runtime(), "dup-1") && harness.running(&sandbox), "the first one is untouched");
    harness.runtime().shutdown().await;
}

/// `destroy` stops the sandbox before it returns, a second `destroy` finds nothing, and a destroyed
/// sandbox is not notified as an exit (the next notification is another sandbox's crash).
pub async fn destroy_stops_the_sandbox_and_is_no_exit(harness: &impl Harness) {
    let runtime = harness.runtime();
    let mut exits = runtime.exits();
    let destroyed = started(harness, harness.serving("destroy-1")).await;
    let crashed = started(harness, harness.serving("destroy-2")).await;
    runtime.destroy("destroy-1").await.expect("destroying it");
    assert!(!listed(runtime, "destroy-1"), "a destroyed sandbox is not listed");
    assert!(!harness.running(&destroyed), "nothing of a destroyed sandbox runs");
    let again = runtime.destroy("destroy-1").await;
    assert!(matches!(again, Err(RuntimeError::Unknown(_))), "{again:?}");
    harness.crash(&crashed);
    assert_eq!(next_exit(&mut exits).await.id, "destroy-2", "the destroyed sandbox was notified as an exit");
}

/// A sandbox that ends by itself is notified with its id and function, and is no longer listed.
pub async fn notifies_a_crash_and_unlists_the_sandbox(harness: &impl Harness) {
    let runtime = harness.runtime();
    let mut exits = runtime.exits();
    let sandbox = started(harness, harness.serving("crash-1")).await;
    harness.crash(&sandbox);
    let exited = next_exit(&mut exits).await;
    assert_eq!((exited.id.as_str(), exited.function.as_str()), ("crash-1", sandbox.function.as_str()));
    assert!(!exited.reason.is_empty(), "the exit says why");
    assert!(!listed(runtime, "crash-1"), "a notified sandbox is no longer listed");
}

/// Readiness of a sandbox that exits first fails (as an early exit, or as unknown once it is gone), and the
/// exit is notified.
pub async fn fails_readiness_of_a_sandbox_that_exits_first(harness: &impl Harness) {
    let runtime = harness.runtime();
    let mut exits = runtime.exits();
    let sandbox = runtime.create(harness.exits_at_once("early-1")).await.expect("it starts");
    let ready = runtime.wait_ready(&sandbox, PATIENCE).await;
    assert!(matches!(ready, Err(RuntimeError::ExitedEarly { .. } | RuntimeError::Unknown(_))), "{ready:?}");
    assert_eq!(next_exit(&mut exits).await.id, "early-1");
    assert!(!listed(runtime, "early-1"));
}

/// Readiness of a sandbox that never answers fails at the timeout; the sandbox keeps running until destroyed.
pub async fn gives_up_readiness_at_the_timeout(harness: &impl Harness) {
    let runtime = harness.runtime();
    let sandbox = runtime.create(harness.never_ready("slow-1")).await.expect("it starts");
    let ready = runtime.wait_ready(&sandbox, SHORT_READY_TIMEOUT).await;
    assert!(matches!(ready, Err(RuntimeError::NotReady { .. })), "{ready:?}");
    assert!(listed(runtime, "slow-1") && harness.running(&sandbox), "a sandbox that is not ready yet still runs");
    runtime.destroy("slow-1").await.expect("destroying it");
    assert!(!harness.running(&sandbox));
}

/// An image that cannot be started fails `create`, and nothing is listed.
pub async fn fails_creation_of_an_unstartable_image(harness: &impl Harness) {
    let created = harness.runtime().create(harness.unstartable("bad-1")).await;
    assert!(matches!(created, Err(RuntimeError::Start { .. })), "{created:?}");
    assert!(harness.runtime().list().is_empty());
}

/// Readiness and destruction of a sandbox the runtime does not have are refused as unknown.
pub async fn refuses_unknown_ids(harness: &impl Harness) {
    let runtime = harness.runtime();
    let stranger = SandboxInfo {
        id: "stranger".into(),
        function: "contract".into(),
        address: SocketAddr::from(([127, 0, 0, 1], 9)),
    };
    let ready = runtime.wait_ready(&stranger, PATIENCE).await;
    assert!(matches!(ready, Err(RuntimeError::Unknown(_))), "{ready:?}");
    let destroyed = runtime.destroy("stranger").await;
    assert!(matches!(destroyed, Err(RuntimeError::Unknown(_))), "{destroyed:?}");
}

/// `shutdown` stops every sandbox, ready or not, before it returns, and none of them is notified as an exit.
pub async fn shutdown_destroys_every_sandbox(harness: &impl Harness) {
    let runtime = harness.runtime();
    let mut exits = runtime.exits();
    let ready = started(harness, harness.serving("shut-1")).await;
    let starting = runtime.create(harness.never_ready("shut-2")).await.expect("it starts");
    runtime.shutdown().await;
    assert!(runtime.list().is_empty(), "nothing is listed after shutdown");
    assert!(!harness.running(&ready) && !harness.running(&starting), "nothing runs after shutdown");
    assert!(matches!(exits.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "shutdown is no exit");
}
