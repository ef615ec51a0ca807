//! Scaling and placement: each autoscaler tick decides how many sandboxes a function should have, and a
//! creation is placed on a worker with its resources reserved, all under the lock so that a concurrent
//! decision already counts it.

use std::sync::Arc;

use super::lifecycle::PlannedSandbox;
use super::{Core, State};
use crate::control_plane::placement::PlacementError;

impl Core {
    /// One autoscaler tick over every function.
    pub async fn tick(self: &Arc<Self>) {
        let names = self.locked().registry.names();
        for name in names {
            self.scale_function(&name).await;
        }
    }

    /// Runs the autoscaler of one function and starts the creations or removals it asks for.
    pub async fn scale_function(self: &Arc<Self>, name: &str) {
        if !self.is_reconstructed() {
            // Creating before the workers told what runs would double what survived the restart.
            return;
        }
        let now = self.clock.now();
        let (planned, remove) = {
            let mut state = self.locked();
            let Some(record) = state.registry.get_mut(name) else { return };
            let decision = record.decide(now);
            let current = record.ready() + record.creating();
            let mut remove = record.ready().saturating_sub(decision.desired);
            if !record.may_scale_down(now) {
                remove = 0;
            }
            let create = decision.desired.saturating_sub(current);
            (self.plan_creations(&mut state, name, create), remove)
        };
        self.launch_creations(name, planned);
        if remove > 0 {
            let core = Arc::clone(self);
            let name = name.to_owned();
            tokio::spawn(async move { core.remove_sandboxes(&name, remove).await });
        }
    }

    /// Places `count` sandboxes and reserves their resources and `creating` slots, all under the caller's
    /// lock, so that a concurrent decision already counts them.
    pub(super) fn plan_creations(
        &self,
        state: &mut State,
        function: &str,
        count: u32,
    ) -> Vec<Result<PlannedSandbox, String>> {
        (0..count).map_while(|_| self.plan_creation(state, function).transpose()).collect()
    }

    /// One placement; `Ok(None)` when the function is gone.
    pub(super) fn plan_creation(&self, state: &mut State, function: &str) -> Result<Option<PlannedSandbox>, String> {
        let sequence = state.next_sequence();
        let Some(record) = state.registry.get(function) else { return Ok(None) };
        let (resources, function_uid) = (record.resources(), record.uid());
        let loads = state.members.loads();
        let index = self.placer.lock().unwrap_or_else(|e| e.into_inner()).place(&loads, resources);
        let index = index.map_err(|e: PlacementError| format!("cannot place a sandbox of '{function}': {e}"))?;
        let worker = loads[index].name.clone();
        let client = state.members.worker_client(&worker).ok_or_else(|| format!("worker {worker} vanished"))?;
        state.members.reserve(&worker, resources);
        let Some(record) = state.registry.get_mut(function) else { return Ok(None) };
        // The incarnation keeps ids unique across restarts: adopted sandboxes keep theirs.
        let request = record.start_creation(format!("{function}-{:x}-{sequence}", self.incarnation()));
        state.lifecycle.begin(&request.sandbox_id);
        Ok(Some(PlannedSandbox { worker, client, request, function_uid, resources }))
    }
}
