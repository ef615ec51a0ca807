//! The contract every [`RegistryStore`] keeps, as one suite: each check is an async function over a
//! [`StoreHarness`] (how to open the store under test, again and again on the same storage), and
//! [`store_contract!`](crate::store_contract) stamps out one `#[tokio::test]` per check.

use std::collections::BTreeMap;
use std::sync::Arc;

use contracts::api::FunctionSpec;
use futures_util::future::join_all;

use crate::control_plane::store::{RegistryStore, StoreChange, StoredDataPlane, StoredRegistry, StoredWorker};

/// A store under test.
pub trait StoreHarness: Send + Sync {
    /// Opens the store on the harness's storage; every call opens it anew.
    fn open(&self) -> Arc<dyn RegistryStore>;
    /// Whether a store opened again loads what an earlier one applied (not so in memory).
    fn durable(&self) -> bool;
}

/// Stamps out one `#[tokio::test]` per check of the store contract, each with a fresh harness from `$harness`.
#[macro_export]
macro_rules! store_contract {
    ($harness:expr) => {
        $crate::store_contract!(@checks $harness;
            saves_replaces_and_deletes_functions,
            saves_replaces_and_deletes_workers,
            saves_replaces_and_deletes_data_planes,
            keeps_every_field_of_a_function,
            loads_after_reopening_what_was_applied,
            lands_every_concurrent_apply,
            counts_writes_and_a_load_adds_none,
            deleting_what_is_not_stored_changes_nothing
        );
    };
    (@checks $harness:expr; $($check:ident),+) => {
        $(
            #[tokio::test]
            async fn $check() {
                let harness = $harness;
                $crate::test_util::store::$check(&harness).await;
            }
        )+
    };
}

/// Function `name` whose image says `version`.
pub fn function(name: &str, version: u32) -> FunctionSpec {
    FunctionSpec::new(name, format!("image-v{version}"))
}

/// Worker `name` at an address that says `version`.
pub fn worker(name: &str, version: u32) -> StoredWorker {
    StoredWorker { name: name.into(), address: format!("10.0.0.{version}:10010"), cpu_millis: 1000, memory_mib: 512 }
}

/// Data plane `name` at addresses that say `version`.
pub fn data_plane(name: &str, version: u32) -> StoredDataPlane {
    StoredDataPlane {
        name: name.into(),
        grpc_address: format!("10.0.1.{version}:8081"),
        proxy_address: format!("10.0.1.{version}:8080"),
    }
}

async fn apply_all(store: &dyn RegistryStore, changes: impl IntoIterator<Item = StoreChange>) {
    for change in changes {
        let shown = format!("{change:?}");
        store.apply(change).await.unwrap_or_else(|e| panic!("applying {shown}: {e}"));
    }
}

fn loaded(store: &dyn RegistryStore) -> StoredRegistry {
    store.load().unwrap_or_else(|e| panic!("loading: {e}"))
}

/// One kind of entry, as the checks below need it.
struct Kind {
    save: fn(&str, u32) -> StoreChange,
    delete: fn(String) -> StoreChange,
    /// The registry holding exactly these entries (name, version), in order.
    holding: fn(&[(&str, u32)]) -> StoredRegistry,
}

const FUNCTIONS: Kind = Kind {
    save: |name, version| StoreChange::SaveFunction(function(name, version)),
    delete: StoreChange::DeleteFunction,
    holding: |entries| StoredRegistry {
        functions: entries.iter().map(|&(name, version)| function(name, version)).collect(),
        ..StoredRegistry::default()
    },
};

const WORKERS: Kind = Kind {
    save: |name, version| StoreChange::SaveWorker(worker(name, version)),
    delete: StoreChange::DeleteWorker,
    holding: |entries| StoredRegistry {
        workers: entries.iter().map(|&(name, version)| worker(name, version)).collect(),
        ..StoredRegistry::default()
    },
};

const DATA_PLANES: Kind = Kind {
    save: |name, version| StoreChange::SaveDataPlane(data_plane(name, version)),
    delete: StoreChange::DeleteDataPlane,
    holding: |entries| StoredRegistry {
        data_planes: entries.iter().map(|&(name, version)| data_plane(name, version)).collect(),
        ..StoredRegistry::default()
    },
};

/// Saving adds, saving a name again replaces, deleting forgets; each list is by name whatever the order applied.
async fn saves_replaces_and_deletes(harness: &impl StoreHarness, kind: &Kind) {
    let store = harness.open();
    apply_all(&*store, [(kind.save)("b", 1), (kind.save)("a", 1), (kind.save)("c", 1)]).await;
    assert_eq!(loaded(&*store), (kind.holding)(&[("a", 1), ("b", 1), ("c", 1)]));
    apply_all(&*store, [(kind.save)("a", 2), (kind.delete)("b".into())]).await;
    assert_eq!(loaded(&*store), (kind.holding)(&[("a", 2), ("c", 1)]));
}

/// [`saves_replaces_and_deletes`] for functions.
pub async fn saves_replaces_and_deletes_functions(harness: &impl StoreHarness) {
    saves_replaces_and_deletes(harness, &FUNCTIONS).await;
}

/// [`saves_replaces_and_deletes`] for workers.
pub async fn saves_replaces_and_deletes_workers(harness: &impl StoreHarness) {
    saves_replaces_and_deletes(harness, &WORKERS).await;
}

/// [`saves_replaces_and_deletes`] for data planes.
pub async fn saves_replaces_and_deletes_data_planes(harness: &impl StoreHarness) {
    saves_replaces_and_deletes(harness, &DATA_PLANES).await;
}

/// A spec with every field away from its default loads back equal.
pub async fn keeps_every_field_of_a_function(harness: &impl StoreHarness) {
    let spec = FunctionSpec {
        args: vec!["--flag".into(), "two words".into()],
        port: 8081,
        env: BTreeMap::from([("KEY".into(), "välue \"quoted\"".into())]),
        cpu_millis: 250,
        memory_mib: 128,
        min_scale: 1,
        max_scale: 7,
        container_concurrency: 3,
        cold_start_sweep: true,
        ..function("full", 1)
    };
    let store = harness.open();
    apply_all(&*store, [StoreChange::SaveFunction(spec.clone())]).await;
    assert_eq!(loaded(&*store).functions, [spec]);
}

/// What one opening applied, a later opening loads (a durable store), or nothing (memory).
pub async fn loads_after_reopening_what_was_applied(harness: &impl StoreHarness) {
    let store = harness.open();
    let changes = [
        StoreChange::SaveFunction(function("f", 1)),
        StoreChange::SaveWorker(worker("w", 1)),
        StoreChange::SaveDataPlane(data_plane("d", 1)),
        StoreChange::SaveFunction(function("gone", 1)),
        StoreChange::DeleteFunction("gone".into()),
    ];
    apply_all(&*store, changes).await;
    let applied = loaded(&*store);
    drop(store);
    let again = harness.open();
    let expected = if harness.durable() { applied } else { StoredRegistry::default() };
    assert_eq!(loaded(&*again), expected);
    assert_eq!(again.writes(), 0, "opening counts no writes");
}

/// Changes applied all at once all land, and are all counted.
pub async fn lands_every_concurrent_apply(harness: &impl StoreHarness) {
    const CONCURRENT: u32 = 3000;
    let store = harness.open();
    let names: Vec<String> = (0..CONCURRENT).map(|i| format!("fn-{i:05}")).collect();
    let applies = names.iter().map(|name| store.apply(StoreChange::SaveFunction(function(name, 1))));
    for (name, result) in names.iter().zip(join_all(applies).await) {
        result.unwrap_or_else(|e| panic!("applying {name}: {e}"));
    }
    let stored: Vec<String> = loaded(&*store).functions.into_iter().map(|spec| spec.name).collect();
    assert_eq!(stored, names);
    assert_eq!(store.writes(), u64::from(CONCURRENT));
}

/// `writes` counts every applied change, deletions too; loading adds none.
pub async fn counts_writes_and_a_load_adds_none(harness: &impl StoreHarness) {
    let store = harness.open();
    assert_eq!(store.writes(), 0);
    apply_all(&*store, [(FUNCTIONS.save)("a", 1), (WORKERS.save)("w", 1), (FUNCTIONS.delete)("a".into())]).await;
    assert_eq!(store.writes(), 3);
    loaded(&*store);
    assert_eq!(store.writes(), 3, "a load wrote");
}

/// Deleting a name that is not stored succeeds and leaves the rest as it was.
pub async fn deleting_what_is_not_stored_changes_nothing(harness: &impl StoreHarness) {
    let store = harness.open();
    apply_all(&*store, [(WORKERS.save)("w", 1)]).await;
    apply_all(&*store, [(FUNCTIONS.delete)("nobody".into()), (DATA_PLANES.delete)("nobody".into())]).await;
    assert_eq!(loaded(&*store), (WORKERS.holding)(&[("w", 1)]));
}
