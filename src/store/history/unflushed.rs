//! The newest check result of each integration that the [`super::HistoryWriter`] holds but
//! has not committed yet, so that `GET /{id}/health` shows a check as soon as it ends rather
//! than after the next flush (up to `history.flush_interval` later, or never for the
//! failure class while the batch is slow).
//!
//! An entry lives from `record` until the batch that carries it is committed or abandoned;
//! a newer result of the same integration replaces it. So the map holds at most one entry per
//! integration with a result in flight: it is as small as the writer's queue, not the fleet.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

use super::batch::CheckRecord;

#[derive(Debug, Default)]
pub(super) struct Unflushed {
    newest: Mutex<HashMap<Uuid, CheckRecord>>,
}

impl Unflushed {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, CheckRecord>> {
        // Plain data: a panic while holding the lock leaves it usable.
        self.newest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A result was queued for writing.
    pub(super) fn queued(&self, record: CheckRecord) {
        let mut newest = self.lock();
        match newest.get_mut(&record.integration_id) {
            Some(held) if held.checked_at > record.checked_at => {}
            Some(held) => *held = record,
            None => {
                newest.insert(record.integration_id, record);
            }
        }
    }

    /// The batch carrying `records` was committed (or abandoned): the entries it carried are
    /// the store's to answer now; newer ones stay.
    pub(super) fn written(&self, records: &[CheckRecord]) {
        let mut newest = self.lock();
        for record in records {
            if newest
                .get(&record.integration_id)
                .is_some_and(|held| held.checked_at <= record.checked_at)
            {
                newest.remove(&record.integration_id);
            }
        }
    }

    /// The newest result of `id` not committed yet.
    pub(super) fn newest(&self, id: Uuid) -> Option<CheckRecord> {
        self.lock().get(&id).copied()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use catalogd_actors::ports::CheckReport;
    use catalogd_actors::{CheckOutcome, Lifecycle, Status};

    use super::*;
    use crate::store::history::time::at;

    fn record(id: Uuid, time: &str) -> CheckRecord {
        let report = CheckReport {
            outcome: CheckOutcome::Success,
            started_at: at(time),
            latency: Duration::from_millis(3),
            lateness: Duration::ZERO,
        };
        let lifecycle = Lifecycle {
            status: Status::Active,
            consecutive_failures: 0,
            consecutive_successes: 1,
        };
        CheckRecord::new(id, 1, lifecycle, &report)
    }

    #[test]
    fn holds_the_newest_until_a_batch_carrying_it_is_written() {
        let unflushed = Unflushed::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (first, second) = (
            record(a, "2025-01-01T00:00:00Z"),
            record(a, "2025-01-01T00:01:00Z"),
        );
        unflushed.queued(second);
        // A late older result never hides the newer one.
        unflushed.queued(first);
        unflushed.queued(record(b, "2025-01-01T00:00:30Z"));
        assert_eq!(unflushed.newest(a), Some(second));
        // The batch with the older result leaves the newer one held.
        unflushed.written(&[first]);
        assert_eq!(unflushed.newest(a), Some(second));
        unflushed.written(&[first, second]);
        assert_eq!(unflushed.newest(a), None);
        assert_eq!(unflushed.len(), 1);
    }
}
