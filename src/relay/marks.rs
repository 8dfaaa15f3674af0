//! The marks task: writes "published" into the outbox for the events the worker sent, off the
//! publishing path, so a publish never waits for the database's write lock.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::outbox::OutboxStore;

/// Ids per marking statement (far below either backend's bind-parameter limit).
const MARK_BATCH: usize = 1000;

/// Marks published events in the outbox until `ids` closes and is drained. Whatever arrived
/// while a statement waited goes into the next one, so under load a statement marks a whole
/// batch. A failed statement is retried; ids the process never marks are published again
/// after a restart (JetStream drops them as duplicates inside its window).
pub(super) async fn mark_published(outbox: OutboxStore, mut ids: mpsc::UnboundedReceiver<Uuid>) {
    let mut batch: Vec<Uuid> = Vec::new();
    let mut failures = 0u32;
    loop {
        if batch.is_empty() && ids.recv_many(&mut batch, MARK_BATCH).await == 0 {
            return;
        }
        while batch.len() < MARK_BATCH {
            match ids.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        match outbox.mark_published(&batch, Utc::now()).await {
            Ok(_) => {
                batch.clear();
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%error, pending = batch.len(), "event relay: cannot mark events published; retrying");
                }
                if ids.is_closed() && failures >= 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
