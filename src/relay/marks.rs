//! The marks task: writes "published" into the outbox for the events the worker sent, off the
//! publishing path, so a publish never waits for the database's write lock. Each mark carries
//! the claim its event was published under, and the database's fence refuses the marks of a
//! shard this node no longer holds (its next owner marks them).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::cluster::{Ownership, WriteKind};
use crate::store::outbox::{Mark, OutboxStore};

/// Ids per marking statement (far below either backend's bind-parameter limit).
const MARK_BATCH: usize = 1000;

/// Marks published events in the outbox until `marks` closes and is drained. Whatever arrived
/// while a statement waited goes into the next one, so under load a statement marks a whole
/// batch. A failed statement is retried; ids the process never marks are published again
/// after a restart (JetStream drops them as duplicates inside its window). A fenced mark is
/// never retried: it is counted and its shard given up.
pub(super) async fn mark_published(
    outbox: OutboxStore,
    ownership: Arc<Ownership>,
    mut marks: mpsc::UnboundedReceiver<Mark>,
) {
    let mut batch: Vec<Mark> = Vec::new();
    let mut failures = 0u32;
    loop {
        if batch.is_empty() && marks.recv_many(&mut batch, MARK_BATCH).await == 0 {
            return;
        }
        while batch.len() < MARK_BATCH {
            match marks.try_recv() {
                Ok(mark) => batch.push(mark),
                Err(_) => break,
            }
        }
        match outbox
            .mark_published(&batch, ownership.node_id(), Utc::now())
            .await
        {
            Ok(marked) => {
                ownership.fenced(WriteKind::Marks, &marked.fenced);
                batch.clear();
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%error, pending = batch.len(), "event relay: cannot mark events published; retrying");
                }
                if marks.is_closed() && failures >= 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
