//! Placement policies: which worker gets a new sandbox.
//!
//! Only [`PlacementPolicy::ResourceAware`] looks at capacity; the other policies place blindly, as
//! Dirigent's simple policies do, and leave admission to the worker. The placer decides from the
//! snapshot it is given, so a caller placing several sandboxes in a row should account each placement
//! (`sandboxes += 1`, `*_used += request`) in its snapshot before the next call, or the load-based
//! policies will pick the same worker every time.

use std::cmp::Ordering;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// How the placer chooses a worker (a config key, so the contracts' type).
pub use contracts::config::PlacementPolicy;

/// What the placer knows of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLoad {
    /// Worker name.
    pub name: String,
    /// CPU the worker offers to sandboxes, in millicores.
    pub cpu_capacity_millis: u64,
    /// Memory the worker offers to sandboxes, in MiB.
    pub memory_capacity_mib: u64,
    /// CPU already requested by its sandboxes, in millicores.
    pub cpu_used_millis: u64,
    /// Memory already requested by its sandboxes, in MiB.
    pub memory_used_mib: u64,
    /// Number of sandboxes on the worker.
    pub sandboxes: u32,
}

impl WorkerLoad {
    /// Unrequested CPU; 0 if the worker is already over-committed.
    fn free_cpu_millis(&self) -> u64 {
        self.cpu_capacity_millis.saturating_sub(self.cpu_used_millis)
    }

    /// Unrequested memory; 0 if the worker is already over-committed.
    fn free_memory_mib(&self) -> u64 {
        self.memory_capacity_mib.saturating_sub(self.memory_used_mib)
    }
}

/// A sandbox's resource request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// Why no worker could be chosen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    /// "no worker is registered"
    #[error("no worker is registered")]
    NoWorkers,
    /// "no worker has room for {cpu_millis}m CPU and {memory_mib} MiB (largest free: {max_free_cpu_millis}m CPU, {max_free_memory_mib} MiB)"
    #[error(
        "no worker has room for {cpu_millis}m CPU and {memory_mib} MiB \
         (largest free: {max_free_cpu_millis}m CPU, {max_free_memory_mib} MiB)"
    )]
    NoCapacity {
        /// Requested CPU in millicores.
        cpu_millis: u64,
        /// Requested memory in MiB.
        memory_mib: u64,
        /// Largest free CPU on any worker, in millicores.
        max_free_cpu_millis: u64,
        /// Largest free memory on any worker (possibly another one), in MiB.
        max_free_memory_mib: u64,
    },
}

/// A non-negative fraction compared exactly, so that ties are real ties and not float noise.
#[derive(Debug, Clone, Copy)]
struct Fraction {
    num: u128,
    den: u128,
}

impl Fraction {
    /// `num / den`, with an empty capacity (`den == 0`) counting as nothing free.
    fn new(num: u64, den: u64) -> Self {
        if den == 0 { Self { num: 0, den: 1 } } else { Self { num: u128::from(num), den: u128::from(den) } }
    }

    /// Cross-multiplication; both sides are products of two `u64`, so they fit in `u128`.
    fn cmp(self, other: Self) -> Ordering {
        (self.num * other.den).cmp(&(other.num * self.den))
    }

    fn min(self, other: Self) -> Self {
        if self.cmp(other) == Ordering::Greater { other } else { self }
    }
}

/// Chooses workers for new sandboxes according to one policy.
#[derive(Debug, Clone)]
pub struct Placer {
    policy: PlacementPolicy,
    /// Seeded, portable generator so that a seed reproduces a placement sequence.
    rng: Xoshiro256PlusPlus,
    /// Index of the next round-robin candidate (taken modulo the current list length).
    cursor: usize,
}

impl Placer {
    /// A placer for `policy`; `seed` drives [`PlacementPolicy::Random`].
    pub fn new(policy: PlacementPolicy, seed: u64) -> Self {
        Self { policy, rng: Xoshiro256PlusPlus::seed_from_u64(seed), cursor: 0 }
    }

    /// The policy this placer applies.
    pub fn policy(&self) -> PlacementPolicy {
        self.policy
    }

    /// Index into `workers` of the chosen worker.
    pub fn place(&mut self, workers: &[WorkerLoad], request: Resources) -> Result<usize, PlacementError> {
        if workers.is_empty() {
            return Err(PlacementError::NoWorkers);
        }
        match self.policy {
            PlacementPolicy::Random => Ok(self.rng.random_range(0..workers.len())),
            PlacementPolicy::RoundRobin => {
                // Modulo the current length so that a shrunken list never yields a stale index;
                // storing `chosen + 1` keeps the rotation going from where it is after a change.
                let chosen = self.cursor % workers.len();
                self.cursor = chosen + 1;
                Ok(chosen)
            }
            PlacementPolicy::LeastLoaded => Ok(least_loaded(workers)),
            PlacementPolicy::ResourceAware => resource_aware(workers, request),
        }
    }
}

fn least_loaded(workers: &[WorkerLoad]) -> usize {
    // `min_by` keeps the first of equal elements, which gives the lowest index on full ties.
    workers
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            a.sandboxes.cmp(&b.sandboxes).then_with(|| b.free_memory_mib().cmp(&a.free_memory_mib()))
        })
        .map_or(0, |(i, _)| i)
}

fn resource_aware(workers: &[WorkerLoad], request: Resources) -> Result<usize, PlacementError> {
    // Score = the scarcer of the CPU and memory shares left free after placing, so that the choice
    // balances the two dimensions and spreads load; ties go to the lowest index.
    let mut best: Option<(usize, Fraction)> = None;
    for (i, w) in workers.iter().enumerate() {
        let (free_cpu, free_mem) = (w.free_cpu_millis(), w.free_memory_mib());
        if free_cpu < request.cpu_millis || free_mem < request.memory_mib {
            continue;
        }
        let score = Fraction::new(free_cpu - request.cpu_millis, w.cpu_capacity_millis)
            .min(Fraction::new(free_mem - request.memory_mib, w.memory_capacity_mib));
        if best.is_none_or(|(_, s)| score.cmp(s) == Ordering::Greater) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| PlacementError::NoCapacity {
        cpu_millis: request.cpu_millis,
        memory_mib: request.memory_mib,
        max_free_cpu_millis: workers.iter().map(WorkerLoad::free_cpu_millis).max().unwrap_or(0),
        max_free_memory_mib: workers.iter().map(WorkerLoad::free_memory_mib).max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [PlacementPolicy; 4] = [
        PlacementPolicy::Random,
        PlacementPolicy::RoundRobin,
        PlacementPolicy::LeastLoaded,
        PlacementPolicy::ResourceAware,
    ];

    const SMALL: Resources = Resources { cpu_millis: 500, memory_mib: 256 };

    /// A worker with the given capacity, usage and sandbox count.
    fn worker(name: &str, cap: (u64, u64), used: (u64, u64), sandboxes: u32) -> WorkerLoad {
        WorkerLoad {
            name: name.to_owned(),
            cpu_capacity_millis: cap.0,
            memory_capacity_mib: cap.1,
            cpu_used_millis: used.0,
            memory_used_mib: used.1,
            sandboxes,
        }
    }

    /// `n` identical idle workers of 4 cores and 8 GiB.
    fn idle(n: usize) -> Vec<WorkerLoad> {
        (0..n).map(|i| worker(&format!("w{i}"), (4000, 8192), (0, 0), 0)).collect()
    }

    #[test]
    fn default_policy_is_least_loaded() {
        assert_eq!(PlacementPolicy::default(), PlacementPolicy::LeastLoaded);
        assert_eq!(Placer::new(PlacementPolicy::default(), 0).policy(), PlacementPolicy::LeastLoaded);
    }

    #[test]
    fn every_policy_rejects_an_empty_worker_list() {
        for policy in ALL {
            let mut placer = Placer::new(policy, 7);
            assert_eq!(placer.place(&[], SMALL), Err(PlacementError::NoWorkers), "{policy:?}");
        }
    }

    #[test]
    fn every_policy_places_on_a_single_fitting_worker() {
        for policy in ALL {
            let mut placer = Placer::new(policy, 7);
            for _ in 0..5 {
                assert_eq!(placer.place(&idle(1), SMALL), Ok(0), "{policy:?}");
            }
        }
    }

    #[test]
    fn round_robin_rotates() {
        let mut placer = Placer::new(PlacementPolicy::RoundRobin, 0);
        let workers = idle(3);
        let picks: Vec<_> = (0..7).map(|_| placer.place(&workers, SMALL).expect("workers exist")).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn round_robin_survives_changing_lists() {
        let mut placer = Placer::new(PlacementPolicy::RoundRobin, 0);
        let mut place = |n| placer.place(&idle(n), SMALL).expect("workers exist");
        // 4 workers: 0, 1, 2, 3 -> cursor 4.
        assert_eq!([place(4), place(4), place(4), place(4)], [0, 1, 2, 3]);
        // Shrunk to 3: 4 % 3 = 1, then 2, then 0 -- always in range.
        assert_eq!([place(3), place(3), place(3)], [1, 2, 0]);
        // Shrunk to 1: always 0.
        assert_eq!([place(1), place(1)], [0, 0]);
        // Grown to 5: continues from cursor 1.
        assert_eq!([place(5), place(5), place(5), place(5), place(5)], [1, 2, 3, 4, 0]);
    }

    #[test]
    fn round_robin_distributes_evenly() {
        let mut placer = Placer::new(PlacementPolicy::RoundRobin, 0);
        let workers = idle(4);
        let mut counts = [0u32; 4];
        for _ in 0..400 {
            counts[placer.place(&workers, SMALL).expect("workers exist")] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }

    #[test]
    fn random_is_deterministic_for_a_seed() {
        let workers = idle(10);
        let sequence = |seed| {
            let mut placer = Placer::new(PlacementPolicy::Random, seed);
            (0..50).map(|_| placer.place(&workers, SMALL).expect("workers exist")).collect::<Vec<_>>()
        };
        assert_eq!(sequence(42), sequence(42));
        assert_ne!(sequence(42), sequence(43));
    }

    #[test]
    fn random_reaches_every_worker_roughly_uniformly() {
        let mut placer = Placer::new(PlacementPolicy::Random, 1);
        let workers = idle(4);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let i = placer.place(&workers, SMALL).expect("workers exist");
            counts[i] += 1;
        }
        // Expected 1000 each, standard deviation ~27; 800..1200 is a > 7-sigma margin.
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn random_stays_in_range_when_the_list_changes() {
        let mut placer = Placer::new(PlacementPolicy::Random, 3);
        for n in [5, 1, 3, 8, 2] {
            for _ in 0..20 {
                assert!(placer.place(&idle(n), SMALL).expect("workers exist") < n);
            }
        }
    }

    #[test]
    fn least_loaded_picks_fewest_sandboxes() {
        let mut placer = Placer::new(PlacementPolicy::LeastLoaded, 0);
        let workers = vec![
            worker("a", (4000, 8192), (0, 0), 3),
            worker("b", (4000, 8192), (0, 0), 1),
            worker("c", (4000, 8192), (0, 0), 2),
        ];
        assert_eq!(placer.place(&workers, SMALL), Ok(1));
    }

    #[test]
    fn least_loaded_breaks_ties_by_free_memory_then_index() {
        let mut placer = Placer::new(PlacementPolicy::LeastLoaded, 0);
        // b and c tie on 1 sandbox; c has 8192 - 1024 = 7168 MiB free vs b's 8192 - 4096 = 4096.
        let workers = vec![
            worker("a", (4000, 8192), (0, 0), 2),
            worker("b", (4000, 8192), (500, 4096), 1),
            worker("c", (4000, 8192), (500, 1024), 1),
        ];
        assert_eq!(placer.place(&workers, SMALL), Ok(2));
        // Full tie: the lowest index.
        assert_eq!(placer.place(&idle(3), SMALL), Ok(0));
    }

    #[test]
    fn least_loaded_spreads_when_the_caller_accounts_placements() {
        let mut placer = Placer::new(PlacementPolicy::LeastLoaded, 0);
        let mut workers = idle(3);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let i = placer.place(&workers, SMALL).expect("workers exist");
            workers[i].sandboxes += 1;
            workers[i].memory_used_mib += SMALL.memory_mib;
            picks.push(i);
        }
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn only_resource_aware_checks_capacity() {
        let full = vec![worker("full", (1000, 1024), (1000, 1024), 4)];
        for policy in [PlacementPolicy::Random, PlacementPolicy::RoundRobin, PlacementPolicy::LeastLoaded] {
            assert_eq!(Placer::new(policy, 0).place(&full, SMALL), Ok(0), "{policy:?}");
        }
        assert!(matches!(
            Placer::new(PlacementPolicy::ResourceAware, 0).place(&full, SMALL),
            Err(PlacementError::NoCapacity { .. })
        ));
    }

    #[test]
    fn resource_aware_picks_the_largest_free_share_after_placement() {
        let mut placer = Placer::new(PlacementPolicy::ResourceAware, 0);
        // After placing 500m / 256 MiB:
        //   a: cpu (4000-1000-500)/4000 = 0.625, mem (8192-7168-256)/8192 = 0.09375 -> 0.09375
        //   b: cpu (2000-0-500)/2000   = 0.75,  mem (4096-1024-256)/4096 = 0.6875  -> 0.6875
        //   c: cpu (8000-6000-500)/8000 = 0.1875, mem (16384-0-256)/16384 = 0.984  -> 0.1875
        // a has the most free memory in absolute terms and c the most free CPU, but b is the least
        // constrained.
        let workers = vec![
            worker("a", (4000, 8192), (1000, 7168), 1),
            worker("b", (2000, 4096), (0, 1024), 1),
            worker("c", (8000, 16384), (6000, 0), 1),
        ];
        assert_eq!(placer.place(&workers, SMALL), Ok(1));
    }

    #[test]
    fn resource_aware_skips_workers_without_room() {
        let mut placer = Placer::new(PlacementPolicy::ResourceAware, 0);
        // a is idle but too small for 2000m; b has exactly 2000m and 512 MiB free: an exact fit is
        // allowed.
        let request = Resources { cpu_millis: 2000, memory_mib: 512 };
        let workers = vec![worker("a", (1000, 65536), (0, 0), 0), worker("b", (4000, 1024), (2000, 512), 5)];
        assert_eq!(placer.place(&workers, request), Ok(1));
    }

    #[test]
    fn resource_aware_refuses_to_over_commit() {
        let mut placer = Placer::new(PlacementPolicy::ResourceAware, 0);
        // Neither worker has both 1000m and 2048 MiB free: a has CPU, b has memory.
        let workers = vec![worker("a", (4000, 4096), (1000, 3072), 2), worker("b", (2000, 8192), (1500, 1024), 2)];
        let request = Resources { cpu_millis: 1000, memory_mib: 2048 };
        let err = placer.place(&workers, request).expect_err("no room");
        assert_eq!(
            err,
            PlacementError::NoCapacity {
                cpu_millis: 1000,
                memory_mib: 2048,
                max_free_cpu_millis: 3000,
                max_free_memory_mib: 7168,
            }
        );
        assert_eq!(
            err.to_string(),
            "no worker has room for 1000m CPU and 2048 MiB \
             (largest free: 3000m CPU, 7168 MiB)"
        );
    }

    #[test]
    fn resource_aware_tolerates_odd_reports() {
        let mut placer = Placer::new(PlacementPolicy::ResourceAware, 0);
        // Usage above capacity and zero capacity must neither panic nor count as free room.
        let workers = vec![worker("over", (1000, 1024), (5000, 9000), 0), worker("empty", (0, 0), (0, 0), 0)];
        assert_eq!(
            placer.place(&workers, SMALL),
            Err(PlacementError::NoCapacity {
                cpu_millis: 500,
                memory_mib: 256,
                max_free_cpu_millis: 0,
                max_free_memory_mib: 0,
            })
        );
        // A zero request fits anywhere, even on a zero-capacity worker; scores tie at 0 -> index 0.
        assert_eq!(placer.place(&workers, Resources::default()), Ok(0));
        // Extreme values do not overflow the exact comparison.
        let huge = vec![worker("x", (u64::MAX, u64::MAX), (0, 0), 0), worker("y", (u64::MAX, u64::MAX), (1, 1), 0)];
        assert_eq!(placer.place(&huge, SMALL), Ok(0));
    }

    #[test]
    fn resource_aware_ties_go_to_the_lowest_index() {
        let mut placer = Placer::new(PlacementPolicy::ResourceAware, 0);
        assert_eq!(placer.place(&idle(3), SMALL), Ok(0));
    }

    #[test]
    fn policy_serde_is_kebab_case() {
        for (policy, name) in
            ALL.into_iter().zip(["\"random\"", "\"round-robin\"", "\"least-loaded\"", "\"resource-aware\""])
        {
            assert_eq!(serde_json::to_string(&policy).expect("serializes"), name);
            assert_eq!(serde_json::from_str::<PlacementPolicy>(name).expect("parses"), policy);
        }
        assert!(serde_json::from_str::<PlacementPolicy>("\"LeastLoaded\"").is_err());
    }

    #[test]
    fn no_workers_message() {
        assert_eq!(PlacementError::NoWorkers.to_string(), "no worker is registered");
    }
}
