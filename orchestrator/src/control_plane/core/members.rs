//! Membership: the registered workers (with what is placed on them) and data planes, their heartbeats and
//! their expiry; a re-registering worker is reconciled with the registry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contracts::api::{DataPlaneView, WorkerView};

use super::liveness::{HeldLease, LeasedPeer};
use super::{Core, DataPlanes, Membership, PeerError, State, Workers};
use crate::control_plane::placement::{Resources, WorkerLoad};
use crate::control_plane::store::{StoreChange, StoredDataPlane, StoredWorker};
use crate::peers::{DataPlanePeer, WorkerPeer};
use crate::proto::dirigent::{DataPlaneInfo, LoadReport, WorkerInfo};

/// A worker's heartbeats whose sandbox count differed from the registry's, in a row, before they reconcile.
const MISMATCHES_BEFORE_RECONCILE: u32 = 3;

struct WorkerRecord {
    address: String,
    client: Arc<dyn WorkerPeer>,
    /// What it offers and what is placed on it (the placement's ledger).
    load: WorkerLoad,
    /// When it last said it was alive (clock time).
    last_seen: Duration,
    /// Heartbeats in a row whose sandbox count differed from the registry's.
    count_mismatches: u32,
    /// The attachment holding this registration, if any; it ends when the record goes.
    lease: Option<HeldLease>,
}

struct DataPlaneRecord {
    proxy_address: String,
    grpc_address: String,
    client: Arc<dyn DataPlanePeer>,
    /// When it last reported (clock time).
    last_seen: Duration,
    /// The attachment holding this registration, if any; it ends when the record goes.
    lease: Option<HeldLease>,
}

/// The registered workers and data planes, by name.
#[derive(Default)]
pub(super) struct Members {
    workers: BTreeMap<String, WorkerRecord>,
    data_planes: BTreeMap<String, DataPlaneRecord>,
    /// What the store holds of each peer, so that a re-registration that changed nothing writes nothing.
    pub(super) stored_workers: BTreeMap<String, StoredWorker>,
    pub(super) stored_data_planes: BTreeMap<String, StoredDataPlane>,
    /// The last registration number handed to an attachment.
    registrations: u64,
}

impl Members {
    /// Forgets every live worker and data plane, ending their attachments, with no other effect: what the store
    /// holds of them stays, for a rebuild.
    pub(super) fn end_attachments(&mut self) {
        self.workers.clear();
        self.data_planes.clear();
    }

    /// Adds (or replaces) a worker; a re-registering one keeps what is placed on it.
    pub(super) fn add_worker(&mut self, info: WorkerInfo, client: Arc<dyn WorkerPeer>, now: Duration) {
        let previous = self.workers.remove(&info.name);
        let (cpu_used_millis, memory_used_mib, sandboxes) =
            previous.map_or((0, 0, 0), |w| (w.load.cpu_used_millis, w.load.memory_used_mib, w.load.sandboxes));
        let load = WorkerLoad {
            name: info.name.clone(),
            cpu_capacity_millis: info.cpu_millis,
            memory_capacity_mib: info.memory_mib,
            cpu_used_millis,
            memory_used_mib,
            sandboxes,
        };
        let record =
            WorkerRecord { address: info.address, client, load, last_seen: now, count_mismatches: 0, lease: None };
        self.workers.insert(info.name, record);
    }

    /// Notes a heartbeat; returns whether the worker and the registry should reconcile now.
    fn heartbeat(&mut self, name: &str, sandboxes: u32, now: Duration) -> Result<bool, PeerError> {
        let worker = self.workers.get_mut(name).ok_or_else(|| PeerError::Unknown(format!("worker {name}")))?;
        worker.last_seen = now;
        if worker.load.sandboxes == sandboxes {
            worker.count_mismatches = 0;
        } else {
            worker.count_mismatches += 1;
        }
        // Every few mismatching heartbeats, not once: a reconcile may fail or leave a real difference.
        Ok(worker.count_mismatches > 0 && worker.count_mismatches % MISMATCHES_BEFORE_RECONCILE == 0)
    }

    pub(super) fn has_worker(&self, name: &str) -> bool {
        self.workers.contains_key(name)
    }

    pub(super) fn worker_client(&self, name: &str) -> Option<Arc<dyn WorkerPeer>> {
        self.workers.get(name).map(|w| Arc::clone(&w.client))
    }

    /// The workers' clients, for kills outside the lock.
    pub(super) fn worker_clients(&self) -> Workers {
        self.workers.iter().map(|(name, w)| (name.clone(), Arc::clone(&w.client))).collect()
    }

    /// What each worker offers and has placed, for a placement decision.
    pub(super) fn loads(&self) -> Vec<WorkerLoad> {
        self.workers.values().map(|w| w.load.clone()).collect()
    }

    #[cfg(test)]
    pub(super) fn load(&self, name: &str) -> Option<&WorkerLoad> {
        self.workers.get(name).map(|w| &w.load)
    }

    /// Reserves a sandbox's resources on its worker.
    pub(super) fn reserve(&mut self, worker: &str, resources: Resources) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.load.cpu_used_millis += resources.cpu_millis;
            w.load.memory_used_mib += resources.memory_mib;
            w.load.sandboxes += 1;
        }
    }

    /// Releases a sandbox's resources on its worker.
    pub(super) fn release(&mut self, worker: &str, resources: Resources) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.load.cpu_used_millis = w.load.cpu_used_millis.saturating_sub(resources.cpu_millis);
            w.load.memory_used_mib = w.load.memory_used_mib.saturating_sub(resources.memory_mib);
            w.load.sandboxes = w.load.sandboxes.saturating_sub(1);
        }
    }

    fn add_data_plane(&mut self, info: &DataPlaneInfo, client: Arc<dyn DataPlanePeer>, now: Duration) {
        let record = DataPlaneRecord {
            proxy_address: info.proxy_address.clone(),
            grpc_address: info.grpc_address.clone(),
            client,
            last_seen: now,
            lease: None,
        };
        self.data_planes.insert(info.name.clone(), record);
    }

    fn data_plane_seen(&mut self, name: &str, now: Duration) -> Result<(), PeerError> {
        let dp = self.data_planes.get_mut(name).ok_or_else(|| PeerError::Unknown(format!("data plane {name}")))?;
        dp.last_seen = now;
        Ok(())
    }

    pub(super) fn data_plane_client(&self, name: &str) -> Option<Arc<dyn DataPlanePeer>> {
        self.data_planes.get(name).map(|d| Arc::clone(&d.client))
    }

    /// The data planes' clients, for a push outside the lock.
    pub(super) fn data_plane_clients(&self) -> DataPlanes {
        self.data_planes.iter().map(|(name, dp)| (name.clone(), Arc::clone(&dp.client))).collect()
    }

    /// Drops the workers and data planes not heard from within their timeouts; returns their names.
    fn expire(&mut self, now: Duration, worker_timeout: Duration, data_plane_timeout: Duration) -> Expired {
        let workers = silent(&self.workers, |w| w.last_seen, now, worker_timeout);
        let data_planes = silent(&self.data_planes, |d| d.last_seen, now, data_plane_timeout);
        for name in &workers {
            self.workers.remove(name);
        }
        for name in &data_planes {
            self.data_planes.remove(name);
        }
        Expired { workers, data_planes }
    }

    /// Hands the registration of `peer` to a new attachment, ending the previous attachment's hold.
    pub(super) fn lease(&mut self, peer: &LeasedPeer) -> Option<super::liveness::Lease> {
        self.registrations += 1;
        let registration = self.registrations;
        let slot = match peer {
            LeasedPeer::Worker(name) => &mut self.workers.get_mut(name)?.lease,
            LeasedPeer::DataPlane(name) => &mut self.data_planes.get_mut(name)?.lease,
        };
        let (held, lease) = HeldLease::new(peer.clone(), registration);
        *slot = Some(held);
        Some(lease)
    }

    /// Whether `lease` still holds its peer's registration (no newer one replaced it, it was not dropped).
    pub(super) fn holds(&self, lease: &super::liveness::Lease) -> bool {
        let held = match lease.peer() {
            LeasedPeer::Worker(name) => self.workers.get(name).and_then(|w| w.lease.as_ref()),
            LeasedPeer::DataPlane(name) => self.data_planes.get(name).and_then(|d| d.lease.as_ref()),
        };
        held.is_some_and(|held| held.registration() == lease.registration())
    }

    /// Notes a heartbeat on an attachment; for a worker, whether it and the registry should reconcile now.
    pub(super) fn leased_heartbeat(
        &mut self,
        lease: &super::liveness::Lease,
        sandboxes: u32,
        now: Duration,
    ) -> Result<bool, PeerError> {
        if !self.holds(lease) {
            return Err(PeerError::Unknown(format!("{} (registration {})", lease.peer(), lease.registration())));
        }
        match lease.peer() {
            LeasedPeer::Worker(name) => self.heartbeat(name, sandboxes, now),
            LeasedPeer::DataPlane(name) => self.data_plane_seen(name, now).map(|()| false),
        }
    }

    /// Takes out the registration `lease` holds, if it still holds it.
    pub(super) fn remove_leased(&mut self, lease: &super::liveness::Lease) -> Expired {
        let mut removed = Expired::default();
        if self.holds(lease) {
            match lease.peer() {
                LeasedPeer::Worker(name) => {
                    self.workers.remove(name);
                    removed.workers.push(name.clone());
                }
                LeasedPeer::DataPlane(name) => {
                    self.data_planes.remove(name);
                    removed.data_planes.push(name.clone());
                }
            }
        }
        removed
    }

    pub(super) fn counts(&self) -> Membership {
        Membership { workers: self.workers.len(), data_planes: self.data_planes.len() }
    }

    pub(super) fn worker_views(&self) -> Vec<WorkerView> {
        let view = |(name, w): (&String, &WorkerRecord)| WorkerView {
            name: name.clone(),
            address: w.address.clone(),
            sandboxes: w.load.sandboxes,
            cpu_capacity_millis: w.load.cpu_capacity_millis,
            cpu_used_millis: w.load.cpu_used_millis,
            memory_capacity_mib: w.load.memory_capacity_mib,
            memory_used_mib: w.load.memory_used_mib,
        };
        self.workers.iter().map(view).collect()
    }

    pub(super) fn data_plane_views(&self) -> Vec<DataPlaneView> {
        let view = |(name, d): (&String, &DataPlaneRecord)| DataPlaneView {
            name: name.clone(),
            proxy_address: d.proxy_address.clone(),
            grpc_address: d.grpc_address.clone(),
        };
        self.data_planes.iter().map(view).collect()
    }

    pub(super) fn proxy_addresses(&self) -> Vec<String> {
        self.data_planes.values().map(|d| d.proxy_address.clone()).collect()
    }
}

/// Who is dropped: missed their deadline, or their attachment ended.
#[derive(Default)]
pub(super) struct Expired {
    pub(super) workers: Vec<String>,
    pub(super) data_planes: Vec<String>,
}

/// Names of the peers not heard from within `deadline`.
fn silent<T>(
    peers: &BTreeMap<String, T>,
    last_seen: impl Fn(&T) -> Duration,
    now: Duration,
    deadline: Duration,
) -> Vec<String> {
    peers.iter().filter(|(_, p)| now.saturating_sub(last_seen(p)) > deadline).map(|(name, _)| name.clone()).collect()
}

impl Core {
    /// Registers (or re-registers) a worker, stores it if it changed, and reconciles it with the registry.
    pub fn register_worker(self: &Arc<Self>, info: WorkerInfo) -> Result<(), PeerError> {
        let name = info.name.clone();
        tracing::info!(worker = %info.name, address = %info.address, "worker registered");
        self.admit_worker(info)?;
        let core = Arc::clone(self);
        tokio::spawn(async move { core.reconcile_worker(&name).await });
        Ok(())
    }

    /// Adds a worker to the members (stored when new or changed).
    pub(super) fn admit_worker(&self, info: WorkerInfo) -> Result<(), PeerError> {
        let client = self.peers.worker(&info.address)?;
        let stored = StoredWorker::from(&info);
        let mut state = self.locked();
        if state.members.stored_workers.insert(stored.name.clone(), stored.clone()).as_ref() != Some(&stored) {
            self.peer_writes.send(StoreChange::SaveWorker(stored));
        }
        state.members.add_worker(info, client, self.clock.now());
        self.publish_membership(&state);
        Ok(())
    }

    /// Notes a worker's heartbeat. When the worker's sandbox count disagrees with the registry's for
    /// several heartbeats in a row (creations and kills in flight disagree briefly), the two reconcile:
    /// this catches a lost exit report.
    pub fn worker_heartbeat(self: &Arc<Self>, name: &str, sandboxes: u32) -> Result<(), PeerError> {
        let now = self.clock.now();
        let reconcile = self.locked().members.heartbeat(name, sandboxes, now)?;
        if reconcile {
            let core = Arc::clone(self);
            let name = name.to_owned();
            tokio::spawn(async move { core.reconcile_worker(&name).await });
        }
        Ok(())
    }

    /// Registers a data plane and pushes every function to it.
    pub fn register_data_plane(self: &Arc<Self>, info: DataPlaneInfo) -> Result<(), PeerError> {
        let client = self.peers.data_plane(&info.grpc_address)?;
        {
            let mut state = self.locked();
            let stored = StoredDataPlane::from(&info);
            if state.members.stored_data_planes.insert(stored.name.clone(), stored.clone()).as_ref() != Some(&stored) {
                self.peer_writes.send(StoreChange::SaveDataPlane(stored));
            }
            state.members.add_data_plane(&info, Arc::clone(&client), self.clock.now());
            state.distribution.resync_started(&info.name);
            self.publish_membership(&state);
        }
        tracing::info!(data_plane = %info.name, proxy = %info.proxy_address, "data plane registered");
        let core = Arc::clone(self);
        tokio::spawn(async move { core.resync(info.name, client).await });
        Ok(())
    }

    /// Takes a data plane's load report (its heartbeat too).
    pub fn report_load(&self, report: LoadReport) -> Result<(), PeerError> {
        let now = self.clock.now();
        let mut state = self.locked();
        state.members.data_plane_seen(&report.data_plane, now)?;
        for load in report.functions {
            state.latency.add(&load.latency_buckets, load.latency_sum_seconds);
            if let Some(function) = state.registry.get_mut(&load.function) {
                function.add_load(&report.data_plane, load);
            }
        }
        Ok(())
    }

    /// Drops workers and data planes that stopped reporting, and the sandboxes on those workers.
    pub async fn expire_peers(self: &Arc<Self>) {
        let now = self.clock.now();
        {
            let mut state = self.locked();
            let (worker_timeout, data_plane_timeout) = (self.config.worker_timeout, self.config.data_plane_timeout);
            let expired = state.members.expire(now, worker_timeout, data_plane_timeout);
            self.forget_peers(&mut state, &expired, "missed its heartbeat deadline");
        }
        self.resync_failed().await;
    }

    /// Forgets the workers and data planes already taken out of the members: a data plane's loads and
    /// distribution state, a worker's sandboxes, whose removal is pushed to the data planes left.
    pub(super) fn forget_peers(self: &Arc<Self>, state: &mut State, dropped: &Expired, why: &str) {
        for name in &dropped.workers {
            state.members.stored_workers.remove(name);
            self.peer_writes.send(StoreChange::DeleteWorker(name.clone()));
        }
        for name in &dropped.data_planes {
            state.members.stored_data_planes.remove(name);
            self.peer_writes.send(StoreChange::DeleteDataPlane(name.clone()));
            tracing::warn!(data_plane = %name, "data plane {why}; dropped");
            state.registry.forget_loads(name);
            state.distribution.forget(name);
        }
        for name in &dropped.workers {
            tracing::warn!(worker = %name, "worker {why}; dropped with its sandboxes");
        }
        if dropped.workers.is_empty() && dropped.data_planes.is_empty() {
            return;
        }
        self.publish_membership(state);
        let pushes = state.drop_sandboxes(|s| dropped.workers.contains(&s.worker));
        let data_planes = state.members.data_plane_clients();
        // In the background: a push waits for drains, and the caller holds the lock. The function is scaled at
        // once after, not at the next tick: what ran on a dead worker is replaced without waiting.
        for push in pushes {
            let (core, data_planes) = (Arc::clone(self), data_planes.clone());
            tokio::spawn(async move {
                let function = push.name.clone();
                core.push(push, data_planes).await;
                core.scale_function(&function).await;
            });
        }
    }
}
