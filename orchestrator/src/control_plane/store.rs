//! Where registrations persist. Only functions are stored; sandboxes never are (Dirigent's second
//! principle: nothing persistent on the invocation path), and workers and data planes re-register.

use std::collections::BTreeMap;
use std::sync::Mutex;

use contracts::api::FunctionSpec;

/// A persistence operation failed.
#[derive(Debug, thiserror::Error)]
#[error("registry store: {0}")]
pub struct StoreError(pub String);

/// The registry's persistence; implementations: in-memory now, an embedded store and Redis later.
pub trait RegistryStore: Send + Sync + 'static {
    /// Saves (or replaces) a function.
    fn save_function(&self, spec: &FunctionSpec) -> Result<(), StoreError>;
    /// Forgets a function.
    fn delete_function(&self, name: &str) -> Result<(), StoreError>;
    /// Every stored function, for a restarting control plane.
    fn load_functions(&self) -> Result<Vec<FunctionSpec>, StoreError>;
}

/// Keeps registrations in memory: they live as long as the control plane process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    functions: Mutex<BTreeMap<String, FunctionSpec>>,
}

impl RegistryStore for MemoryStore {
    fn save_function(&self, spec: &FunctionSpec) -> Result<(), StoreError> {
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    fn delete_function(&self, name: &str) -> Result<(), StoreError> {
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }

    fn load_functions(&self) -> Result<Vec<FunctionSpec>, StoreError> {
        Ok(self.functions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect())
    }
}
