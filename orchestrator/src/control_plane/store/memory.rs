//! The in-memory store: registrations live as long as the process (tests, and `store: memory`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use contracts::api::FunctionSpec;

use super::{RegistryStore, StoreChange, StoreError, StoreFuture, StoredDataPlane, StoredRegistry, StoredWorker};

/// Keeps registrations in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<Tables>,
    writes: AtomicU64,
}

#[derive(Debug, Default)]
struct Tables {
    functions: BTreeMap<String, FunctionSpec>,
    workers: BTreeMap<String, StoredWorker>,
    data_planes: BTreeMap<String, StoredDataPlane>,
}

impl Tables {
    fn apply(&mut self, change: StoreChange) {
        match change {
            StoreChange::SaveFunction(spec) => drop(self.functions.insert(spec.name.clone(), spec)),
            StoreChange::DeleteFunction(name) => drop(self.functions.remove(&name)),
            StoreChange::SaveWorker(worker) => drop(self.workers.insert(worker.name.clone(), worker)),
            StoreChange::DeleteWorker(name) => drop(self.workers.remove(&name)),
            StoreChange::SaveDataPlane(dp) => drop(self.data_planes.insert(dp.name.clone(), dp)),
            StoreChange::DeleteDataPlane(name) => drop(self.data_planes.remove(&name)),
        }
    }
}

impl RegistryStore for MemoryStore {
    fn apply(&self, change: StoreChange) -> StoreFuture<'_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).apply(change);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(())))
    }

    fn load(&self) -> Result<StoredRegistry, StoreError> {
        let tables = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(StoredRegistry {
            functions: tables.functions.values().cloned().collect(),
            workers: tables.workers.values().cloned().collect(),
            data_planes: tables.data_planes.values().cloned().collect(),
        })
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}
