//! Deterministic per-function, per-minute random streams.
//!
//! The derivation is fixed and part of the reproducibility contract (changing it changes every schedule):
//!
//! 1. `id = FNV-1a-64(hash_owner ‖ 0x1F ‖ hash_app ‖ 0x1F ‖ hash_function)` over the UTF-8 bytes (offset basis
//!    `0xcbf29ce484222325`, prime `0x100000001b3`; `0x1F` is the ASCII unit separator, so field boundaries count).
//! 2. `state = mix64(seed) ^ id`, where `mix64` is the SplitMix64 finaliser.
//! 3. The function's 32-byte ChaCha8 key is four successive SplitMix64 outputs from `state`
//!    (`state += 0x9E3779B97F4A7C15; out = mix64(state)`), each written little-endian.
//! 4. Trace minute `m` of that function uses `ChaCha8Rng::from_seed(key)` with `set_stream(m)`: an independent
//!    ChaCha stream per minute, so generating minute 30 needs nothing from minutes 0..30.
//!
//! A function's streams therefore depend only on the seed, its own hashes and the minute — never on its position in
//! the trace or on the other functions. Two functions with identical hashes get identical streams.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::trace::TraceFunction;

/// FNV-1a-64's offset basis (the hash of nothing).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const FIELD_SEPARATOR: u8 = 0x1F;

/// A function's ChaCha8 key (step 3 of the module docs).
pub type FunctionKey = [u8; 32];

/// FNV-1a, 64 bits, continuing from `hash` (start with [`fnv1a64`] for a fresh hash).
pub fn fnv1a64_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a, 64 bits, over `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET, bytes)
}

/// The SplitMix64 finaliser (Stafford variant 13), a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One SplitMix64 step: advances `state` and returns the next output.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    mix64(*state)
}

/// The function's identity hash (step 1 of the module docs).
pub fn function_id(owner: &str, app: &str, function: &str) -> u64 {
    let mut h = fnv1a64(owner.as_bytes());
    h = fnv1a64_extend(h, &[FIELD_SEPARATOR]);
    h = fnv1a64_extend(h, app.as_bytes());
    h = fnv1a64_extend(h, &[FIELD_SEPARATOR]);
    fnv1a64_extend(h, function.as_bytes())
}

/// The ChaCha8 key of a function under `seed` (steps 2–3 of the module docs).
pub fn function_key(seed: u64, function: &TraceFunction) -> FunctionKey {
    let mut state = mix64(seed) ^ function_id(&function.hash_owner, &function.hash_app, &function.hash_function);
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    key
}

/// The random stream of one function in one trace minute (step 4 of the module docs).
pub fn minute_rng(key: &FunctionKey, trace_minute: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_stream(u64::from(trace_minute));
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        // SplitMix64 from state 0: reference output of Vigna's splitmix64.c.
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xe220a8397b1dcdaf);
    }

    #[test]
    fn field_boundaries_matter() {
        assert_ne!(function_id("ab", "c", "d"), function_id("a", "bc", "d"));
    }

    #[test]
    fn minutes_get_distinct_streams() {
        let key = [7u8; 32];
        let a: u64 = minute_rng(&key, 0).random();
        let b: u64 = minute_rng(&key, 1).random();
        let a2: u64 = minute_rng(&key, 0).random();
        assert_ne!(a, b);
        assert_eq!(a, a2);
    }
}
