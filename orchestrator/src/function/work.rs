//! The work of an invocation: hold memory with every page written, and spin the CPU against the clock.
//!
//! The spin is timed with [`Instant`], not a loop calibrated per machine, so the loader's `multiplier` (the
//! calibration factor of Dirigent's and vHive's functions) does not change how long it runs.

use std::collections::TryReserveError;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::params::{Invocation, Workload};

/// Bytes per page written when touching memory (the common 4 KiB page; larger pages are touched too).
pub const PAGE_SIZE: usize = 4096;

/// Iterations between clock checks: well under a microsecond of work, so the spin ends close to its deadline.
const SPIN_CHUNK: u32 = 256;

/// What the work measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkOutcome {
    /// From before the allocation to the end of the spin; zero for `empty`.
    pub elapsed: Duration,
    /// Bytes held, every page written.
    pub memory_bytes: usize,
}

/// Why the work could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// The requested memory does not fit the address space.
    #[error("requested_memory {mib} MiB does not fit the address space")]
    TooLarge {
        /// The requested MiB.
        mib: u64,
    },
    /// The allocator refused the memory.
    #[error("cannot allocate requested_memory {mib} MiB: {source}")]
    Allocation {
        /// The requested MiB.
        mib: u64,
        /// The allocator's error.
        source: TryReserveError,
    },
}

/// Runs the invocation's work on the calling thread; returns the memory too, so the caller can free it after
/// replying. `cancel` ends the spin early (the client went away).
pub fn execute(invocation: &Invocation, cancel: &AtomicBool) -> Result<(WorkOutcome, Vec<u8>), WorkError> {
    if invocation.workload == Workload::Empty {
        let outcome = WorkOutcome { elapsed: Duration::ZERO, memory_bytes: 0 };
        return Ok((outcome, Vec::new()));
    }
    let start = Instant::now();
    let memory = allocate_touched(invocation.requested_memory_mib)?;
    // Allocation counts towards the requested time, as in vHive's trace function.
    spin_until(start + Duration::from_millis(invocation.requested_cpu_ms), cancel);
    black_box(&memory);
    let outcome = WorkOutcome { elapsed: start.elapsed(), memory_bytes: memory.len() };
    Ok((outcome, memory))
}

/// Allocates `mib` MiB and writes every page, so the memory is resident rather than only reserved.
pub fn allocate_touched(mib: u64) -> Result<Vec<u8>, WorkError> {
    let bytes =
        usize::try_from(mib).ok().and_then(|mib| mib.checked_mul(1 << 20)).ok_or(WorkError::TooLarge { mib })?;
    let mut memory = Vec::new();
    memory.try_reserve_exact(bytes).map_err(|source| WorkError::Allocation { mib, source })?;
    memory.resize(bytes, 0);
    // The zero fill may become a lazily zeroed mapping; a non-zero write per page makes each page resident.
    for page in memory.chunks_mut(PAGE_SIZE) {
        page[0] = black_box(1);
    }
    Ok(memory)
}

/// Busy-spins until `deadline` or until `cancel` is set.
pub fn spin_until(deadline: Instant, cancel: &AtomicBool) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    while Instant::now() < deadline && !cancel.load(Ordering::Relaxed) {
        for _ in 0..SPIN_CHUNK {
            state = black_box(state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
        }
    }
    black_box(state);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(cpu_ms: u64, memory_mib: u64) -> Invocation {
        Invocation { requested_cpu_ms: cpu_ms, requested_memory_mib: memory_mib, ..Invocation::default() }
    }

    #[test]
    fn spins_at_least_the_requested_time() {
        let (outcome, memory) = execute(&trace(20, 0), &AtomicBool::new(false)).unwrap();
        assert!(outcome.elapsed >= Duration::from_millis(20), "{outcome:?}");
        assert!(memory.is_empty());
    }

    #[test]
    fn holds_the_requested_memory_with_pages_written() {
        let (outcome, memory) = execute(&trace(0, 3), &AtomicBool::new(false)).unwrap();
        assert_eq!(outcome.memory_bytes, 3 << 20);
        assert!(memory.chunks(PAGE_SIZE).all(|page| page[0] == 1));
    }

    #[test]
    fn empty_does_nothing() {
        let invocation = Invocation { workload: Workload::Empty, ..trace(60_000, 1024) };
        let (outcome, memory) = execute(&invocation, &AtomicBool::new(false)).unwrap();
        assert_eq!(outcome, WorkOutcome { elapsed: Duration::ZERO, memory_bytes: 0 });
        assert!(memory.is_empty());
    }

    #[test]
    fn cancel_ends_the_spin() {
        // Would spin for a minute if the flag were ignored.
        let (outcome, _) = execute(&trace(60_000, 0), &AtomicBool::new(true)).unwrap();
        assert!(outcome.elapsed < Duration::from_secs(60), "{outcome:?}");
    }

    #[test]
    fn impossible_allocation_is_an_error() {
        let error = allocate_touched(u64::MAX).unwrap_err();
        assert!(matches!(error, WorkError::TooLarge { .. } | WorkError::Allocation { .. }), "{error}");
        // Fits usize on 64-bit but exceeds what the allocator accepts (isize::MAX bytes).
        let error = allocate_touched(1 << 43).unwrap_err();
        assert!(error.to_string().contains("requested_memory"), "{error}");
    }
}
