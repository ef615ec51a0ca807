//! The Redis store (Dirigent keeps its registry in Redis too): hashes `<prefix>functions`, `<prefix>workers` and
//! `<prefix>data_planes` mapping a name to its JSON. One writer thread sends every queued change in one MULTI/EXEC.
//!
//! An acknowledged change is in the server's memory; what it survives beyond that is the server's persistence
//! setting (`appendonly yes` with `appendfsync always` or `everysec`), not this store's.

use std::time::Duration;

use redis::{Client, Commands, Connection};

use super::rows::{Loaded, Row, Table};
use super::writer::{Commit, Writer};
use super::{RegistryStore, StoreChange, StoreError, StoreFuture, StoredRegistry};

/// How long connecting, and then any one command, may take before the call fails (a hung server must not hang
/// the registrations forever).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps registrations in a Redis server.
pub struct RedisStore {
    server: Server,
    writer: Writer,
}

impl RedisStore {
    /// Connects to `url` (checking with a PING) and keeps every key under `prefix`.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|source| redis_error(url, "parsing the URL", source))?;
        let server = Server { url: url.to_owned(), prefix: prefix.to_owned(), client };
        let mut connection = server.connect()?;
        redis::cmd("PING").query::<()>(&mut connection).map_err(|e| server.error("PING", e))?;
        let sink = Sink { server: server.clone(), connection: Some(connection) };
        let writer = Writer::spawn(format!("redis {url}"), sink)?;
        Ok(Self { server, writer })
    }
}

impl RegistryStore for RedisStore {
    fn apply(&self, change: StoreChange) -> StoreFuture<'_> {
        self.writer.apply(&change)
    }

    /// Blocking, on a connection of its own: fine at startup, also inside a tokio runtime (it does not enter it).
    fn load(&self) -> Result<StoredRegistry, StoreError> {
        let mut connection = self.server.connect()?;
        let mut loaded = Loaded::default();
        for table in Table::ALL {
            let key = self.server.key(table);
            let entries: Vec<(String, String)> =
                connection.hgetall(&key).map_err(|e| self.server.error("HGETALL", e))?;
            for (name, json) in entries {
                loaded.add(table, name, &json, &format!("{} key {key}", self.server.url))?;
            }
        }
        Ok(loaded.finish())
    }

    fn writes(&self) -> u64 {
        self.writer.writes()
    }
}

/// Where the entries live.
#[derive(Clone)]
struct Server {
    url: String,
    prefix: String,
    client: Client,
}

impl Server {
    fn connect(&self) -> Result<Connection, StoreError> {
        let connection = self.client.get_connection_with_timeout(TIMEOUT).map_err(|e| self.error("connecting", e))?;
        connection.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.error("setting the read timeout", e))?;
        connection.set_write_timeout(Some(TIMEOUT)).map_err(|e| self.error("setting the write timeout", e))?;
        Ok(connection)
    }

    fn key(&self, table: Table) -> String {
        format!("{}{}", self.prefix, table.name())
    }

    fn error(&self, action: &'static str, source: redis::RedisError) -> StoreError {
        redis_error(&self.url, action, source)
    }
}

/// The writer's end: one connection, made again after a failure.
struct Sink {
    server: Server,
    connection: Option<Connection>,
}

impl Commit for Sink {
    fn commit(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for row in rows {
            let key = self.server.key(row.table);
            match &row.json {
                Some(json) => pipe.hset(key, &row.name, json).ignore(),
                None => pipe.hdel(key, &row.name).ignore(),
            };
        }
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.server.connect()?,
        };
        pipe.query::<()>(&mut connection).map_err(|e| self.server.error("MULTI/EXEC", e))?;
        // Kept only after a success: a connection that failed mid-reply may be out of step.
        self.connection = Some(connection);
        Ok(())
    }
}

fn redis_error(url: &str, action: &'static str, source: redis::RedisError) -> StoreError {
    StoreError::Redis { url: url.to_owned(), action, source }
}
