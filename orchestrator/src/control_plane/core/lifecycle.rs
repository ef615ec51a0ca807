//! Sandbox lifecycle: creation (with one retry), recording what became ready, exits, scale-down and kills.
//! A sandbox is `pending` while its creation runs and `retiring` while it is drained and killed; both are
//! known to reconciliation, which kills only what the registry does not know.

use std::collections::BTreeSet;
use std::sync::Arc;

use contracts::api::Sandbox;

use super::{Core, Workers};
use crate::control_plane::placement::Resources;
use crate::peers::WorkerPeer;
use crate::proto::dirigent::{CreateSandboxReply, CreateSandboxRequest, FunctionFailure, KillSandboxRequest};

/// Ids of sandboxes not in the registry but not unknown either.
#[derive(Default)]
pub(super) struct Lifecycle {
    /// Being created: known, though not ready yet.
    pending: BTreeSet<String>,
    /// Out of the registry and being drained or killed.
    retiring: BTreeSet<String>,
    /// Pending sandboxes whose exit was reported before their creation finished.
    exited_early: BTreeSet<String>,
}

impl Lifecycle {
    pub(super) fn begin(&mut self, id: &str) {
        self.pending.insert(id.to_owned());
    }

    /// The creation of `id` is over; returns whether the sandbox exited meanwhile.
    pub(super) fn finish(&mut self, id: &str) -> bool {
        self.pending.remove(id);
        self.exited_early.remove(id)
    }

    /// Notes the exit of a sandbox still being created; returns false if it is not.
    fn exited_while_pending(&mut self, id: &str) -> bool {
        let pending = self.pending.contains(id);
        if pending {
            self.exited_early.insert(id.to_owned());
        }
        pending
    }

    pub(super) fn retire(&mut self, id: &str) {
        self.retiring.insert(id.to_owned());
    }

    fn retired(&mut self, id: &str) {
        self.retiring.remove(id);
    }

    /// Pending or retiring.
    pub(super) fn knows(&self, id: &str) -> bool {
        self.pending.contains(id) || self.retiring.contains(id)
    }

    #[cfg(test)]
    pub(super) fn pending_count(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    pub(super) fn early_exits(&self) -> usize {
        self.exited_early.len()
    }

    #[cfg(test)]
    pub(super) fn exited_early_for_test(&mut self, id: &str) {
        self.exited_early.insert(id.to_owned());
    }
}

/// A sandbox placed on a worker, its resources reserved, not yet created.
pub(super) struct PlannedSandbox {
    pub(super) worker: String,
    pub(super) client: Arc<dyn WorkerPeer>,
    pub(super) request: CreateSandboxRequest,
    /// The registration it is for: a function deleted and registered again under the same name is another.
    pub(super) function_uid: u64,
    /// What was reserved on the worker.
    pub(super) resources: Resources,
}

impl Core {
    /// A data plane queued a request for a function at zero: create a sandbox now, not at the next tick.
    pub fn request_cold_start(self: &Arc<Self>, function: &str) {
        if !self.is_reconstructed() {
            // Recovery ends with a tick that sees the queued load.
            return;
        }
        let now = self.clock.now();
        let planned = {
            let mut state = self.locked();
            let Some(record) = state.registry.get_mut(function) else { return };
            if record.ready() + record.creating() > 0 || record.spec().max_scale == 0 {
                return;
            }
            // The request is load the data planes have not reported yet; without this sample the next
            // tick would see an idle window and scale the new sandbox straight back to zero.
            record.record_load(now, 1.0);
            self.plan_creations(&mut state, function, 1)
        };
        self.launch_creations(function, planned);
    }

    /// A worker reports a sandbox that exited on its own.
    pub async fn sandbox_exited(self: &Arc<Self>, function: &str, sandbox_id: &str, reason: &str) {
        let push = {
            let mut state = self.locked();
            if state.lifecycle.exited_while_pending(sandbox_id) {
                // It died between its worker's reply and our recording it: do not record a dead sandbox.
                return;
            }
            let generation = state.next_sequence();
            let Some(record) = state.registry.get_mut(function) else { return };
            let Some(sandbox) = record.remove_sandbox(sandbox_id) else { return };
            let resources = record.resources();
            let snapshot = record.snapshot(generation);
            state.members.release(&sandbox.worker, resources);
            (snapshot, state.members.data_plane_clients())
        };
        tracing::warn!(%function, sandbox = %sandbox_id, %reason, "sandbox exited; removed from the data planes");
        // Detached: the registry already changed, so the push must happen even if the worker's call is cancelled.
        let core = Arc::clone(self);
        let _ = tokio::spawn(async move { core.push(push.0, push.1).await }).await;
    }

    /// Runs planned creations in the background.
    pub(super) fn launch_creations(self: &Arc<Self>, function: &str, planned: Vec<Result<PlannedSandbox, String>>) {
        for plan in planned {
            let core = Arc::clone(self);
            let function = function.to_owned();
            tokio::spawn(async move { core.create_with_retry(&function, plan).await });
        }
    }

    /// One creation, tried again once on a fresh placement: a transient failure (a worker restarting, a
    /// port taken by another process between check and bind) must not fail the requests waiting for it.
    async fn create_with_retry(&self, function: &str, first: Result<PlannedSandbox, String>) {
        const ATTEMPTS: u32 = 2;
        let mut plan = first;
        for attempt in 1..=ATTEMPTS {
            let message = match plan {
                Ok(planned) => match self.create_sandbox(function, planned).await {
                    Ok(()) => return,
                    Err(message) => message,
                },
                Err(message) => message,
            };
            if attempt == ATTEMPTS {
                return self.creation_failed(function, message).await;
            }
            tracing::info!(%function, %message, "sandbox creation failed; trying once more");
            plan = match self.plan_creation(&mut self.locked(), function) {
                Ok(Some(planned)) => Ok(planned),
                Ok(None) => return,
                Err(message) => Err(message),
            };
        }
    }

    /// Creates one planned sandbox; on failure its reservation is released and the reason returned.
    async fn create_sandbox(&self, function: &str, plan: PlannedSandbox) -> Result<(), String> {
        let deadline = self.config.sandbox_create_timeout;
        let outcome = tokio::time::timeout(deadline, plan.client.create_sandbox(plan.request.clone())).await;
        let worker = &plan.worker;
        let message = match outcome {
            Ok(Ok(reply)) => {
                self.creation_succeeded(function, plan, reply).await;
                return Ok(());
            }
            Ok(Err(status)) => format!("worker {worker} could not create a sandbox: {}", status.message()),
            Err(_) => format!("worker {worker} did not create a sandbox within {deadline:?}"),
        };
        self.locked().settle(function, &plan, false);
        Err(message)
    }

    /// Records a ready sandbox and pushes it to the data planes, unless its function was deleted (or
    /// registered anew), its worker was dropped, or it already exited: then it is killed.
    async fn creation_succeeded(&self, function: &str, plan: PlannedSandbox, reply: CreateSandboxReply) {
        let push = {
            let mut state = self.locked();
            let kept = state.settle(function, &plan, true);
            state.observe_steps(&reply.steps);
            let generation = state.next_sequence();
            match state.registry.get_mut(function).filter(|_| kept) {
                Some(record) => {
                    record.add_sandbox(Sandbox {
                        id: reply.sandbox_id.clone(),
                        worker: plan.worker.clone(),
                        address: reply.address.clone(),
                        creation_micros: reply.creation_micros,
                        creation_steps: reply
                            .steps
                            .iter()
                            .map(|step| contracts::api::CreationStep { name: step.name.clone(), micros: step.micros })
                            .collect(),
                    });
                    Some((record.snapshot(generation), state.members.data_plane_clients()))
                }
                None => None,
            }
        };
        match push {
            Some((snapshot, data_planes)) => {
                tracing::debug!(%function, sandbox = %reply.sandbox_id, worker = %plan.worker, micros = reply.creation_micros, "sandbox ready");
                self.push(snapshot, data_planes).await;
            }
            None => {
                let _ = plan.client.kill_sandbox(KillSandboxRequest { sandbox_id: reply.sandbox_id }).await;
            }
        }
    }

    /// Records a failed creation; when the function has no sandbox at all, its queued requests fail now.
    async fn creation_failed(&self, function: &str, message: String) {
        tracing::warn!(%function, %message, "sandbox creation failed");
        let fail = {
            let mut state = self.locked();
            let Some(record) = state.registry.get_mut(function) else { return };
            record.creation_failed(message.clone());
            let none_left = record.ready() + record.creating() == 0;
            none_left.then(|| state.members.data_plane_clients())
        };
        let Some(data_planes) = fail else { return };
        let failure = FunctionFailure { name: function.to_owned(), message };
        futures_util::future::join_all(data_planes.iter().map(|(_, client)| client.fail_queued(failure.clone()))).await;
    }

    /// Removes `count` sandboxes: out of the data planes first (drained), then killed.
    pub async fn remove_sandboxes(&self, function: &str, count: u32) {
        let (removed, push, workers) = {
            let mut state = self.locked();
            let generation = state.next_sequence();
            let Some(record) = state.registry.get_mut(function) else { return };
            let removed = record.take_newest(count);
            let resources = record.resources();
            let snapshot = record.snapshot(generation);
            state.retire_all(&removed, resources);
            (removed, (snapshot, state.members.data_plane_clients()), state.members.worker_clients())
        };
        tracing::debug!(%function, count = removed.len(), "scaling down");
        self.push(push.0, push.1).await;
        self.retire(removed, &workers).await;
    }

    /// Kills sandboxes already taken out of the registry (and out of the data planes, drained); until then
    /// they are `retiring`, which reconciliation leaves alone.
    pub(super) async fn retire(&self, sandboxes: Vec<Sandbox>, workers: &Workers) {
        futures_util::future::join_all(sandboxes.iter().map(|sandbox| {
            let client = workers.iter().find(|(name, _)| *name == sandbox.worker).map(|(_, c)| Arc::clone(c));
            async move {
                let Some(client) = client else { return };
                let request = KillSandboxRequest { sandbox_id: sandbox.id.clone() };
                if let Err(status) = client.kill_sandbox(request).await {
                    tracing::warn!(sandbox = %sandbox.id, worker = %sandbox.worker, %status, "cannot kill a sandbox");
                }
            }
        }))
        .await;
        let mut state = self.locked();
        for sandbox in &sandboxes {
            state.lifecycle.retired(&sandbox.id);
        }
    }
}
