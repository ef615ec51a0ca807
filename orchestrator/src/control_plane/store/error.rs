//! What can go wrong in a store, with where (file, server, key, name) and what to do.

use std::path::PathBuf;

/// A persistence operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder of the database file could not be created.
    #[error("cannot create the folder {path} for the registry database: {source}; check `store.path` and permissions")]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a database, or is another program's database.
    #[error(
        "{path} is not a dirigent registry database ({reason}); move it away or point `store.path` at another file"
    )]
    NotARegistry {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file was written by a newer dirigent.
    #[error(
        "{path} has registry schema version {found}, this dirigent knows up to {known}; run a newer dirigent or \\
         point `store.path` at another file"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build reads.
        known: i64,
    },
    /// An SQLite call failed.
    #[error("registry database {path}: {action} failed: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A Redis call failed.
    #[error("registry store at {url}: {action} failed: {source}; check that the Redis server runs and is reachable")]
    Redis {
        /// The server.
        url: String,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// A stored entry does not parse as what it should be.
    #[error("registry store {location}: entry {name:?} is not valid JSON of its kind: {source}; delete or fix it")]
    Corrupt {
        /// The file and table, or the Redis key.
        location: String,
        /// The entry's name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A change could not be encoded as JSON.
    #[error("registry store: cannot encode {name:?} as JSON: {source}")]
    Encode {
        /// The entry's name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The store's writer thread could not be started.
    #[error("registry store {store}: cannot start its writer thread: {source}")]
    Spawn {
        /// The file or server.
        store: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// This control plane is a follower: only the leader takes changes (the caller forwards them there).
    #[error("{}", not_leader(leader))]
    NotLeader {
        /// The leader's replica id and gRPC address, when one is known.
        leader: Option<(u64, String)>,
    },
    /// The replicated log failed: the replica stopped, or could not start.
    #[error("registry replica {replica}: {action} failed: {reason}")]
    Replication {
        /// This replica's id.
        replica: u64,
        /// What was being done.
        action: &'static str,
        /// Why (openraft's errors are generic; their text is what a user can act on).
        reason: String,
    },
    /// The store's writer thread has stopped (it only does when the store is dropped, or it panicked).
    #[error("registry store {store}: its writer has stopped, the change was not stored; restart the control plane")]
    WriterGone {
        /// The file or server.
        store: String,
    },
}

fn not_leader(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, address)) => format!(
            "this control plane replica is a follower; send the change to the leader, replica {id} at {address}"
        ),
        None => "this control plane replica is a follower and no leader is elected yet; retry shortly".into(),
    }
}
