//! Reading and validating the Azure Functions trace in the In-Vitro layout, and selecting a slice of it.

pub mod error;
pub mod model;
pub mod name;
pub mod parse;
pub mod slice;
pub mod summary;

pub use error::{FunctionKey, SliceError, TraceError};
pub use model::{DurationStats, MemoryStats, Trace, TraceFunction};
pub use parse::read_trace;
pub use slice::{FunctionSelection, Slice};
pub use summary::TraceSummary;

#[cfg(test)]
mod parse_tests;
