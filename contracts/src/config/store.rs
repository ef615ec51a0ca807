//! Where the control plane keeps its registrations (functions, workers, data planes) across restarts. The stores
//! themselves are the orchestrator's `control_plane::store`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The registry store (YAML `store:`; `kind` picks one, every other key has a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreConfig {
    /// An embedded SQLite database file (the default).
    Sqlite(SqliteStoreConfig),
    /// A Redis server, shared by whoever points at it (Dirigent's own choice).
    Redis(RedisStoreConfig),
    /// Nothing persists: a restarted control plane starts empty (tests).
    Memory,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Sqlite(SqliteStoreConfig::default())
    }
}

/// How hard SQLite pushes a commit to the disk before answering (its `PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// A commit is in the operating system's page cache when acknowledged: it survives the process being killed
    /// (kill -9, a crash), but a power loss or kernel crash may lose the last commits (never corrupts the file).
    #[default]
    Normal,
    /// A commit is on the disk when acknowledged (an fsync per commit): it also survives a power loss.
    Full,
}

/// `kind: sqlite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteStoreConfig {
    /// The database file, relative to the working directory; its folder is created.
    pub path: PathBuf,
    /// What an acknowledged commit survives.
    pub synchronous: Synchronous,
}

impl Default for SqliteStoreConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("dirigent-registry.sqlite"), synchronous: Synchronous::default() }
    }
}

/// `kind: redis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisStoreConfig {
    /// The server, `redis://host:port/db`.
    pub url: String,
    /// Prepended to every key (`<prefix>functions`, `<prefix>workers`, `<prefix>data_planes`).
    pub prefix: String,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379/0".into(), prefix: "dirigent:".into() }
    }
}

/// An invalid [`StoreConfig`] value; every message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreConfigError {
    /// "`path` is empty; give the database file ..."
    #[error("`path` is empty; give the database file, e.g. dirigent-registry.sqlite")]
    EmptyPath,
    /// "`url` = {url:?} is not a redis:// URL ..."
    #[error("`url` = {url:?} is not a redis:// URL; give one like redis://127.0.0.1:6379/0")]
    NotRedisUrl {
        /// What was given.
        url: String,
    },
}

impl StoreConfig {
    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        match self {
            Self::Sqlite(sqlite) if sqlite.path.as_os_str().is_empty() => Err(StoreConfigError::EmptyPath),
            Self::Redis(redis) if !redis.url.starts_with("redis://") => {
                Err(StoreConfigError::NotRedisUrl { url: redis.url.clone() })
            }
            _ => Ok(()),
        }
    }
}
