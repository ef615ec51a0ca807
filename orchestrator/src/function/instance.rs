//! State of one function process, shared by its HTTP and gRPC front ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;

use super::params::{Invocation, Workload};
use super::work::{self, WorkError, WorkOutcome};

/// Why an invocation produced no outcome.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The work could not run.
    #[error(transparent)]
    Work(#[from] WorkError),
    /// The worker thread ended without an answer (only if the work panicked, which is a bug).
    #[error("the work ended without an outcome")]
    Aborted,
}

/// A finished invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// What the work measured.
    pub outcome: WorkOutcome,
    /// Whether this was the first invocation the process served.
    pub cold_start: bool,
}

/// One function process: the cold-start flag and the machine name.
#[derive(Debug, Default)]
pub struct Instance {
    served: AtomicBool,
    hostname: OnceLock<String>,
    deployed_as: OnceLock<String>,
    /// Sleeps for the requested time and only accounts the memory (a simulated sandbox) instead of working.
    sleeps: bool,
}

impl Instance {
    /// A simulated sandbox of `function`: it answers as the function does but sleeps through the requested time
    /// and holds no memory, so that thousands fit on one machine.
    pub fn sleeping(function: &str) -> Self {
        let instance = Instance { sleeps: true, ..Instance::default() };
        let _ = instance.deployed_as.set(function.to_owned());
        instance
    }

    /// The name this process was deployed under (`FUNCTION_NAME`, set by the orchestrator's runtimes),
    /// for replies to requests that do not name their function.
    pub fn deployed_as(&self) -> &str {
        self.deployed_as.get_or_init(|| std::env::var("FUNCTION_NAME").unwrap_or_default())
    }

    /// The request's function name, else the deployed name.
    pub fn function_name(&self, requested: String) -> String {
        if requested.is_empty() { self.deployed_as().to_owned() } else { requested }
    }

    /// The machine name for replies, looked up on first use to keep it off the start-up path.
    pub fn hostname(&self) -> &str {
        self.hostname.get_or_init(read_hostname)
    }

    /// Runs one invocation; the spin runs on the blocking pool so that other requests and health probes stay
    /// responsive. Dropping the returned future (the client went away) ends the spin early.
    pub async fn invoke(&self, invocation: Invocation) -> Result<Completed, InvokeError> {
        let cold_start = !self.served.swap(true, Ordering::AcqRel);
        if self.sleeps && invocation.workload != Workload::Empty {
            let start = std::time::Instant::now();
            tokio::time::sleep(std::time::Duration::from_millis(invocation.requested_cpu_ms)).await;
            let memory_bytes =
                usize::try_from(invocation.requested_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
            return Ok(Completed { outcome: WorkOutcome { elapsed: start.elapsed(), memory_bytes }, cold_start });
        }
        if invocation.workload == Workload::Empty {
            let (outcome, _) = work::execute(&invocation, &AtomicBool::new(false))?;
            return Ok(Completed { outcome, cold_start });
        }
        let cancel = CancelOnDrop(Arc::default());
        let flag = Arc::clone(&cancel.0);
        let (reply, outcome) = oneshot::channel();
        tokio::task::spawn_blocking(move || match work::execute(&invocation, &flag) {
            Ok((outcome, memory)) => {
                let _ = reply.send(Ok(outcome));
                // Freeing a large allocation takes a while; the reply need not wait for it.
                drop(memory);
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        });
        let outcome = outcome.await.map_err(|_| InvokeError::Aborted)??;
        Ok(Completed { outcome, cold_start })
    }
}

/// Sets the flag when dropped, telling the spin that nobody waits for it any more.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The kernel's hostname (what `gethostname(2)` returns), else `$HOSTNAME`, else `unknown`.
fn read_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_invocation_is_the_cold_start() {
        let instance = Instance::default();
        let empty = Invocation { workload: Workload::Empty, ..Invocation::default() };
        assert!(instance.invoke(empty.clone()).await.unwrap().cold_start);
        assert!(!instance.invoke(Invocation::default()).await.unwrap().cold_start);
        assert!(!instance.invoke(empty).await.unwrap().cold_start);
    }

    #[tokio::test]
    async fn a_sleeping_instance_accounts_memory_without_holding_it() {
        let instance = Instance::sleeping("f");
        let asked = Invocation { requested_cpu_ms: 20, requested_memory_mib: 1 << 20, ..Invocation::default() };
        let done = instance.invoke(asked).await.unwrap();
        assert!(done.outcome.elapsed >= std::time::Duration::from_millis(20));
        assert_eq!(done.outcome.memory_bytes, 1 << 40, "a terabyte accounted, none allocated");
        assert_eq!(instance.deployed_as(), "f");
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!Instance::default().hostname().is_empty());
    }
}
