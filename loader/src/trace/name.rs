//! Stable, unique, DNS-label function names derived from the trace's hashes.
//!
//! A name is `f-` followed by a prefix of the function's key (HashFunction, then HashOwner, then HashApp, lowercased).
//! The prefix is 12 characters unless another function of the trace shares it; then it grows until it differs. The
//! length depends only on the set of functions, not on their order, so the same trace always yields the same names.

use std::collections::HashMap;

/// Characters after `f-` in a name without collisions.
pub const NAME_HASH_CHARS: usize = 12;

/// Longest key prefix used, so that `f-` + prefix + a `-N` tie-breaker stays within a 63-character DNS label.
const MAX_KEY_CHARS: usize = 56;

/// Names for functions given as `(owner, app, function)` hashes (ASCII letters and digits), in the same order.
/// Distinct triples get distinct names.
pub fn assign_names(keys: &[(&str, &str, &str)]) -> Vec<String> {
    let lowered: Vec<String> = keys.iter().map(|(o, a, f)| format!("{f}{o}{a}").to_ascii_lowercase()).collect();
    let longest_shared = longest_shared_prefixes(&lowered);
    let names: Vec<String> = lowered
        .iter()
        .zip(&longest_shared)
        .map(|(key, shared)| {
            let len = (shared + 1).max(NAME_HASH_CHARS).min(key.len()).min(MAX_KEY_CHARS);
            format!("f-{}", &key[..len])
        })
        .collect();
    break_ties(names, keys)
}

/// For each key, the longest prefix it shares with any other key (found between neighbours in sorted order).
fn longest_shared_prefixes(keys: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut shared = vec![0; keys.len()];
    for pair in order.windows(2) {
        let common = common_prefix(&keys[pair[0]], &keys[pair[1]]);
        shared[pair[0]] = shared[pair[0]].max(common);
        shared[pair[1]] = shared[pair[1]].max(common);
    }
    shared
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Names still equal (keys equal up to case, concatenation or the length cap) get `-0`, `-1`, … in the order of
/// their original hashes, which keeps them independent of row order.
fn break_ties(mut names: Vec<String>, keys: &[(&str, &str, &str)]) -> Vec<String> {
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        groups.entry(name.clone()).or_default().push(i);
    }
    for mut members in groups.into_values().filter(|m| m.len() > 1) {
        members.sort_by_key(|&i| keys[i]);
        for (rank, i) in members.into_iter().enumerate() {
            names[i] = format!("{}-{rank}", names[i]);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "1779fd3337dd353e424d808d9190aff8f09e46a8cbbe6469079b2d7f0e246e37";
    const H2: &str = "bd28ee142ca5b46259f6e27fc3a4216f447bd5843c406e63219cff30e73b135b";

    fn is_dns_label(name: &str) -> bool {
        name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn plain_names_are_f_and_twelve_hash_chars() {
        let names = assign_names(&[("o", "a", H1), ("o", "a", H2)]);
        assert_eq!(names, ["f-1779fd3337dd", "f-bd28ee142ca5"]);
    }

    #[test]
    fn colliding_prefixes_grow_until_distinct_and_others_stay_short() {
        let a = "abcdefabcdef0001";
        let b = "abcdefabcdef0002";
        let names = assign_names(&[("o", "a", a), ("o", "a", H1), ("o", "a", b)]);
        assert_eq!(names, ["f-abcdefabcdef0001", "f-1779fd3337dd", "f-abcdefabcdef0002"]);
    }

    #[test]
    fn same_function_hash_in_other_apps_uses_owner_and_app_chars() {
        let names = assign_names(&[("owner1", "app", H1), ("owner2", "app", H1)]);
        assert_ne!(names[0], names[1]);
        assert!(names.iter().all(|n| is_dns_label(n)), "{names:?}");
    }

    #[test]
    fn names_do_not_depend_on_row_order() {
        let keys = [("o", "a", "abcdefabcdef01"), ("o", "a", H2), ("o", "a", "abcdefabcdef02"), ("X", "Y", H2)];
        let forward = assign_names(&keys);
        let mut reversed_keys = keys;
        reversed_keys.reverse();
        let mut backward = assign_names(&reversed_keys);
        backward.reverse();
        assert_eq!(forward, backward);
    }

    #[test]
    fn keys_equal_up_to_case_or_concatenation_get_tie_breakers() {
        let keys = [("ab", "c", "F"), ("a", "bc", "f"), ("AB", "C", "f")];
        let names = assign_names(&keys);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| is_dns_label(n)), "{names:?}");
    }

    #[test]
    fn long_identical_function_hashes_stay_within_a_dns_label() {
        let keys = [(H1, H1, H1), (H2, H1, H1), (H1, H2, H1)];
        let names = assign_names(&keys);
        assert!(names.iter().all(|n| is_dns_label(n)), "{names:?}");
        assert_eq!(names.iter().collect::<std::collections::HashSet<_>>().len(), 3);
    }
}
