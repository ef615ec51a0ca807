//! Where registrations persist. Functions, workers and data planes are stored; sandboxes and invocations never
//! are (Dirigent's second principle: nothing persistent on the invocation path). A restarted control plane
//! loads what is stored and rebuilds the rest by asking the workers.
//!
//! Every store takes changes as [`StoreChange`]s, so that one writer can batch them into one commit and a
//! replicated log can carry them as they are.

mod error;
mod memory;
mod redis;
pub(crate) mod rows;
pub(crate) mod sqlite;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use contracts::api::FunctionSpec;
use contracts::config::StoreConfig;
use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

/// A registered worker as stored: enough to reach it again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWorker {
    /// Its name in the registry.
    pub name: String,
    /// `host:port` of its gRPC service.
    pub address: String,
    /// CPU it offers, in millicores.
    pub cpu_millis: u64,
    /// Memory it offers, in MiB.
    pub memory_mib: u64,
}

/// A registered data plane as stored: enough to resync it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDataPlane {
    /// Its name in the registry.
    pub name: String,
    /// `host:port` of its gRPC service.
    pub grpc_address: String,
    /// `host:port` of its proxy.
    pub proxy_address: String,
}

/// One change to what is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreChange {
    /// Saves (or replaces) a function.
    SaveFunction(FunctionSpec),
    /// Forgets a function.
    DeleteFunction(String),
    /// Saves (or replaces) a worker.
    SaveWorker(StoredWorker),
    /// Forgets a worker.
    DeleteWorker(String),
    /// Saves (or replaces) a data plane.
    SaveDataPlane(StoredDataPlane),
    /// Forgets a data plane.
    DeleteDataPlane(String),
}

/// Everything stored, as a restarting control plane loads it (each list by name); serialized, a replica's
/// snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredRegistry {
    /// The registered functions.
    pub functions: Vec<FunctionSpec>,
    /// The workers last registered.
    pub workers: Vec<StoredWorker>,
    /// The data planes last registered.
    pub data_planes: Vec<StoredDataPlane>,
}

/// The future of a change: resolves once the change is as durable as the store promises.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// The registry's persistence: memory (tests), an embedded database (the default) or Redis.
pub trait RegistryStore: Send + Sync + 'static {
    /// Applies one change; resolves once it is durable. Concurrent changes may share one commit.
    fn apply(&self, change: StoreChange) -> StoreFuture<'_>;
    /// Everything stored, for a (re)starting control plane.
    fn load(&self) -> Result<StoredRegistry, StoreError>;
    /// Changes applied since the store was opened (a load run must not add any).
    fn writes(&self) -> u64;
    /// Which control plane may change the registry now; a store of one control plane, always this one.
    fn leadership(&self) -> Leadership {
        Leadership::This
    }
    /// Whether this store is one replica of several, whose leadership changes.
    fn replicated(&self) -> bool {
        false
    }
    /// Whether a majority of replicas confirms now that this one leads (and this one applied every change
    /// committed before); a store of one control plane always leads.
    fn confirm_leadership(&self) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// Which control-plane replica leads: the one workers and data planes attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This control plane.
    This,
    /// Another replica, at this gRPC address.
    Other(String),
    /// None that this replica knows of (an election is running).
    Unknown,
}

/// Opens the store `config` names: creates the SQLite file (and its folder) or connects to Redis.
pub fn open_store(config: &StoreConfig) -> Result<Arc<dyn RegistryStore>, StoreError> {
    Ok(match config {
        StoreConfig::Sqlite(sqlite) => Arc::new(SqliteStore::open(&sqlite.path, sqlite.synchronous)?),
        StoreConfig::Redis(redis) => Arc::new(RedisStore::open(&redis.url, &redis.prefix)?),
        StoreConfig::Memory => Arc::new(MemoryStore::default()),
    })
}

#[cfg(test)]
mod tests {
    use contracts::config::{RedisStoreConfig, SqliteStoreConfig};

    use super::*;

    #[tokio::test]
    async fn open_store_opens_what_the_config_names() {
        let memory = open_store(&StoreConfig::Memory).unwrap();
        memory.apply(StoreChange::DeleteWorker("w".into())).await.unwrap();
        assert_eq!(memory.writes(), 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("registry.sqlite");
        let sqlite = open_store(&StoreConfig::Sqlite(SqliteStoreConfig { path: path.clone(), ..Default::default() }));
        assert_eq!(sqlite.unwrap().load().unwrap(), StoredRegistry::default());
        assert!(path.exists());
    }

    #[test]
    fn an_unreachable_redis_is_named() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = format!("redis://{closed}/0");
        let config = StoreConfig::Redis(RedisStoreConfig { url: url.clone(), ..Default::default() });
        let err = open_store(&config).err().expect("nothing listens there").to_string();
        assert!(err.contains(&url) && err.contains("check that the Redis server runs"), "{err}");
    }
}
