//! Pruning: published outbox rows older than `events.retention` are deleted, a bounded batch
//! at a time, so one run never holds the database for long.

use chrono::{TimeDelta, Utc};

use super::{RelayCounters, RelayOptions};
use crate::store::outbox::OutboxStore;

/// Deletes rows published longer than `retention` ago: at most `prune_max_batches`
/// statements of `prune_batch` rows, stopping at the first short one.
pub(super) async fn prune(outbox: &OutboxStore, options: &RelayOptions, counters: &RelayCounters) {
    let Ok(retention) = TimeDelta::from_std(options.retention) else {
        return;
    };
    let before = Utc::now() - retention;
    for _ in 0..options.prune_max_batches {
        match outbox.prune(before, options.prune_batch).await {
            Ok(deleted) => {
                counters.count_pruned(deleted);
                if deleted < u64::from(options.prune_batch) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "event relay: pruning the outbox failed");
                break;
            }
        }
    }
}
