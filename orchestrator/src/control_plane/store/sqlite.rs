//! The embedded store (the default): one SQLite file in WAL mode, one table per kind of entry (name -> JSON), a
//! schema version, and one writer thread that commits every queued change in one transaction.
//!
//! The replicated registry (`control_plane::replication`) keeps its state machine in the same tables of a file of
//! its own, through [`Database`], [`write_row`] and [`replace_registry`].
//!
//! Durability follows `synchronous`: `normal` survives the process being killed (a WAL commit is in the page
//! cache when acknowledged), `full` also a power loss (an fsync per commit, so per batch).

use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::config::Synchronous;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::rows::{Loaded, Row, Table};
use super::writer::{Commit, Writer};
use super::{RegistryStore, StoreChange, StoreError, StoreFuture, StoredRegistry};

/// The schema this build writes and the newest it reads.
const SCHEMA_VERSION: i64 = 1;
/// `PRAGMA application_id` of a registry database ("DIRG"): tells our file from another program's.
const APPLICATION_ID: i64 = 0x4449_5247;
/// How long a statement waits for another connection's lock (a `load` during a commit) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps registrations in an SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating it, and its folder, when missing) the database at `path`; refuses a file that is not a
    /// registry database or has a newer schema.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let connection = Database::open(path, synchronous)?;
        let writer = Writer::spawn(format!("sqlite {}", path.display()), connection)?;
        Ok(Self { path: path.to_owned(), writer })
    }
}

impl RegistryStore for SqliteStore {
    fn apply(&self, change: StoreChange) -> StoreFuture<'_> {
        self.writer.apply(&change)
    }

    /// Reads on a connection of its own: WAL lets it run beside the writer's commits.
    fn load(&self) -> Result<StoredRegistry, StoreError> {
        Database::read_only(&self.path)?.load()
    }

    fn writes(&self) -> u64 {
        self.writer.writes()
    }
}

/// One connection to a registry file, with the path for errors.
pub(crate) struct Database {
    path: PathBuf,
    connection: Connection,
}

impl Database {
    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, StoreError> {
        let connection = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|source| sqlite_error(path, "opening", source))?;
        let database = Self { path: path.to_owned(), connection };
        database.connection.busy_timeout(BUSY_TIMEOUT).map_err(|e| database.error("setting the busy timeout", e))?;
        Ok(database)
    }

    /// A writing connection (the folder created when missing): WAL, the durability asked for, and the schema
    /// checked or created.
    pub(crate) fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|source| StoreError::CreateFolder { path: folder.to_owned(), source })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let mut database = Self::connect(path, flags)?;
        database.ensure_schema()?;
        let level = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        let pragmas = format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = {level};");
        database.connection.execute_batch(&pragmas).map_err(|e| database.error("switching to WAL", e))?;
        Ok(database)
    }

    fn ensure_schema(&mut self) -> Result<(), StoreError> {
        // Immediate: two control planes creating one fresh file must not both create the tables.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error(&self.path, "locking the file", e))?;
        let application: i64 = transaction
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(|e| sqlite_error(&self.path, "reading the application id", e))?;
        let tables: i64 = transaction
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|e| sqlite_error(&self.path, "listing the tables", e))?;
        match (application, tables) {
            (APPLICATION_ID, _) => check_version(&transaction, &self.path)?,
            (0, 0) => create(&transaction).map_err(|e| sqlite_error(&self.path, "creating the schema", e))?,
            (0, _) => return Err(not_ours(&self.path, format!("an SQLite database with {tables} other tables"))),
            (other, _) => return Err(not_ours(&self.path, format!("an SQLite database of application id {other:#x}"))),
        }
        transaction.commit().map_err(|e| sqlite_error(&self.path, "creating the schema", e))
    }

    /// A reading connection: WAL lets it read beside a writer's commits.
    pub(crate) fn read_only(path: &Path) -> Result<Self, StoreError> {
        Self::connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for statements of the caller's own (a transaction derefs to a connection).
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.connection
    }

    /// Everything in the registry tables.
    pub(crate) fn load(&self) -> Result<StoredRegistry, StoreError> {
        read_registry(&self.connection, &self.path)
    }

    /// An SQLite error on this file.
    pub(crate) fn error(&self, action: &'static str, source: rusqlite::Error) -> StoreError {
        sqlite_error(&self.path, action, source)
    }
}

/// Everything in the registry tables, read on `connection` (inside the caller's transaction, if it holds one).
pub(crate) fn read_registry(connection: &Connection, path: &Path) -> Result<StoredRegistry, StoreError> {
    let error = |e| sqlite_error(path, "reading", e);
    let mut loaded = Loaded::default();
    for table in Table::ALL {
        let location = format!("{} table {}", path.display(), table.name());
        let sql = format!("SELECT name, json FROM {}", table.name());
        let mut statement = connection.prepare_cached(&sql).map_err(error)?;
        let mut rows = statement.query([]).map_err(error)?;
        while let Some(row) = rows.next().map_err(error)? {
            let (name, json): (String, String) = (row.get(0).map_err(error)?, row.get(1).map_err(error)?);
            loaded.add(table, name, &json, &location)?;
        }
    }
    Ok(loaded.finish())
}

/// Empties the registry tables and writes `registry` into them (a replica installing a snapshot).
pub(crate) fn replace_registry(
    connection: &Connection,
    path: &Path,
    registry: &StoredRegistry,
) -> Result<(), StoreError> {
    let changes = (registry.functions.iter().cloned().map(StoreChange::SaveFunction))
        .chain(registry.workers.iter().cloned().map(StoreChange::SaveWorker))
        .chain(registry.data_planes.iter().cloned().map(StoreChange::SaveDataPlane));
    let rows = changes.map(|change| Row::of(&change)).collect::<Result<Vec<_>, _>>()?;
    let error = |e| sqlite_error(path, "replacing the registry", e);
    for table in Table::ALL {
        connection.execute(&format!("DELETE FROM {}", table.name()), []).map_err(error)?;
    }
    rows.iter().try_for_each(|row| write_row(connection, row).map_err(error))
}

impl Commit for Database {
    fn commit(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        let path = &self.path;
        let transaction = self.connection.transaction().map_err(|e| sqlite_error(path, "starting a commit", e))?;
        for row in rows {
            write_row(&transaction, row).map_err(|e| sqlite_error(path, "writing", e))?;
        }
        transaction.commit().map_err(|e| sqlite_error(path, "committing", e))
    }
}

/// Writes one row (an upsert, or a delete) on `connection`, inside the caller's transaction.
pub(crate) fn write_row(connection: &Connection, row: &Row) -> rusqlite::Result<()> {
    let table = row.table.name();
    match &row.json {
        Some(json) => {
            let sql = format!(
                "INSERT INTO {table} (name, json) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET json = excluded.json"
            );
            connection.prepare_cached(&sql)?.execute(params![row.name, json])?;
        }
        None => {
            let sql = format!("DELETE FROM {table} WHERE name = ?1");
            connection.prepare_cached(&sql)?.execute(params![row.name])?;
        }
    }
    Ok(())
}

fn create(transaction: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let tables: String = Table::ALL
        .iter()
        .map(|table| format!("CREATE TABLE {} (name TEXT PRIMARY KEY NOT NULL, json TEXT NOT NULL);", table.name()))
        .collect();
    transaction.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID};
         CREATE TABLE schema (version INTEGER NOT NULL);
         INSERT INTO schema (version) VALUES ({SCHEMA_VERSION});
         {tables}"
    ))
}

fn check_version(transaction: &rusqlite::Transaction<'_>, path: &Path) -> Result<(), StoreError> {
    let found: Option<i64> = transaction
        .query_row("SELECT max(version) FROM schema", [], |row| row.get(0))
        .optional()
        .map_err(|e| sqlite_error(path, "reading the schema version", e))?
        .flatten();
    match found {
        Some(found) if found > SCHEMA_VERSION => {
            Err(StoreError::NewerSchema { path: path.to_owned(), found, known: SCHEMA_VERSION })
        }
        Some(_) => Ok(()),
        None => Err(not_ours(path, "its schema version is missing".into())),
    }
}

/// An SQLite error, told apart when the file is not a database at all.
pub(crate) fn sqlite_error(path: &Path, action: &'static str, source: rusqlite::Error) -> StoreError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not_ours(path, "not an SQLite database".into()),
        _ => StoreError::Sqlite { path: path.to_owned(), action, source },
    }
}

fn not_ours(path: &Path, reason: String) -> StoreError {
    StoreError::NotARegistry { path: path.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use contracts::api::FunctionSpec;

    use super::*;

    fn opened(dir: &tempfile::TempDir) -> (PathBuf, Result<SqliteStore, StoreError>) {
        let path = dir.path().join("registry.sqlite");
        let store = SqliteStore::open(&path, Synchronous::Normal);
        (path, store)
    }

    /// Runs `sql` on the file behind the store's back.
    fn tamper(path: &Path, sql: &str) {
        Connection::open(path).unwrap().execute_batch(sql).unwrap();
    }

    #[test]
    fn refuses_a_file_that_is_not_a_database_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        std::fs::write(&path, "functions:\n  - hello\n".repeat(100)).unwrap();
        let err = SqliteStore::open(&path, Synchronous::Normal).err().expect("refused");
        assert!(matches!(err, StoreError::NotARegistry { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains("move it away"), "{message}");
    }

    #[test]
    fn refuses_another_programs_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        tamper(&path, "CREATE TABLE invoices (id INTEGER);");
        let err = SqliteStore::open(&path, Synchronous::Normal).err().expect("refused");
        assert!(err.to_string().contains("1 other tables"), "{err}");
    }

    #[test]
    fn refuses_a_newer_schema_and_opens_its_own_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = opened(&dir);
        drop(store.unwrap());
        let (_, again) = opened(&dir);
        drop(again.expect("its own file opens again"));
        tamper(&path, "UPDATE schema SET version = 2;");
        let err = opened(&dir).1.err().expect("refused");
        assert!(matches!(err, StoreError::NewerSchema { found: 2, known: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("run a newer dirigent"), "{err}");
    }

    #[test]
    fn creates_the_folder_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("registry.sqlite");
        let _store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        let mode: String =
            Connection::open(&path).unwrap().query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn an_entry_written_before_a_field_existed_loads_with_its_default() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = opened(&dir);
        let store = store.unwrap();
        tamper(&path, r#"INSERT INTO functions (name, json) VALUES ('old', '{"name":"old","image":"img"}');"#);
        assert_eq!(store.load().unwrap().functions, [FunctionSpec::new("old", "img")]);
    }

    #[test]
    fn a_corrupt_entry_is_named_with_its_table() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = opened(&dir);
        let store = store.unwrap();
        tamper(&path, "INSERT INTO workers (name, json) VALUES ('w-1', '{');");
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("table workers") && err.contains("\"w-1\""), "{err}");
    }
}
