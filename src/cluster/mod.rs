//! Several daemons on one PostgreSQL (DESIGN §9): which shard an integration belongs to, how
//! live nodes split the shards ([`shards`]), what this node holds ([`ownership`]), the lease
//! protocol that keeps that true ([`membership`]), and the fencing rule every monitor write is
//! checked against ([`admits`]). SQLite stays single-node: its serve lock
//! (`store/sqlite.rs`) is the fence, and the one daemon holds every shard.

pub mod membership;
pub mod ownership;
pub mod shards;

pub use membership::{
    ChangeNotice, ClusterOptions, Membership, MembershipHandle, Monitors, NoticeKind, Notifier,
};
pub use ownership::{ClusterSnapshot, Ownership, WriteKind};
pub use shards::{assign, shard_of};

/// The right to write for one shard: the epoch under which this node took it. Every monitor
/// write carries the claim it was made under, and commits only if the claim still holds in
/// the database, checked in the write's own transaction ([`admits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Claim {
    pub shard: u32,
    pub epoch: i64,
}

/// A shard's lease row as a fenced write reads it, locked against takeovers, inside the
/// write's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard: u32,
    pub owner: Option<String>,
    pub epoch: i64,
    /// The lease had not expired by the database's clock when it was read.
    pub live: bool,
}

/// The fencing rule: a write made under `claim` by `node` may commit only if the shard's
/// lease, read in the same transaction, is still `node`'s, at the claim's epoch, and not
/// expired. A takeover bumps the epoch, so nothing written under an earlier one lands after
/// it; an expired lease admits nothing even before anyone takes it (a node that was stopped
/// for longer than the TTL writes nothing when it wakes).
pub fn admits(lease: &Lease, node: &str, claim: Claim) -> bool {
    lease.shard == claim.shard
        && lease.live
        && lease.epoch == claim.epoch
        && lease.owner.as_deref() == Some(node)
}

/// The claims among `claims` that `leases` (the rows read under lock) admit.
pub fn admitted(leases: &[Lease], node: &str, claims: &[Claim]) -> Vec<Claim> {
    claims
        .iter()
        .copied()
        .filter(|claim| leases.iter().any(|lease| admits(lease, node, *claim)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One shard's history as the database sees it: takeovers by nodes, expiries, renewals.
    #[derive(Debug, Clone)]
    enum Step {
        Take(u8),
        Expire,
        Renew,
        Release,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..3).prop_map(Step::Take),
            Just(Step::Expire),
            Just(Step::Renew),
            Just(Step::Release),
        ]
    }

    proptest! {
        /// Over any history of one shard, a claim is admitted exactly when it is the one
        /// the current live owner took: never a claim of an earlier epoch, never another
        /// node's, never after expiry or release.
        #[test]
        fn only_the_current_live_owners_claim_is_admitted(steps in proptest::collection::vec(step(), 0..40)) {
            let mut lease = Lease { shard: 7, owner: None, epoch: 0, live: false };
            // Every claim ever handed out: (node, claim).
            let mut issued: Vec<(String, Claim)> = Vec::new();
            for step in steps {
                match step {
                    Step::Take(node) => {
                        lease.epoch += 1;
                        lease.owner = Some(format!("node-{node}"));
                        lease.live = true;
                        issued.push((format!("node-{node}"), Claim { shard: 7, epoch: lease.epoch }));
                    }
                    Step::Expire => lease.live = false,
                    Step::Renew => {}
                    Step::Release => {
                        lease.owner = None;
                        lease.live = false;
                    }
                }
                let mut admitted_now = 0;
                for (node, claim) in &issued {
                    let admitted = admits(&lease, node, *claim);
                    let newest = claim.epoch == lease.epoch;
                    prop_assert_eq!(admitted, newest && lease.live && lease.owner.as_deref() == Some(node.as_str()));
                    admitted_now += usize::from(admitted);
                }
                prop_assert!(admitted_now <= 1, "two claims admitted at once");
                // Another shard's claim at the same epoch is never admitted.
                if let Some(owner) = &lease.owner {
                    let other = Claim { shard: 8, epoch: lease.epoch };
                    prop_assert!(!admits(&lease, owner, other));
                }
            }
        }
    }
}
