//! The one shape every durable store keeps: per kind of entry a table (SQLite) or hash (Redis) mapping a name to
//! its JSON, so that a field added later loads from old entries (serde defaults) and a store holds no schema of
//! the specs.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreChange, StoreError, StoredRegistry};

/// A kind of entry: one table or hash each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Functions,
    Workers,
    DataPlanes,
}

impl Table {
    pub(crate) const ALL: [Self; 3] = [Self::Functions, Self::Workers, Self::DataPlanes];

    /// The SQLite table and the Redis hash (after the prefix).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Functions => "functions",
            Self::Workers => "workers",
            Self::DataPlanes => "data_planes",
        }
    }
}

/// One change as a store writes it: `json` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) table: Table,
    pub(crate) name: String,
    pub(crate) json: Option<String>,
}

impl Row {
    /// The row a change writes.
    pub(crate) fn of(change: &StoreChange) -> Result<Self, StoreError> {
        let (table, name, json) = match change {
            StoreChange::SaveFunction(spec) => (Table::Functions, &spec.name, Some(encode(&spec.name, spec)?)),
            StoreChange::DeleteFunction(name) => (Table::Functions, name, None),
            StoreChange::SaveWorker(worker) => (Table::Workers, &worker.name, Some(encode(&worker.name, worker)?)),
            StoreChange::DeleteWorker(name) => (Table::Workers, name, None),
            StoreChange::SaveDataPlane(dp) => (Table::DataPlanes, &dp.name, Some(encode(&dp.name, dp)?)),
            StoreChange::DeleteDataPlane(name) => (Table::DataPlanes, name, None),
        };
        Ok(Self { table, name: name.clone(), json })
    }
}

fn encode<T: Serialize>(name: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { name: name.to_owned(), source })
}

/// Builds a [`StoredRegistry`] from stored entries, each list ordered by name.
#[derive(Debug, Default)]
pub(crate) struct Loaded(StoredRegistry);

impl Loaded {
    /// Adds the entry `name` of `table`; `location` (the file and table, or the key) goes into the error.
    pub(crate) fn add(&mut self, table: Table, name: String, json: &str, location: &str) -> Result<(), StoreError> {
        let registry = &mut self.0;
        match table {
            Table::Functions => registry.functions.push(decode(name, json, location)?),
            Table::Workers => registry.workers.push(decode(name, json, location)?),
            Table::DataPlanes => registry.data_planes.push(decode(name, json, location)?),
        }
        Ok(())
    }

    /// The registry, each list by name.
    pub(crate) fn finish(self) -> StoredRegistry {
        let mut registry = self.0;
        registry.functions.sort_by(|a, b| a.name.cmp(&b.name));
        registry.workers.sort_by(|a, b| a.name.cmp(&b.name));
        registry.data_planes.sort_by(|a, b| a.name.cmp(&b.name));
        registry
    }
}

fn decode<T: DeserializeOwned>(name: String, json: &str, location: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt { location: location.to_owned(), name, source })
}
