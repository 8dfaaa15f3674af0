//! What this node holds: the shards it has a live claim on, as the lease protocol
//! ([`super::membership`]) last confirmed them, and the counters `/metrics` and `/readyz`
//! show. Every monitor write asks it for the claim to write under, and reports here when the
//! database fenced one off.
//!
//! A claim is also held against the local monotonic clock: it is valid until `ttl` after the
//! renewal that confirmed it was *sent*. A node that was stopped (SIGSTOP, a stall) finds its
//! claims invalid the moment it wakes, before its next renewal says so, and stops writing and
//! publishing for those shards at once; the database's fence stays the guarantee.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::{shard_of, Claim};

/// Which kind of monitor write the fence refused (the `kind` label of
/// `catalogd_fenced_writes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A batch of check results.
    Results,
    /// A transition with its audit entry and outbox event.
    Transition,
    /// The relay's "published" marks.
    Marks,
}

impl WriteKind {
    pub const ALL: [WriteKind; 3] = [WriteKind::Results, WriteKind::Transition, WriteKind::Marks];

    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Results => "results",
            WriteKind::Transition => "transition",
            WriteKind::Marks => "marks",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// `None`: valid for as long as the process runs (single node).
    valid_until: Option<Instant>,
}

/// This node's view of the cluster, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSnapshot {
    pub node_id: String,
    pub nodes: u64,
    pub shards_owned: u64,
    pub shards_total: u64,
}

/// The counters `/metrics` renders for this node.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub nodes: AtomicU64,
    pub takeovers: AtomicU64,
    pub losses: AtomicU64,
    fenced: [AtomicU64; 3],
}

impl ClusterCounters {
    pub fn fenced(&self, kind: WriteKind) -> u64 {
        self.fenced[kind as usize].load(Ordering::Relaxed)
    }
}

/// The shards this node holds, shared by the ledger, the history writer, the relay and the
/// membership task.
#[derive(Debug)]
pub struct Ownership {
    node_id: Arc<str>,
    held: RwLock<Vec<Option<Held>>>,
    /// Bumped whenever a shard is taken or given up, so that those who keep per-integration
    /// state (the relay's order) know when to drop what belongs to shards gone elsewhere.
    generation: AtomicU64,
    counters: ClusterCounters,
    /// Fenced claims, for the membership task to stop their shards' monitors (absent on a
    /// single node, where nothing is ever fenced).
    lost: Option<mpsc::UnboundedSender<Claim>>,
}

impl Ownership {
    /// A node alone on its database (SQLite): it holds every shard, at epoch 0, for as long as
    /// it runs. Its serve lock keeps any other daemon away.
    pub fn single(node_id: &str, shards: u32) -> Arc<Ownership> {
        let held = vec![
            Some(Held {
                epoch: 0,
                valid_until: None,
            });
            shards.max(1) as usize
        ];
        let ownership = Ownership {
            node_id: Arc::from(node_id),
            held: RwLock::new(held),
            generation: AtomicU64::new(0),
            counters: ClusterCounters::default(),
            lost: None,
        };
        ownership.counters.nodes.store(1, Ordering::Relaxed);
        Arc::new(ownership)
    }

    /// A node of a leased cluster, holding nothing yet; the receiver gets every claim the
    /// database fenced off.
    pub fn leased(node_id: &str, shards: u32) -> (Arc<Ownership>, mpsc::UnboundedReceiver<Claim>) {
        let (lost, receiver) = mpsc::unbounded_channel();
        let ownership = Ownership {
            node_id: Arc::from(node_id),
            held: RwLock::new(vec![None; shards.max(1) as usize]),
            generation: AtomicU64::new(0),
            counters: ClusterCounters::default(),
            lost: Some(lost),
        };
        (Arc::new(ownership), receiver)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn node(&self) -> Arc<str> {
        self.node_id.clone()
    }

    pub fn shards(&self) -> u32 {
        self.read().len() as u32
    }

    /// Whether this node runs a lease protocol (PostgreSQL) rather than holding everything.
    pub fn is_leased(&self) -> bool {
        self.lost.is_some()
    }

    /// The claim to write under for integration `id`: its shard's, if this node holds it
    /// and the claim is still valid by the local clock.
    pub fn claim(&self, id: Uuid) -> Option<Claim> {
        let held = self.read();
        let shard = shard_of(id, held.len() as u32);
        let now = Instant::now();
        held[shard as usize]
            .filter(|h| h.valid_until.is_none_or(|until| now < until))
            .map(|h| Claim {
                shard,
                epoch: h.epoch,
            })
    }

    /// Whether `claim` is still this node's, valid by the local clock.
    pub fn holds(&self, claim: Claim) -> bool {
        let held = self.read();
        let now = Instant::now();
        held.get(claim.shard as usize)
            .copied()
            .flatten()
            .is_some_and(|h| {
                h.epoch == claim.epoch && h.valid_until.is_none_or(|until| now < until)
            })
    }

    /// Whether `claim` is what this node has recorded for its shard, valid or not.
    pub(super) fn holds_recorded(&self, claim: Claim) -> bool {
        self.read()
            .get(claim.shard as usize)
            .copied()
            .flatten()
            .is_some_and(|h| h.epoch == claim.epoch)
    }

    /// The shards held now (valid by the local clock), with their epochs.
    pub fn claims(&self) -> Vec<Claim> {
        let held = self.read();
        let now = Instant::now();
        held.iter()
            .enumerate()
            .filter_map(|(shard, h)| {
                h.filter(|h| h.valid_until.is_none_or(|until| now < until))
                    .map(|h| Claim {
                        shard: shard as u32,
                        epoch: h.epoch,
                    })
            })
            .collect()
    }

    /// How many shards this node holds.
    pub fn owned(&self) -> u64 {
        self.claims().len() as u64
    }

    /// The database fenced off writes made under `claims`: count them, and have the
    /// membership task stop those shards' monitors (each claim once: later writes under it
    /// find it gone here).
    pub fn fenced(&self, kind: WriteKind, claims: &[Claim]) {
        if claims.is_empty() {
            return;
        }
        self.counters.fenced[kind as usize].fetch_add(claims.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            kind = kind.as_str(),
            writes = claims.len(),
            node_id = %self.node_id,
            "fenced writes: this node no longer holds the shard at that epoch; stopping its monitors"
        );
        if let Some(lost) = &self.lost {
            for claim in claims {
                let _ = lost.send(*claim);
            }
        }
    }

    /// Changes whenever a shard is taken or given up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn counters(&self) -> &ClusterCounters {
        &self.counters
    }

    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            node_id: self.node_id.to_string(),
            nodes: self.counters.nodes.load(Ordering::Relaxed),
            shards_owned: self.owned(),
            shards_total: u64::from(self.shards()),
        }
    }

    /// Records that this node holds `claim` until `valid_until` (a renewal or a takeover).
    pub(super) fn hold(&self, claim: Claim, valid_until: Instant) {
        let mut held = self.write();
        if let Some(slot) = held.get_mut(claim.shard as usize) {
            if slot.is_none_or(|h| h.epoch != claim.epoch) {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            *slot = Some(Held {
                epoch: claim.epoch,
                valid_until: Some(valid_until),
            });
        }
    }

    /// Extends `claim` to `valid_until` (a renewal), if this node still records it: a shard
    /// handed over while the renewal ran stays given up.
    pub(super) fn extend(&self, claim: Claim, valid_until: Instant) {
        let mut held = self.write();
        if let Some(Some(h)) = held.get_mut(claim.shard as usize) {
            if h.epoch == claim.epoch {
                h.valid_until = Some(valid_until);
            }
        }
    }

    /// Reports claims the database would not renew, for the membership task to give up.
    pub(super) fn report_lost(&self, claims: &[Claim]) {
        if let Some(lost) = &self.lost {
            for claim in claims {
                let _ = lost.send(*claim);
            }
        }
    }

    /// Forgets `shard` (released, lost or fenced). Returns the claim it held, if any.
    pub(super) fn forget(&self, shard: u32) -> Option<Claim> {
        let mut held = self.write();
        let forgotten = held
            .get_mut(shard as usize)
            .and_then(Option::take)
            .map(|h| Claim {
                shard,
                epoch: h.epoch,
            });
        if forgotten.is_some() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        forgotten
    }

    /// Every shard held, with its epoch, whether or not still valid by the local clock.
    pub(super) fn recorded(&self) -> Vec<(Claim, Option<Instant>)> {
        self.read()
            .iter()
            .enumerate()
            .filter_map(|(shard, h)| {
                h.map(|h| {
                    (
                        Claim {
                            shard: shard as u32,
                            epoch: h.epoch,
                        },
                        h.valid_until,
                    )
                })
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Option<Held>>> {
        self.held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Option<Held>>> {
        self.held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_single_node_holds_every_shard_forever() {
        let ownership = Ownership::single("n1", 16);
        assert_eq!(ownership.owned(), 16);
        let id = Uuid::now_v7();
        let claim = ownership.claim(id).expect("held");
        assert_eq!(claim.shard, shard_of(id, 16));
        assert!(ownership.holds(claim));
        assert!(!ownership.is_leased());
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_invalid_once_its_lease_ran_out_by_the_local_clock() {
        let (ownership, _lost) = Ownership::leased("n1", 4);
        assert_eq!(ownership.owned(), 0);
        let claim = Claim { shard: 2, epoch: 5 };
        ownership.hold(claim, Instant::now() + Duration::from_secs(3));
        assert!(ownership.holds(claim));
        assert!(!ownership.holds(Claim { shard: 2, epoch: 4 }));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!ownership.holds(claim), "expired by the local clock");
        assert_eq!(ownership.owned(), 0);
        assert_eq!(
            ownership.recorded().len(),
            1,
            "still recorded until renewed or forgotten"
        );
    }

    #[tokio::test]
    async fn fenced_claims_are_counted_and_reported() {
        let (ownership, mut lost) = Ownership::leased("n1", 4);
        let claim = Claim { shard: 1, epoch: 2 };
        ownership.fenced(WriteKind::Transition, &[claim]);
        assert_eq!(ownership.counters().fenced(WriteKind::Transition), 1);
        assert_eq!(ownership.counters().fenced(WriteKind::Results), 0);
        assert_eq!(lost.recv().await, Some(claim));
    }
}
