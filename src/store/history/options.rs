//! [`HistoryOptions`]: how history is written, rolled up and pruned, and the retentions
//! the read path relies on.

use std::time::Duration;

use crate::config::HistoryConfig;

/// How history is written, rolled up and pruned.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryOptions {
    /// Raw results are kept this long.
    pub raw_retention: Duration,
    /// Hourly rollups are kept this long.
    pub hourly_retention: Duration,
    /// Daily rollups are kept this long.
    pub daily_retention: Duration,
    /// The longest a result waits for its write (a trickle is written this often).
    pub flush_interval: Duration,
    /// The most results one write holds.
    pub batch_size: usize,
    /// A write starts as soon as the previous one committed and this many results are
    /// queued, without waiting for a full batch or the interval (the writer's group commit).
    pub write_at: usize,
    /// Results waiting to be written beyond which `record` drops.
    pub queue_capacity: usize,
    /// An hour is rolled up once it has been over this long: a check that started in it
    /// and is written later than that stays in the raw results but not in the rollup.
    pub rollup_grace: Duration,
    /// How often the writer rolls up and prunes; `None` leaves it to the caller of
    /// [`HistoryStore::maintain`].
    pub maintenance_interval: Option<Duration>,
    /// Integrations per rollup statement.
    pub rollup_chunk: u32,
    /// Rows per pruning `DELETE`, and the most such statements per table and run.
    pub prune_batch: u32,
    pub prune_max_batches: u32,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions::from(&HistoryConfig::default())
    }
}

impl From<&HistoryConfig> for HistoryOptions {
    fn from(config: &HistoryConfig) -> Self {
        let batch_size = config.batch_size.max(1);
        HistoryOptions {
            raw_retention: config.raw_retention,
            hourly_retention: config.hourly_retention.min(config.rollup_retention),
            daily_retention: config.rollup_retention,
            flush_interval: config.flush_interval,
            batch_size,
            // A fiftieth of a batch: 100 results by default, 5 ms of results at 20k/s, so a
            // write is never a transaction per result.
            write_at: (batch_size / 50).max(1),
            // About ten seconds of results at a million integrations on a 60 s interval with
            // the default batch size, ~100 bytes each.
            queue_capacity: batch_size.saturating_mul(32),
            rollup_grace: Duration::from_secs(300),
            maintenance_interval: Some(Duration::from_secs(60)),
            rollup_chunk: 1000,
            prune_batch: 10_000,
            prune_max_batches: 1000,
        }
        .normalized()
    }
}

impl HistoryOptions {
    /// Raises the retentions to what the read path relies on: raw results outlive the
    /// rollup grace by an hour, hourly rollups outlive raw results and a day, daily rollups
    /// outlive hourly ones. Sizes are at least 1.
    pub fn normalized(mut self) -> Self {
        let hour = Duration::from_secs(3600);
        let day = 24 * hour;
        self.raw_retention = self.raw_retention.max(self.rollup_grace + 2 * hour);
        self.hourly_retention = self.hourly_retention.max(self.raw_retention + day);
        self.daily_retention = self.daily_retention.max(self.hourly_retention);
        self.batch_size = self.batch_size.max(1);
        self.write_at = self.write_at.clamp(1, self.batch_size);
        self.queue_capacity = self.queue_capacity.max(self.batch_size);
        self.rollup_chunk = self.rollup_chunk.max(1);
        self.prune_batch = self.prune_batch.max(1);
        self.prune_max_batches = self.prune_max_batches.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::time::at;
    use crate::store::history::time::{ago, EARLIEST};

    #[test]
    fn options_keep_what_the_read_path_relies_on() {
        let options = HistoryOptions {
            raw_retention: Duration::from_secs(60),
            hourly_retention: Duration::ZERO,
            daily_retention: Duration::ZERO,
            batch_size: 0,
            ..HistoryOptions::default()
        }
        .normalized();
        assert!(options.raw_retention >= options.rollup_grace + Duration::from_secs(7200));
        assert!(options.hourly_retention > options.raw_retention);
        assert!(options.daily_retention >= options.hourly_retention);
        assert_eq!(options.batch_size, 1);
        assert_eq!(ago(at("2025-01-01T00:00:00Z"), Duration::MAX), EARLIEST);
    }
}
