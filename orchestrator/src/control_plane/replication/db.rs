//! A replica's SQLite file as its storage halves use it: a connection of each half's own, used on the blocking
//! pool (an SQLite call blocks its thread, and openraft's storage calls are async), and tables of JSON values by
//! key for what is not a registry row (the vote, positions in the log, the membership, the snapshot).

use std::path::Path;
use std::sync::{Arc, Mutex};

use contracts::config::Synchronous;
use openraft::AnyError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control_plane::store::StoreError;
use crate::control_plane::store::sqlite::{Database, sqlite_error};

/// One connection to the replica's file, shared by the clones of a storage half.
#[derive(Clone)]
pub(super) struct Shared {
    database: Arc<Mutex<Database>>,
    path: Arc<Path>,
}

impl Shared {
    /// Opens a writing connection (the registry schema checked or created) and creates `tables` when missing.
    pub(super) fn open(path: &Path, synchronous: Synchronous, tables: &str) -> Result<Self, StoreError> {
        let mut database = Database::open(path, synchronous)?;
        database.connection().execute_batch(tables).map_err(|e| sqlite_error(path, "creating the Raft tables", e))?;
        Ok(Self { database: Arc::new(Mutex::new(database)), path: path.into() })
    }

    /// Runs `work` on the connection, off the async threads.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let database = Arc::clone(&self.database);
        let ran = tokio::task::spawn_blocking(move || {
            let mut database = database.lock().unwrap_or_else(|e| e.into_inner());
            let path = database.path().to_owned();
            work(database.connection(), &path)
        })
        .await;
        match ran {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only when the runtime shuts down.
            Err(_) => Err(StoreError::WriterGone { store: self.path.display().to_string() }),
        }
    }
}

/// A table `(key TEXT PRIMARY KEY, json TEXT)` of JSON values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Values(pub(super) &'static str);

impl Values {
    /// The statement creating the table when missing.
    pub(super) fn create(self) -> String {
        format!("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY NOT NULL, json TEXT NOT NULL);", self.0)
    }

    /// The value at `key`, if any.
    pub(super) fn get<T: DeserializeOwned>(
        self,
        connection: &Connection,
        path: &Path,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let sql = format!("SELECT json FROM {} WHERE key = ?1", self.0);
        let json: Option<String> = connection
            .prepare_cached(&sql)
            .and_then(|mut statement| statement.query_row(params![key], |row| row.get(0)).optional())
            .map_err(|e| sqlite_error(path, "reading", e))?;
        json.map(|json| decode(&json, &format!("{} table {}", path.display(), self.0), key)).transpose()
    }

    /// Sets `key` to `value`.
    pub(super) fn put<T: Serialize>(
        self,
        connection: &Connection,
        path: &Path,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let json = encode(key, value)?;
        let sql = format!(
            "INSERT INTO {} (key, json) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET json = excluded.json",
            self.0
        );
        connection
            .prepare_cached(&sql)
            .and_then(|mut statement| statement.execute(params![key, json]))
            .map(drop)
            .map_err(|e| sqlite_error(path, "writing", e))
    }
}

/// `value` as JSON; `name` goes into the error.
pub(super) fn encode<T: Serialize>(name: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { name: name.to_owned(), source })
}

/// `json` as a `T`; `location` and `name` go into the error.
pub(super) fn decode<T: DeserializeOwned>(json: &str, location: &str, name: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        location: location.to_owned(),
        name: name.to_owned(),
        source,
    })
}

/// A store error as the cause of openraft's storage error.
pub(super) fn cause(error: &StoreError) -> AnyError {
    AnyError::new(error)
}

/// `bytes` (JSON) as a `T`; `location` goes into the error.
pub(super) fn decode_bytes<T: DeserializeOwned>(bytes: &[u8], location: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        location: location.to_owned(),
        name: "data".to_owned(),
        source,
    })
}
