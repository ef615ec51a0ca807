//! Every registry store passes the one contract suite (`orchestrator::test_util::store`): in memory, SQLite in a
//! temporary folder (both `synchronous` settings) and a real `redis-server` on a free loopback port.

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
