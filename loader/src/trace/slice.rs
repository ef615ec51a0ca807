//! Selecting part of a trace: a range of minutes and a subset of its functions.

use super::error::SliceError;
use super::model::{MINUTES_PER_DAY, Trace};

/// Which functions a [`Slice`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FunctionSelection {
    /// Every function.
    #[default]
    All,
    /// The first N functions in trace order.
    First(usize),
    /// N functions chosen by a seeded hash of their names, kept in trace order.
    Sample {
        /// Functions to keep.
        count: usize,
        /// Seed of the choice: the same seed picks the same functions.
        seed: u64,
    },
}

/// A part of a trace to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// First minute kept, 0-based (minute 0 is the trace's column `1`).
    pub start_minute: usize,
    /// Minutes kept, at least 1.
    pub minutes: usize,
    /// Functions kept.
    pub functions: FunctionSelection,
}

impl Default for Slice {
    /// The whole day, every function.
    fn default() -> Self {
        Self { start_minute: 0, minutes: MINUTES_PER_DAY, functions: FunctionSelection::All }
    }
}

impl Trace {
    /// Minutes the trace covers: [`MINUTES_PER_DAY`] as read, fewer after [`Trace::slice`].
    pub fn minutes(&self) -> usize {
        self.functions.first().map_or(MINUTES_PER_DAY, |f| f.invocations_per_minute.len())
    }

    /// Total invocations over all functions and minutes.
    pub fn total_invocations(&self) -> u64 {
        self.functions.iter().flat_map(|f| &f.invocations_per_minute).map(|&n| u64::from(n)).sum()
    }

    /// The selected functions, each keeping only the selected minutes: in the result, `invocations_per_minute[0]`
    /// is minute `slice.start_minute` of this trace. Functions keep their names and their trace order.
    pub fn slice(&self, slice: &Slice) -> Result<Trace, SliceError> {
        let range = self.minute_range(slice)?;
        let keep = self.selected(slice.functions)?;
        let functions = self
            .functions
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(function, _)| {
                let mut function = function.clone();
                function.invocations_per_minute = function.invocations_per_minute[range.clone()].to_vec();
                function
            })
            .collect();
        Ok(Trace { functions })
    }

    fn minute_range(&self, slice: &Slice) -> Result<std::ops::Range<usize>, SliceError> {
        if slice.minutes == 0 {
            return Err(SliceError::ZeroMinutes);
        }
        let available = self.minutes();
        match slice.start_minute.checked_add(slice.minutes) {
            Some(end) if end <= available => Ok(slice.start_minute..end),
            end => Err(SliceError::OutOfRange { start: slice.start_minute, end: end.unwrap_or(usize::MAX), available }),
        }
    }

    /// For each function, whether the selection keeps it.
    fn selected(&self, selection: FunctionSelection) -> Result<Vec<bool>, SliceError> {
        let available = self.functions.len();
        let count = match selection {
            FunctionSelection::All => return Ok(vec![true; available]),
            FunctionSelection::First(count) | FunctionSelection::Sample { count, .. } => count,
        };
        if count == 0 {
            return Err(SliceError::NoFunctions);
        }
        if count > available {
            return Err(SliceError::TooManyFunctions { requested: count, available });
        }
        let mut keep = vec![false; available];
        match selection {
            FunctionSelection::Sample { seed, .. } => {
                // Ranking by a hash of the name (not by position) keeps the choice stable when rows are reordered.
                let mut ranked: Vec<usize> = (0..available).collect();
                ranked.sort_by_cached_key(|&i| (sample_rank(seed, &self.functions[i].name), i));
                ranked.into_iter().take(count).for_each(|i| keep[i] = true);
            }
            _ => keep[..count].fill(true),
        }
        Ok(keep)
    }
}

/// A seeded 64-bit hash of a function name (FNV-1a, then a SplitMix64 finaliser to spread similar names): fixed
/// here so that samples are the same on every platform and Rust version, unlike `std`'s hasher.
fn sample_rank(seed: u64, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.to_le_bytes().iter().chain(name.as_bytes()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{DurationStats, MemoryStats, TraceFunction};

    fn function(name: &str, per_minute: Vec<u32>) -> TraceFunction {
        TraceFunction {
            name: name.to_owned(),
            hash_owner: "o".into(),
            hash_app: "a".into(),
            hash_function: name.into(),
            trigger: "http".into(),
            invocations_per_minute: per_minute,
            duration: DurationStats { average: 1.0, count: 1, minimum: 1.0, maximum: 1.0, percentiles: [1.0; 7] },
            memory: MemoryStats { sample_count: 1, average: 1.0, percentiles: [1.0; 8] },
        }
    }

    /// `n` functions named f-0.. whose minute m has count m + 1000 * index.
    fn trace(n: usize) -> Trace {
        let per_minute = |i: usize| (0..MINUTES_PER_DAY).map(|m| (m + 1000 * i) as u32).collect();
        Trace { functions: (0..n).map(|i| function(&format!("f-{i}"), per_minute(i))).collect() }
    }

    fn names(trace: &Trace) -> Vec<&str> {
        trace.functions.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn keeps_only_the_selected_minutes_starting_at_index_zero() {
        let slice = Slice { start_minute: 100, minutes: 3, functions: FunctionSelection::First(2) };
        let sliced = trace(5).slice(&slice).unwrap();
        assert_eq!(names(&sliced), ["f-0", "f-1"]);
        assert_eq!(sliced.functions[1].invocations_per_minute, [1100, 1101, 1102]);
        assert_eq!(sliced.minutes(), 3);
    }

    #[test]
    fn default_slice_is_the_whole_trace() {
        let whole = trace(3);
        assert_eq!(whole.slice(&Slice::default()).unwrap(), whole);
    }

    #[test]
    fn range_must_fit_in_the_trace() {
        let t = trace(1);
        let at = |start_minute, minutes| t.slice(&Slice { start_minute, minutes, functions: FunctionSelection::All });
        assert!(at(1439, 1).is_ok());
        assert_eq!(at(0, 0), Err(SliceError::ZeroMinutes));
        assert_eq!(at(1000, 441), Err(SliceError::OutOfRange { start: 1000, end: 1441, available: 1440 }));
        assert!(matches!(at(usize::MAX, 2), Err(SliceError::OutOfRange { .. })));
        // A sliced trace's own length is the bound for slicing it again.
        let short = at(0, 10).unwrap();
        assert!(short.slice(&Slice { start_minute: 5, minutes: 6, functions: FunctionSelection::All }).is_err());
    }

    #[test]
    fn function_count_must_be_between_one_and_the_trace_size() {
        let t = trace(4);
        let with = |functions| t.slice(&Slice { functions, ..Slice::default() });
        assert_eq!(with(FunctionSelection::First(5)), Err(SliceError::TooManyFunctions { requested: 5, available: 4 }));
        assert_eq!(with(FunctionSelection::Sample { count: 0, seed: 1 }), Err(SliceError::NoFunctions));
        assert_eq!(with(FunctionSelection::First(4)).unwrap().functions.len(), 4);
    }

    #[test]
    fn seeded_sample_is_deterministic_in_trace_order_and_independent_of_row_order() {
        let t = trace(50);
        let sample = |t: &Trace, seed| {
            let slice = Slice { functions: FunctionSelection::Sample { count: 10, seed }, ..Slice::default() };
            let mut chosen: Vec<String> = names(&t.slice(&slice).unwrap()).into_iter().map(String::from).collect();
            let in_trace_order = chosen.windows(2).all(|w| {
                let pos = |n: &str| t.functions.iter().position(|f| f.name == n);
                pos(&w[0]) < pos(&w[1])
            });
            assert!(in_trace_order);
            chosen.sort();
            chosen
        };
        let first = sample(&t, 7);
        assert_eq!(first.len(), 10);
        assert_eq!(first, sample(&t, 7));
        assert_ne!(first, sample(&t, 8));
        let mut reordered = t.clone();
        reordered.functions.reverse();
        assert_eq!(first, sample(&reordered, 7));
    }

    #[test]
    fn sample_rank_is_fixed_across_platforms() {
        // Pinned so that a change to the hash (which would change every sampled experiment) is noticed.
        assert_eq!(sample_rank(0, "f-1779fd3337dd"), 0xa935_34be_4d0c_abd4);
        assert_eq!(sample_rank(42, "f-a"), 0xe173_e8db_cc1d_ac51);
    }
}
