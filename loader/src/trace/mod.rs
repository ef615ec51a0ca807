//! Reading and validating the Azure Functions trace in the In-Vitro layout, and selecting a slice of it.

pub mod model;

pub use model::{DurationStats, MemoryStats, Trace, TraceFunction};
