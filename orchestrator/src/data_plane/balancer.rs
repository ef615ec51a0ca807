//! Load-balancing policies: which free endpoint of a function serves the next request.

use rand::RngExt;

/// How the data plane picks among a function's free endpoints (a config key, so the contracts' type).
pub use contracts::config::LoadBalancing;

/// Picks one index among `n` endpoints whose in-flight counts `in_flight` reads, among those below `capacity`.
///
/// `cursor` is the function's round-robin position; it advances only under `RoundRobin`. The counts are read
/// through a closure so the per-request path allocates nothing.
pub fn pick(
    policy: LoadBalancing,
    n: usize,
    in_flight: impl Fn(usize) -> u32,
    capacity: u32,
    cursor: &mut usize,
) -> Option<usize> {
    let free = |i: &usize| in_flight(*i) < capacity;
    match policy {
        LoadBalancing::RoundRobin => {
            let start = *cursor;
            let found = (0..n).map(|k| (start + k) % n).find(free)?;
            *cursor = (found + 1) % n;
            Some(found)
        }
        LoadBalancing::Random => {
            let free_count = (0..n).filter(free).count();
            if free_count == 0 {
                return None;
            }
            let nth = rand::rng().random_range(0..free_count);
            (0..n).filter(free).nth(nth)
        }
        LoadBalancing::LeastInFlight => (0..n).filter(free).min_by_key(|&i| in_flight(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick_in(policy: LoadBalancing, in_flight: &[u32], capacity: u32, cursor: &mut usize) -> Option<usize> {
        pick(policy, in_flight.len(), |i| in_flight[i], capacity, cursor)
    }

    #[test]
    fn round_robin_rotates_and_skips_busy() {
        let mut cursor = 0;
        let picks: Vec<_> = (0..4).map(|_| pick_in(LoadBalancing::RoundRobin, &[0, 0, 0], 1, &mut cursor)).collect();
        assert_eq!(picks, [Some(0), Some(1), Some(2), Some(0)]);
        let mut cursor = 0;
        assert_eq!(pick_in(LoadBalancing::RoundRobin, &[1, 0, 1], 1, &mut cursor), Some(1));
        assert_eq!(cursor, 2);
    }

    #[test]
    fn no_free_endpoint_means_none() {
        for policy in [LoadBalancing::RoundRobin, LoadBalancing::Random, LoadBalancing::LeastInFlight] {
            assert_eq!(pick_in(policy, &[1, 1], 1, &mut 0), None, "{policy:?}");
            assert_eq!(pick_in(policy, &[], 1, &mut 0), None, "{policy:?}");
        }
    }

    #[test]
    fn least_in_flight_prefers_idle() {
        assert_eq!(pick_in(LoadBalancing::LeastInFlight, &[3, 1, 2], 4, &mut 0), Some(1));
    }

    #[test]
    fn random_only_picks_free_and_reaches_all() {
        let mut seen = [0u32; 3];
        for _ in 0..300 {
            let i = pick_in(LoadBalancing::Random, &[0, 1, 0], 1, &mut 0).unwrap();
            seen[i] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!(seen[0] > 0 && seen[2] > 0);
    }
}
