//! Check results on their way to the database: one [`CheckRecord`] per result, and the
//! [`Batch`] a flush writes (sorted, deduplicated, with each integration's last observation).

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::time::{clamp_micros, micros};
use crate::cluster::Claim;
use crate::store::StoreError;
use catalogd_actors::ports::CheckReport;
use catalogd_actors::{CheckOutcome, FailureClass, Lifecycle};

/// One check result on its way to the database (~80 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CheckRecord {
    pub(super) integration_id: Uuid,
    pub(super) checked_at: DateTime<Utc>,
    pub(super) latency_us: i32,
    pub(super) lateness_us: i32,
    pub(super) outcome: CheckOutcome,
    pub(super) version: i64,
    pub(super) consecutive_failures: u32,
    pub(super) consecutive_successes: u32,
    /// The claim on its shard the monitor checked under; `None`: unfenced.
    pub(super) claim: Option<Claim>,
    /// The check ran in a maintenance window (DESIGN §10).
    pub(super) maintenance: bool,
}

impl CheckRecord {
    pub(super) fn new(
        integration_id: Uuid,
        version: i64,
        lifecycle: Lifecycle,
        report: &CheckReport,
    ) -> Self {
        CheckRecord {
            integration_id,
            checked_at: micros(report.started_at),
            latency_us: clamp_micros(report.latency),
            lateness_us: clamp_micros(report.lateness),
            outcome: report.outcome,
            version,
            consecutive_failures: lifecycle.consecutive_failures,
            consecutive_successes: lifecycle.consecutive_successes,
            claim: None,
            maintenance: false,
        }
    }

    /// The same result, written only while `claim` holds.
    pub(super) fn under(self, claim: Option<Claim>) -> Self {
        CheckRecord { claim, ..self }
    }

    pub(super) fn outcome_code(&self) -> i16 {
        outcome_code(self.outcome)
    }

    pub(super) fn failure_class(&self) -> Option<&'static str> {
        match self.outcome {
            CheckOutcome::Failure(class) => Some(class.as_str()),
            _ => None,
        }
    }
}

fn outcome_code(outcome: CheckOutcome) -> i16 {
    match outcome {
        CheckOutcome::Success => 0,
        CheckOutcome::Failure(_) => 1,
        CheckOutcome::Skipped => 2,
    }
}

pub(super) fn decode_outcome(code: i16, class: Option<&str>) -> Result<CheckOutcome, StoreError> {
    match (code, class) {
        (0, _) => Ok(CheckOutcome::Success),
        (2, _) => Ok(CheckOutcome::Skipped),
        (1, Some(class)) => FailureClass::ALL
            .into_iter()
            .find(|known| known.as_str() == class)
            .map(CheckOutcome::Failure)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown failure class {class:?}"))),
        _ => Err(StoreError::Corrupt(format!(
            "bad check outcome {code} / {class:?}"
        ))),
    }
}

/// One flush: the results sorted by `(integration, time)` without duplicates, and for each
/// integration the last check that ran (skipped checks observe nothing).
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) results: Vec<CheckRecord>,
    pub(super) observations: Vec<CheckRecord>,
}

impl Batch {
    pub(super) fn new(mut results: Vec<CheckRecord>) -> Self {
        results.sort_unstable_by_key(|r| (r.integration_id, r.checked_at));
        results.dedup_by_key(|r| (r.integration_id, r.checked_at));
        let mut observations: Vec<CheckRecord> = Vec::new();
        for result in results
            .iter()
            .filter(|r| r.outcome != CheckOutcome::Skipped)
        {
            match observations.last_mut() {
                Some(last) if last.integration_id == result.integration_id => *last = *result,
                _ => observations.push(*result),
            }
        }
        Batch {
            results,
            observations,
        }
    }

    /// The distinct claims the batch's results were checked under.
    pub(super) fn claims(&self) -> Vec<Claim> {
        let mut claims: Vec<Claim> = self.results.iter().filter_map(|r| r.claim).collect();
        claims.sort_unstable();
        claims.dedup();
        claims
    }

    /// The batch without the results of claims the fence refused.
    pub(super) fn admitted(&self, fenced: &[Claim]) -> Batch {
        Batch::new(
            self.results
                .iter()
                .filter(|r| r.claim.is_none_or(|claim| !fenced.contains(&claim)))
                .copied()
                .collect(),
        )
    }

    /// SQLite: the results as one JSON array of `[id hex, µs, latency, lateness, outcome,
    /// class, maintenance]`, for `json_each`.
    pub(super) fn results_json(&self) -> String {
        use std::fmt::Write as _;
        let mut json = String::with_capacity(self.results.len() * 80 + 2);
        json.push('[');
        for (i, r) in self.results.iter().enumerate() {
            let class = r
                .failure_class()
                .map_or_else(|| "null".to_owned(), |class| format!("\"{class}\""));
            let _ = write!(
                json,
                "{}[\"{}\",{},{},{},{},{},{}]",
                if i == 0 { "" } else { "," },
                r.integration_id.simple(),
                r.checked_at.timestamp_micros(),
                r.latency_us,
                r.lateness_us,
                r.outcome_code(),
                class,
                u8::from(r.maintenance)
            );
        }
        json.push(']');
        json
    }

    /// SQLite: the observations as `[id hex, version, last_tested_at, success, failures,
    /// successes]`, the time in the RFC 3339 text sqlx writes to `integrations`.
    pub(super) fn observations_json(&self) -> String {
        use std::fmt::Write as _;
        let mut json = String::with_capacity(self.observations.len() * 100 + 2);
        json.push('[');
        for (i, o) in self.observations.iter().enumerate() {
            let _ = write!(
                json,
                "{}[\"{}\",{},\"{}\",{},{},{}]",
                if i == 0 { "" } else { "," },
                o.integration_id.simple(),
                o.version,
                o.checked_at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                u8::from(o.outcome == CheckOutcome::Success),
                o.consecutive_failures,
                o.consecutive_successes
            );
        }
        json.push(']');
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::time::at;
    use chrono::TimeDelta;

    #[test]
    fn batches_sort_deduplicate_and_observe_the_last_check_that_ran() {
        let id = |n: u128| Uuid::from_u128(n);
        let record = |n, minute: i64, outcome| CheckRecord {
            integration_id: id(n),
            checked_at: at("2025-03-31T12:00:00Z") + TimeDelta::minutes(minute),
            latency_us: 1,
            lateness_us: 0,
            outcome,
            version: minute,
            consecutive_failures: 0,
            consecutive_successes: 0,
            claim: None,
            maintenance: minute == 3,
        };
        let batch = Batch::new(vec![
            record(2, 1, CheckOutcome::Success),
            record(1, 3, CheckOutcome::Skipped),
            record(1, 2, CheckOutcome::Failure(FailureClass::Timeout)),
            record(1, 1, CheckOutcome::Success),
            record(2, 1, CheckOutcome::Success),
        ]);
        let keys: Vec<(Uuid, i64)> = batch
            .results
            .iter()
            .map(|r| (r.integration_id, r.version))
            .collect();
        assert_eq!(keys, [(id(1), 1), (id(1), 2), (id(1), 3), (id(2), 1)]);
        let observed: Vec<(Uuid, i64)> = batch
            .observations
            .iter()
            .map(|o| (o.integration_id, o.version))
            .collect();
        assert_eq!(observed, [(id(1), 2), (id(2), 1)]);
        let json: serde_json::Value = serde_json::from_str(&batch.results_json()).unwrap();
        assert_eq!(json[1][5], "timeout");
        assert!(json[0][5].is_null());
        assert_eq!(json[2][6], 1, "the check in maintenance is marked");
        assert_eq!(json[1][6], 0);
        let json: serde_json::Value = serde_json::from_str(&batch.observations_json()).unwrap();
        assert_eq!(json[0][2], "2025-03-31T12:02:00+00:00");
    }
}
