//! Distribution: every change of a function's endpoint set goes to every data plane as its full state;
//! a data plane that registers, or missed a push, gets a full resync (drop what is gone, then every
//! function's state), one at a time per data plane.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Core, DataPlanes};
use crate::peers::DataPlanePeer;
use crate::proto::dirigent::{FunctionSet, FunctionState};

/// Where each registered data plane stands with its resync.
#[derive(Debug, Default, Clone, Copy)]
struct Resync {
    /// A push to it failed: it gets every function again.
    needed: bool,
    /// A resync to it is running.
    running: bool,
}

/// The resync bookkeeping of the registered data planes, by name.
#[derive(Default)]
pub(super) struct Distribution {
    data_planes: BTreeMap<String, Resync>,
}

impl Distribution {
    /// A data plane (re-)registered: its first resync runs now.
    pub(super) fn resync_started(&mut self, name: &str) {
        self.data_planes.insert(name.to_owned(), Resync { needed: false, running: true });
    }

    pub(super) fn forget(&mut self, name: &str) {
        self.data_planes.remove(name);
    }

    /// A push to `name` failed; data planes no longer registered are ignored.
    fn mark(&mut self, name: &str) {
        if let Some(resync) = self.data_planes.get_mut(name) {
            resync.needed = true;
        }
    }

    /// The data planes due for a resync, now marked running: one resync per data plane at a time, so that
    /// an unreachable one is retried, not stormed.
    fn start_due(&mut self) -> Vec<String> {
        let due = self.data_planes.iter_mut().filter(|(_, r)| r.needed && !r.running);
        due.map(|(name, r)| {
            *r = Resync { needed: false, running: true };
            name.clone()
        })
        .collect()
    }

    fn finished(&mut self, name: &str) {
        if let Some(resync) = self.data_planes.get_mut(name) {
            resync.running = false;
        }
    }
}

impl Core {
    /// Pushes one function's full state to data planes and returns when all have applied it (for removed
    /// endpoints, that includes their drain). A data plane that missed it gets every function again later.
    pub(super) async fn push(&self, mut state: FunctionState, data_planes: DataPlanes) {
        state.incarnation = self.incarnation();
        let failed = send_state(state, data_planes).await;
        self.mark_for_resync(failed);
    }

    pub(super) fn mark_for_resync(&self, data_planes: impl IntoIterator<Item = String>) {
        let mut state = self.locked();
        for name in data_planes {
            state.distribution.mark(&name);
        }
    }

    /// Brings one data plane in line with the registry (after it registered, or after a push to it failed):
    /// first it drops every function the registry no longer has, then it gets every function's state.
    pub(super) async fn resync(&self, name: String, client: Arc<dyn DataPlanePeer>) {
        let (set, states) = {
            let mut state = self.locked();
            let generation = state.next_sequence();
            let names = state.registry.names();
            let set = FunctionSet { names, generation, incarnation: self.incarnation() };
            (set, state.registry.snapshots(generation))
        };
        match client.retain_functions(set).await {
            Ok(_) => {
                for state in states {
                    self.push(state, vec![(name.clone(), Arc::clone(&client))]).await;
                }
            }
            Err(status) => {
                tracing::warn!(data_plane = %name, %status, "resync failed; trying again later");
                self.mark_for_resync([name.clone()]);
            }
        }
        self.locked().distribution.finished(&name);
    }

    /// Resyncs the data planes whose last push failed.
    pub(super) async fn resync_failed(self: &Arc<Self>) {
        let targets: DataPlanes = {
            let mut state = self.locked();
            let due = state.distribution.start_due();
            due.into_iter().filter_map(|name| state.members.data_plane_client(&name).map(|c| (name, c))).collect()
        };
        for (name, client) in targets {
            let core = Arc::clone(self);
            tokio::spawn(async move { core.resync(name, client).await });
        }
    }
}

/// Sends one function's full state to data planes, concurrently; returns the names of those that failed.
async fn send_state(state: FunctionState, data_planes: DataPlanes) -> Vec<String> {
    let results = futures_util::future::join_all(data_planes.into_iter().map(|(name, client)| {
        let state = state.clone();
        async move {
            let result = client.sync_function(state).await;
            result.err().map(|status| {
                tracing::warn!(data_plane = %name, %status, "endpoint push failed; a full resync follows");
                name
            })
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}
