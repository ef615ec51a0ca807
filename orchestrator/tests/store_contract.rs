//! Every registry store passes the one contract suite (`orchestrator::test_util::store`): in memory, SQLite in a
//! temporary folder (both `synchronous` settings), a real `redis-server` on a free loopback port, and the
//! replicated store as a cluster of one replica.

use std::sync::Arc;

use orchestrator::control_plane::store::RegistryStore;
use orchestrator::test_util::store::StoreHarness;

mod memory {
    use super::*;
    use orchestrator::control_plane::store::MemoryStore;

    struct Memory;

    impl StoreHarness for Memory {
        fn open(&self) -> Arc<dyn RegistryStore> {
            Arc::new(MemoryStore::default())
        }

        fn durable(&self) -> bool {
            false
        }
    }

    orchestrator::store_contract!(Memory);
}

mod sqlite {
    use super::*;
    use contracts::config::Synchronous;
    use orchestrator::control_plane::store::SqliteStore;

    /// A database file in a folder that does not exist yet (open creates it).
    struct Sqlite {
        dir: tempfile::TempDir,
        synchronous: Synchronous,
    }

    impl Sqlite {
        fn new(synchronous: Synchronous) -> Self {
            Self { dir: tempfile::tempdir().expect("a temporary folder"), synchronous }
        }
    }

    impl StoreHarness for Sqlite {
        fn open(&self) -> Arc<dyn RegistryStore> {
            let path = self.dir.path().join("state").join("registry.sqlite");
            Arc::new(SqliteStore::open(&path, self.synchronous).unwrap_or_else(|e| panic!("opening: {e}")))
        }

        fn durable(&self) -> bool {
            true
        }
    }

    mod normal {
        use super::*;
        orchestrator::store_contract!(Sqlite::new(Synchronous::Normal));
    }

    mod full {
        use super::*;
        orchestrator::store_contract!(Sqlite::new(Synchronous::Full));
    }
}

mod redis {
    use super::*;
    use orchestrator::control_plane::store::RedisStore;
    use orchestrator::test_util::redis::RedisServer;

    /// A server of its own, and a prefix other than the default (keys stay under it).
    struct Redis {
        server: RedisServer,
    }

    impl StoreHarness for Redis {
        fn open(&self) -> Arc<dyn RegistryStore> {
            let store = RedisStore::open(&self.server.url(), "contract:").unwrap_or_else(|e| panic!("opening: {e}"));
            Arc::new(store)
        }

        fn durable(&self) -> bool {
            true
        }
    }

    orchestrator::store_contract!(Redis { server: RedisServer::start() });
}

mod replicated {
    use super::*;
    use contracts::config::{ReplicationConfig, SqliteStoreConfig};
    use openraft::ServerState;
    use orchestrator::control_plane::replication::ReplicatedStore;
    use orchestrator::control_plane::store::{StoreChange, StoreError, StoreFuture, StoredRegistry};
    use orchestrator::test_util::raft::FakeRaftNetwork;
    use orchestrator::test_util::script::PATIENCE;

    /// One replica (a majority of itself) with its file in a temporary folder.
    struct OneReplica {
        dir: tempfile::TempDir,
    }

    impl StoreHarness for OneReplica {
        fn open(&self) -> Arc<dyn RegistryStore> {
            Arc::new(Hosted::start(SqliteStoreConfig {
                path: self.dir.path().join("replica.sqlite"),
                ..Default::default()
            }))
        }

        fn durable(&self) -> bool {
            true
        }
    }

    /// The replica's Raft node on a runtime of its own, because the contract opens and drops stores outside
    /// async code; dropping it stops the node, so that the next opening has the file to itself.
    struct Hosted {
        node: Option<(tokio::runtime::Runtime, Arc<ReplicatedStore>)>,
    }

    impl Hosted {
        fn start(sqlite: SqliteStoreConfig) -> Self {
            // A thread of its own: a runtime cannot be entered from the test's.
            let started = std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
                let config = ReplicationConfig::new(1, [(1, "127.0.0.1:1".to_owned())].into());
                let store = runtime.block_on(async {
                    let store = ReplicatedStore::start(&config, &sqlite, FakeRaftNetwork::default().factory(1)).await;
                    let store = store.unwrap_or_else(|e| panic!("starting: {e}"));
                    let wait = store.raft().wait(Some(PATIENCE));
                    wait.state(ServerState::Leader, "a cluster of one elects itself").await.unwrap();
                    store
                });
                (runtime, Arc::new(store))
            });
            Self { node: Some(started.join().expect("the replica starts")) }
        }

        fn store(&self) -> &ReplicatedStore {
            &self.node.as_ref().expect("running until dropped").1
        }
    }

    impl Drop for Hosted {
        fn drop(&mut self) {
            if let Some((runtime, store)) = self.node.take() {
                let stopped = std::thread::spawn(move || runtime.block_on(store.shutdown()));
                stopped.join().expect("the replica stops");
            }
        }
    }

    impl RegistryStore for Hosted {
        fn apply(&self, change: StoreChange) -> StoreFuture<'_> {
            self.store().apply(change)
        }

        fn load(&self) -> Result<StoredRegistry, StoreError> {
            self.store().load()
        }

        fn writes(&self) -> u64 {
            self.store().writes()
        }
    }

    orchestrator::store_contract!(OneReplica { dir: tempfile::tempdir().expect("a temporary folder") });
}
