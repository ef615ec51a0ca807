//! The Raft log and vote, in the replica's SQLite file: `raft_log` holds each entry as JSON by index,
//! `raft_log_state` the vote, the last committed position and the last purged one. Every change is one SQLite
//! transaction, acknowledged once committed, so it is as durable as `store.synchronous` says (`normal`:
//! survives a killed process; `full`: also a power loss, which Raft needs on a majority of replicas to never
//! lose a committed change).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use contracts::config::Synchronous;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use rusqlite::{Connection, params};

use super::db::{Shared, Values, cause, decode, encode};
use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::control_plane::store::StoreError;
use crate::control_plane::store::sqlite::sqlite_error;

/// The vote, committed and purged positions.
const STATE: Values = Values("raft_log_state");

/// The log and vote of one replica; clones share the connection (openraft reads the log from other tasks).
#[derive(Clone)]
pub struct LogStore {
    db: Shared,
}

impl LogStore {
    /// Opens the log in the replica's file at `path`, creating it when missing.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let tables = format!(
            "CREATE TABLE IF NOT EXISTS raft_log (idx INTEGER PRIMARY KEY, json TEXT NOT NULL); {}",
            STATE.create()
        );
        Ok(Self { db: Shared::open(path, synchronous, &tables)? })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (first, last) = (first(range.start_bound()), last(range.end_bound()));
        let read = self.db.run(move |connection, path| entries(connection, path, first, last)).await;
        read.map_err(|e| StorageIOError::read_logs(cause(&e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = self.db.run(|connection, path| {
            let purged: Option<LogId> = STATE.get(connection, path, "purged")?;
            let last = last_entry(connection, path)?.map(|entry| entry.log_id);
            Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
        });
        read.await.map_err(|e| StorageIOError::read_logs(cause(&e)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        let saved = self.db.run(move |connection, path| STATE.put(connection, path, "vote", &vote));
        saved.await.map_err(|e| StorageIOError::write_vote(cause(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let read = self.db.run(|connection, path| STATE.get(connection, path, "vote"));
        read.await.map_err(|e| StorageIOError::read_vote(cause(&e)).into())
    }

    /// Kept so that a restarted replica applies what it knows to be committed without waiting for a leader.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let saved = self.db.run(move |connection, path| STATE.put(connection, path, "committed", &committed));
        saved.await.map_err(|e| StorageIOError::write(cause(&e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let read = self.db.run(|connection, path| STATE.get::<Option<LogId>>(connection, path, "committed"));
        read.await.map(Option::flatten).map_err(|e| StorageIOError::read(cause(&e)).into())
    }

    /// One transaction for the whole batch; openraft hears of it once committed.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let written = self.db.run(move |connection, path| append(connection, path, &entries)).await;
        callback.log_io_completed(written.as_ref().map(drop).map_err(|e| std::io::Error::other(e.to_string())));
        written.map_err(|e| StorageIOError::write_logs(cause(&e)).into())
    }

    /// Removes the entries from `log_id` on (a new leader's log replaces them).
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let removed = self.db.run(move |connection, path| {
            let sql = "DELETE FROM raft_log WHERE idx >= ?1";
            connection
                .execute(sql, params![index(log_id.index)])
                .map(drop)
                .map_err(|e| sqlite_error(path, "truncating", e))
        });
        removed.await.map_err(|e| StorageIOError::write_logs(cause(&e)).into())
    }

    /// Removes the entries up to `log_id` (a snapshot holds them now), remembering the last one removed.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged = self.db.run(move |connection, path| {
            let transaction = connection.transaction().map_err(|e| sqlite_error(path, "starting a purge", e))?;
            STATE.put(&transaction, path, "purged", &log_id)?;
            let sql = "DELETE FROM raft_log WHERE idx <= ?1";
            transaction.execute(sql, params![index(log_id.index)]).map_err(|e| sqlite_error(path, "purging", e))?;
            transaction.commit().map_err(|e| sqlite_error(path, "committing a purge", e))
        });
        purged.await.map_err(|e| StorageIOError::write_logs(cause(&e)).into())
    }
}

fn append(connection: &mut Connection, path: &Path, entries: &[Entry]) -> Result<(), StoreError> {
    let transaction = connection.transaction().map_err(|e| sqlite_error(path, "starting an append", e))?;
    for entry in entries {
        let json = encode(&format!("log entry {}", entry.log_id.index), entry)?;
        let sql = "INSERT OR REPLACE INTO raft_log (idx, json) VALUES (?1, ?2)";
        let mut statement = transaction.prepare_cached(sql).map_err(|e| sqlite_error(path, "appending", e))?;
        statement.execute(params![index(entry.log_id.index), json]).map_err(|e| sqlite_error(path, "appending", e))?;
    }
    transaction.commit().map_err(|e| sqlite_error(path, "committing an append", e))
}

/// The entries with index in `first..=last`, in order.
fn entries(connection: &Connection, path: &Path, first: i64, last: i64) -> Result<Vec<Entry>, StoreError> {
    let error = |e| sqlite_error(path, "reading the log", e);
    let sql = "SELECT idx, json FROM raft_log WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx";
    let mut statement = connection.prepare_cached(sql).map_err(error)?;
    let mut rows = statement.query(params![first, last]).map_err(error)?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next().map_err(error)? {
        let (idx, json): (i64, String) = (row.get(0).map_err(error)?, row.get(1).map_err(error)?);
        entries.push(decode(&json, &format!("{} table raft_log", path.display()), &idx.to_string())?);
    }
    Ok(entries)
}

fn last_entry(connection: &Connection, path: &Path) -> Result<Option<Entry>, StoreError> {
    let last = connection
        .query_row("SELECT max(idx) FROM raft_log", [], |row| row.get::<_, Option<i64>>(0))
        .map_err(|e| sqlite_error(path, "reading the log", e))?;
    Ok(match last {
        Some(last) => entries(connection, path, last, last)?.pop(),
        None => None,
    })
}

/// An index as SQLite's signed integer (indexes never come near `i64::MAX`).
fn index(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn first(bound: Bound<&u64>) -> i64 {
    match bound {
        Bound::Included(&first) => index(first),
        Bound::Excluded(&first) => index(first).saturating_add(1),
        Bound::Unbounded => 0,
    }
}

fn last(bound: Bound<&u64>) -> i64 {
    match bound {
        Bound::Included(&last) => index(last),
        // `..0` is empty: -1 is below every index.
        Bound::Excluded(&end) => index(end) - 1,
        Bound::Unbounded => i64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
    }

    #[tokio::test]
    async fn appends_reads_truncates_purges_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.sqlite");
        let mut log = LogStore::open(&path, Synchronous::Normal).unwrap();
        assert_eq!(log.get_log_state().await.unwrap(), LogState::default());
        log.blocking_append((1..=5).map(|i| entry(1, i))).await.unwrap();
        assert_eq!(indexes(&log.try_get_log_entries(2..4).await.unwrap()), [(1, 2), (1, 3)]);
        assert_eq!(indexes(&log.try_get_log_entries(4..).await.unwrap()), [(1, 4), (1, 5)]);
        assert!(log.try_get_log_entries(0..0).await.unwrap().is_empty());
        log.truncate(entry(1, 4).log_id).await.unwrap();
        log.blocking_append([entry(2, 4)]).await.unwrap();
        log.purge(entry(1, 2).log_id).await.unwrap();
        let vote = Vote::new(2, 3);
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(entry(2, 4).log_id)).await.unwrap();
        drop(log);
        let mut log = LogStore::open(&path, Synchronous::Normal).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(entry(1, 2).log_id), Some(entry(2, 4).log_id)));
        assert_eq!(indexes(&log.try_get_log_entries(..).await.unwrap()), [(1, 3), (2, 4)]);
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(log.read_committed().await.unwrap(), Some(entry(2, 4).log_id));
    }

    #[tokio::test]
    async fn a_purged_log_reports_its_last_purged_position_as_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("replica.sqlite"), Synchronous::Normal).unwrap();
        log.blocking_append((1..=3).map(|i| entry(1, i))).await.unwrap();
        log.purge(entry(1, 3).log_id).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(entry(1, 3).log_id), Some(entry(1, 3).log_id)));
    }
}
