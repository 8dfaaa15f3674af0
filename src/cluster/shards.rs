//! The pure rules of sharding: the documented, stable hash that puts an integration in a
//! shard, and the balanced assignment of shards to live nodes that moves as few shards as
//! possible when a node joins or leaves.

use std::collections::HashMap;
use std::hash::Hash;

use uuid::Uuid;

/// The shard of integration `id` among `shards`: FNV-1a (64-bit) over the id's 16 bytes, in
/// their RFC 4122 order, modulo `shards`. Stable across versions and platforms: a database's
/// shard count is fixed, and every node must agree on every id. (UUIDv7 ids begin with their
/// creation time, so the bytes are hashed rather than taken as a number.)
pub fn shard_of(id: Uuid, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = id.as_bytes().iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    });
    (hash % u64::from(shards.max(1))) as u32
}

/// Which live node owns each shard next, given who owns it now (`current[shard]`, `None` for
/// an unowned shard; owners that are not in `nodes` are gone).
///
/// Every shard gets an owner when there is a node; each node gets `shards / nodes` shards or
/// one more (balanced within one), and the extra ones go to the nodes that hold the most now,
/// so that the most shards stay where they are: a shard moves only if its owner is gone or
/// holds more than its share. A join or a leave thus moves about `shards / nodes` shards.
/// Deterministic: every node computing it from the same inputs gets the same answer.
pub fn assign<N: Clone + Ord + Hash>(nodes: &[N], current: &[Option<N>]) -> Vec<Option<N>> {
    let mut nodes: Vec<N> = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return vec![None; current.len()];
    }
    let mut held: HashMap<&N, usize> = nodes.iter().map(|node| (node, 0)).collect();
    for owner in current.iter().flatten() {
        if let Some(count) = held.get_mut(owner) {
            *count += 1;
        }
    }
    // Quotas: the `extra` largest holders (ties by node order) get one more.
    let (base, extra) = (current.len() / nodes.len(), current.len() % nodes.len());
    let mut by_holding: Vec<&N> = nodes.iter().collect();
    by_holding.sort_by(|a, b| held[b].cmp(&held[a]).then_with(|| a.cmp(b)));
    let mut quota: HashMap<&N, usize> = by_holding
        .iter()
        .enumerate()
        .map(|(rank, node)| (*node, base + usize::from(rank < extra)))
        .collect();
    // Keep what fits in its owner's quota (the shards it prefers most); free the rest.
    let mut next: Vec<Option<N>> = vec![None; current.len()];
    let mut by_owner: HashMap<&N, Vec<usize>> = HashMap::new();
    for (shard, owner) in current.iter().enumerate() {
        if let Some(owner) = owner.as_ref().filter(|owner| quota.contains_key(owner)) {
            by_owner.entry(owner).or_default().push(shard);
        }
    }
    for (owner, mut shards) in by_owner {
        shards.sort_by_key(|shard| std::cmp::Reverse(preference(*shard, owner)));
        let left = quota.get_mut(owner).expect("a live owner");
        let kept = shards.len().min(*left);
        for shard in shards.into_iter().take(kept) {
            next[shard] = Some(owner.clone());
        }
        *left -= kept;
    }
    // Hand each freed shard to the node with room that prefers it most.
    for (shard, slot) in next.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let chosen = nodes
            .iter()
            .filter(|node| quota[node] > 0)
            .max_by_key(|node| (preference(shard, node), std::cmp::Reverse(*node)))
            .cloned();
        if let Some(node) = &chosen {
            *quota.get_mut(node).expect("a live node") -= 1;
        }
        *slot = chosen;
    }
    next
}

/// How much `node` prefers `shard` (rendezvous hashing): which of its shards a node keeps
/// when it must give some up, and which node with room a freed shard goes to. Every node
/// computes the same, so the shards that move on a join or a leave go straight to where
/// they stay, rather than hopping between nodes while views settle. (std's `DefaultHasher`
/// with its fixed keys: the same in every process of one build.)
fn preference<N: Hash>(shard: usize, node: &N) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    shard.hash(&mut hasher);
    node.hash(&mut hasher);
    std::hash::Hasher::finish(&hasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(assignment: &[Option<u8>]) -> HashMap<u8, usize> {
        let mut counts = HashMap::new();
        for owner in assignment.iter().flatten() {
            *counts.entry(*owner).or_default() += 1;
        }
        counts
    }

    fn moved(before: &[Option<u8>], after: &[Option<u8>]) -> usize {
        before.iter().zip(after).filter(|(b, a)| b != a).count()
    }

    #[test]
    fn the_hash_is_the_documented_one() {
        // FNV-1a 64 of the 16 bytes: fixed values, so a change of the function cannot pass.
        let id = Uuid::parse_str("01900000-0000-7000-8000-000000000001").unwrap();
        let nil = Uuid::nil();
        // 0x88201fb960ff6465 and 0x51c85919d1376417, computed independently.
        assert_eq!(shard_of(nil, u32::MAX), 3_911_156_766);
        assert_eq!(shard_of(id, 256), 0x17);
        assert_eq!(shard_of(id, 1), 0);
    }

    #[test]
    fn ids_spread_evenly_over_the_shards() {
        let mut per_shard = [0u32; 256];
        for _ in 0..256_000 {
            per_shard[shard_of(Uuid::now_v7(), 256) as usize] += 1;
        }
        let (min, max) = (
            per_shard.iter().min().unwrap(),
            per_shard.iter().max().unwrap(),
        );
        // 1,000 expected per shard; a skewed hash (say, of the time prefix) lands far outside.
        assert!(*min > 850 && *max < 1150, "{min}..{max}");
    }

    #[test]
    fn a_join_and_a_leave_move_a_share_each() {
        let empty = vec![None; 256];
        let two = assign(&[1u8, 2], &empty);
        assert_eq!(counts(&two), HashMap::from([(1, 128), (2, 128)]));
        let three = assign(&[1u8, 2, 3], &two);
        assert_eq!(moved(&two, &three), 85);
        let back = assign(&[1u8, 2], &three);
        assert_eq!(moved(&three, &back), 85);
        assert_eq!(assign::<u8>(&[], &three), empty);
    }

    fn owners() -> impl Strategy<Value = (Vec<u8>, Vec<Option<u8>>)> {
        (1usize..300).prop_flat_map(|shards| {
            (
                proptest::collection::vec(0u8..8, 0..6),
                proptest::collection::vec(proptest::option::of(0u8..10), shards),
            )
        })
    }

    proptest! {
        /// Balanced within one, every shard owned by a live node, and no more shards moved
        /// than any balanced assignment must move.
        #[test]
        fn balanced_complete_and_minimal((nodes, current) in owners()) {
            let next = assign(&nodes, &current);
            prop_assert_eq!(next.len(), current.len());
            let mut live = nodes.clone();
            live.sort();
            live.dedup();
            if live.is_empty() {
                prop_assert!(next.iter().all(Option::is_none));
                return Ok(());
            }
            prop_assert!(next.iter().all(|owner| owner.is_some_and(|o| live.contains(&o))));
            let (base, extra) = (current.len() / live.len(), current.len() % live.len());
            let counts = counts(&next);
            for node in &live {
                let count = counts.get(node).copied().unwrap_or(0);
                prop_assert!(count == base || count == base + 1, "{node}: {count}");
            }
            // The fewest moves of any balanced assignment: keep min(held, quota) per node,
            // the extra quota going to the largest holders.
            let held = self::counts(&current);
            let mut holdings: Vec<usize> =
                live.iter().map(|n| held.get(n).copied().unwrap_or(0)).collect();
            holdings.sort_unstable_by(|a, b| b.cmp(a));
            let kept: usize = holdings
                .iter()
                .enumerate()
                .map(|(rank, h)| (*h).min(base + usize::from(rank < extra)))
                .sum();
            prop_assert_eq!(moved(&current, &next), current.len() - kept);
            // Applied again, nothing moves.
            prop_assert_eq!(assign(&nodes, &next), next);
        }
    }
}
