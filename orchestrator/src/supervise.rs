//! Supervised background work: a control loop that panics or ends on its own stops its role with a clear
//! message, instead of leaving the role answering without its autoscaler, heartbeats or reports.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A background task of a role stopped before the role was shut down.
#[derive(Debug, thiserror::Error)]
#[error("{task} stopped unexpectedly ({reason}); the role stops with it: see the log above and report it")]
pub struct TaskStopped {
    /// Which task.
    pub task: &'static str,
    /// How it ended: a panic's message, or that it returned.
    pub reason: String,
}

/// Spawns `work`; if it panics or returns before `shutdown` is cancelled, `shutdown` is cancelled (the role
/// stops) and the handle yields why.
pub fn spawn<F>(task: &'static str, shutdown: CancellationToken, work: F) -> JoinHandle<Result<(), TaskStopped>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let inner = tokio::spawn(work);
    tokio::spawn(async move {
        let ended = inner.await;
        if shutdown.is_cancelled() && ended.is_ok() {
            return Ok(());
        }
        shutdown.cancel();
        let reason = match ended {
            Ok(()) => "it returned".to_owned(),
            Err(err) if err.is_panic() => format!("panicked: {}", panic_message(err.into_panic())),
            Err(err) => err.to_string(),
        };
        tracing::error!(task, %reason, "background task stopped; stopping the role");
        Err(TaskStopped { task, reason })
    })
}

/// Waits for a supervised task; a panic of the supervisor itself counts as the task's.
pub async fn join(task: &'static str, handle: JoinHandle<Result<(), TaskStopped>>) -> Result<(), TaskStopped> {
    handle.await.unwrap_or_else(|err| Err(TaskStopped { task, reason: err.to_string() }))
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_stops_the_role_and_says_why() {
        let shutdown = CancellationToken::new();
        let handle = spawn("the autoscaler", shutdown.clone(), async { panic!("bucket out of range") });
        let err = join("the autoscaler", handle).await.unwrap_err();
        assert!(shutdown.is_cancelled());
        assert!(
            err.to_string().contains("the autoscaler stopped unexpectedly (panicked: bucket out of range)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn returning_early_stops_the_role_but_ending_at_shutdown_is_fine() {
        let shutdown = CancellationToken::new();
        let err = join("reports", spawn("reports", shutdown.clone(), async {})).await.unwrap_err();
        assert_eq!(err.reason, "it returned");
        assert!(shutdown.is_cancelled());
        let shutdown = CancellationToken::new();
        let handle = spawn("reports", shutdown.clone(), {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
        shutdown.cancel();
        assert!(join("reports", handle).await.is_ok());
    }
}
