//! [`interleave_by`]: spread every group of a batch evenly over the run.

use std::collections::HashMap;
use std::hash::Hash;

/// Reorders `items` so that every group (items with equal `key`) is spread
/// evenly over the whole order, in proportion to its size.
///
/// Real inputs are often clustered: all of one large customer's records
/// together, sorted by name. Processed in that order, a large group
/// saturates the services it shares for a while, and progress says little
/// ("we are in the M's now: is that halfway?"). After `interleave_by`, a
/// group with 10× the items of another is 10× as dense *everywhere* in the
/// run, neither at the start nor at the end.
///
/// ```
/// use limit_runtime::batch::interleave_by;
///
/// // One big customer (a) and two small ones, clustered as data often is.
/// let items = ["a1", "a2", "a3", "a4", "b1", "b2", "c1", "c2"];
/// let order = interleave_by(items, |s| s.as_bytes()[0]);
/// assert_eq!(order, ["a1", "b1", "a2", "c1", "a3", "b2", "a4", "c2"]);
/// ```
///
/// The result is a permutation of the input and deterministic: equal input
/// gives equal output. Within a group, items keep their input order. Item
/// `j` (from 0) of group `g` (numbered by first appearance, from 0, of `G`
/// groups) with `n` items is placed at the fraction
/// `(j + (g + 1) / (G + 1)) / n` of the run: evenly every `1/n`, and groups
/// of equal size offset from each other instead of clustering at the same
/// points. The order sorts by that fraction, compared exactly (no floating
/// point). Time O(N log N), memory O(N).
pub fn interleave_by<T, K, I, F>(items: I, mut key: F) -> Vec<T>
where
    I: IntoIterator<Item = T>,
    F: FnMut(&T) -> K,
    K: Hash + Eq,
{
    // Group index per item, in order of first appearance.
    let mut groups: HashMap<K, usize> = HashMap::new();
    let mut sizes: Vec<u64> = Vec::new();
    let mut tagged: Vec<(usize, u64, T)> = Vec::new();
    for item in items {
        let g = *groups.entry(key(&item)).or_insert_with(|| {
            sizes.push(0);
            sizes.len() - 1
        });
        let j = sizes[g];
        sizes[g] += 1;
        tagged.push((g, j, item));
    }
    drop(groups);
    // Position of item j of group g (of G) with n items:
    // (j·(G+1) + g + 1) / (n·(G+1)). Compare a/b < c/d as a·d < c·b in
    // u128: both sides stay below 2^128 for any realistic count.
    let phases = sizes.len() as u128 + 1;
    tagged.sort_by(|(ga, ja, _), (gb, jb, _)| {
        let num = |g: usize, j: u64| u128::from(j) * phases + g as u128 + 1;
        let den = |g: usize| u128::from(sizes[g]) * phases;
        (num(*ga, *ja) * den(*gb))
            .cmp(&(num(*gb, *jb) * den(*ga)))
            .then(ga.cmp(gb))
    });
    tagged.into_iter().map(|(_, _, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permutation_that_keeps_order_within_groups() {
        let items: Vec<(u8, u32)> = (0..500u32).map(|i| ((i % 7 * i % 13) as u8, i)).collect();
        let out = interleave_by(items.clone(), |x| x.0);
        let mut sorted = out.clone();
        sorted.sort_by_key(|x| x.1);
        assert_eq!(sorted, items, "a permutation");
        for g in 0..13u8 {
            let mine: Vec<u32> = out.iter().filter(|x| x.0 == g).map(|x| x.1).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "group {g} keeps its order"
            );
        }
    }

    #[test]
    fn a_large_group_is_half_of_every_stretch() {
        // A group of 100 among ten groups of 10, clustered in the input.
        let mut items: Vec<u32> = vec![1000; 100];
        for g in 0..10 {
            items.extend(std::iter::repeat_n(g, 10));
        }
        let out = interleave_by(items, |x| *x);
        for start in 0..=out.len() - 20 {
            let big = out[start..start + 20]
                .iter()
                .filter(|x| **x == 1000)
                .count();
            assert!((8..=12).contains(&big), "{big} of 20 at {start}");
        }
        // And each small group is spread too: never two of one group within
        // a stretch of 10.
        for g in 0..10 {
            let at: Vec<usize> = (0..out.len()).filter(|&i| out[i] == g).collect();
            assert!(
                at.windows(2).all(|w| w[1] - w[0] >= 10),
                "group {g}: {at:?}"
            );
        }
    }

    #[test]
    fn deterministic_and_edge_cases() {
        let items: Vec<u32> = (0..300).map(|i| i * 7919 % 11).collect();
        assert_eq!(
            interleave_by(items.clone(), |x| *x),
            interleave_by(items, |x| *x)
        );
        assert!(interleave_by(Vec::<u8>::new(), |x| *x).is_empty());
        assert_eq!(interleave_by([5], |x| *x), [5]);
        assert_eq!(
            interleave_by([1, 2, 3], |_| 0),
            [1, 2, 3],
            "one group: unchanged"
        );
    }
}
