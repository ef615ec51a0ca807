//! The state machine: the registry tables of the replica's SQLite file (the same tables and rows as the
//! single-replica SQLite store, so `load()` reads them the same way), and in `raft_state` the last applied log
//! position, the membership and the current snapshot. Applying a batch of entries is one transaction, rows and
//! position together, so a restarted replica resumes exactly after what it applied.
//!
//! A snapshot is the whole [`StoredRegistry`] as JSON: registries are small (thousands of entries), and a
//! replica that installs one replaces its tables with it.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use contracts::config::Synchronous;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::db::{Shared, Values, cause};
use super::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::control_plane::store::rows::Row;
use crate::control_plane::store::sqlite::{read_registry, replace_registry, sqlite_error, write_row};
use crate::control_plane::store::{StoreError, StoredRegistry};

/// The last applied position, the membership and the current snapshot.
const STATE: Values = Values("raft_state");

/// The snapshot as kept in `raft_state`: its position and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    registry: StoredRegistry,
}

/// The replica's registry as Raft applies changes to it.
pub struct StateMachine {
    db: Shared,
    /// Snapshots built so far by this process: part of a snapshot's id, which must be unique.
    built: Arc<AtomicU64>,
}

impl StateMachine {
    /// Opens the state machine in the replica's file at `path`, creating it when missing.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        Ok(Self { db: Shared::open(path, synchronous, &STATE.create())?, built: Arc::default() })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let read = self.db.run(|connection, path| applied(connection, path));
        read.await.map_err(|e| StorageIOError::read_state_machine(cause(&e)).into())
    }

    /// One transaction for the batch: every change's row, the membership and the new last applied position.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let count = entries.len();
        let applied = self.db.run(move |connection, path| apply(connection, path, &entries)).await;
        applied.map(|()| vec![(); count]).map_err(|e| StorageIOError::write_state_machine(cause(&e)).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), built: Arc::clone(&self.built) }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Replaces the registry with the snapshot's, in one transaction with its position and membership.
    async fn install_snapshot(&mut self, meta: &SnapshotMeta, data: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let failed = |e: &StoreError| StorageIOError::write_snapshot(Some(meta.signature()), cause(e)).into();
        let location = format!("snapshot {} from the leader", meta.snapshot_id);
        let registry: StoredRegistry = super::db::decode_bytes(data.get_ref(), &location).map_err(|e| failed(&e))?;
        let snapshot = StoredSnapshot { meta: meta.clone(), registry };
        let installed = self.db.run(move |connection, path| install(connection, path, &snapshot)).await;
        installed.map_err(|e| failed(&e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let read = self.db.run(|connection, path| STATE.get::<StoredSnapshot>(connection, path, "snapshot"));
        let stored = read.await.map_err(|e| StorageIOError::read_snapshot(None, cause(&e)))?;
        stored.map(into_snapshot).transpose().map_err(|e| StorageIOError::read_snapshot(None, cause(&e)).into())
    }
}

/// Builds a snapshot of the registry as applied.
pub struct SnapshotBuilder {
    db: Shared,
    built: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Reads the registry and its position in one transaction (so they agree) and keeps the result as the
    /// current snapshot.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let number = self.built.fetch_add(1, Ordering::Relaxed) + 1;
        let built = self.db.run(move |connection, path| build(connection, path, number)).await;
        let stored = built.map_err(|e| StorageIOError::read_state_machine(cause(&e)))?;
        into_snapshot(stored).map_err(|e| StorageIOError::read_state_machine(cause(&e)).into())
    }
}

fn applied(connection: &Connection, path: &Path) -> Result<(Option<LogId>, StoredMembership), StoreError> {
    let last: Option<LogId> = STATE.get(connection, path, "applied")?;
    let membership: Option<StoredMembership> = STATE.get(connection, path, "membership")?;
    Ok((last, membership.unwrap_or_default()))
}

fn apply(connection: &mut Connection, path: &Path, entries: &[Entry]) -> Result<(), StoreError> {
    let Some(last) = entries.last() else { return Ok(()) };
    let transaction = connection.transaction().map_err(|e| sqlite_error(path, "starting to apply", e))?;
    for entry in entries {
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(change) => {
                write_row(&transaction, &Row::of(change)?).map_err(|e| sqlite_error(path, "applying", e))?;
            }
            EntryPayload::Membership(membership) => {
                let stored = StoredMembership::new(Some(entry.log_id), membership.clone());
                STATE.put(&transaction, path, "membership", &stored)?;
            }
        }
    }
    STATE.put(&transaction, path, "applied", &last.log_id)?;
    transaction.commit().map_err(|e| sqlite_error(path, "committing what was applied", e))
}

fn install(connection: &mut Connection, path: &Path, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
    let transaction = connection.transaction().map_err(|e| sqlite_error(path, "starting to install", e))?;
    replace_registry(&transaction, path, &snapshot.registry)?;
    STATE.put(&transaction, path, "applied", &snapshot.meta.last_log_id)?;
    STATE.put(&transaction, path, "membership", &snapshot.meta.last_membership)?;
    STATE.put(&transaction, path, "snapshot", snapshot)?;
    transaction.commit().map_err(|e| sqlite_error(path, "committing a snapshot", e))
}

fn build(connection: &mut Connection, path: &Path, number: u64) -> Result<StoredSnapshot, StoreError> {
    // Immediate: no apply may slip in between reading the tables and keeping the snapshot.
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(path, "starting a snapshot", e))?;
    let registry = read_registry(&transaction, path)?;
    let (last_log_id, last_membership) = applied(&transaction, path)?;
    let position = last_log_id.map_or_else(|| "empty".to_owned(), |id| format!("{}-{}", id.leader_id, id.index));
    let snapshot_id = format!("{position}-{number}-{}", std::process::id());
    let snapshot = StoredSnapshot { meta: SnapshotMeta { last_log_id, last_membership, snapshot_id }, registry };
    STATE.put(&transaction, path, "snapshot", &snapshot)?;
    transaction.commit().map_err(|e| sqlite_error(path, "keeping a snapshot", e))?;
    Ok(snapshot)
}

fn into_snapshot(stored: StoredSnapshot) -> Result<Snapshot, StoreError> {
    let data = serde_json::to_vec(&stored.registry)
        .map_err(|source| StoreError::Encode { name: format!("snapshot {}", stored.meta.snapshot_id), source })?;
    Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(data)) })
}

#[cfg(test)]
mod tests;
