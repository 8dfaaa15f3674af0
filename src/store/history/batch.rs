//! Check results on their way to the database: one [`CheckRecord`] per result, and the
//! [`Batch`] a flush writes (sorted, deduplicated, with each integration's last observation).

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::time::{clamp_micros, micros};
use crate::cluster::Claim;
use crate::store::StoreError;
use catalogd_actors::ports::CheckReport;
use catalogd_actors::{CheckOutcome, FailureClass, Lifecycle, Status};

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
    /// The integration's row already says what writing this check to it would, but for the
    /// time (which reads take from the results): a settled success (an active integration's
    /// success after a success: "success, no failures"), or the check of a transition,
    /// committed on the row with it ([`super::HistoryWriter::record_committed`]).
    pub(super) row_current: bool,
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
            row_current: report.outcome == CheckOutcome::Success
                && lifecycle.status == Status::Active
                && lifecycle.consecutive_failures == 0
                && lifecycle.consecutive_successes >= 2,
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
        // Each integration's last check that ran, and whether any of its checks here left
        // its row out of date. An integration whose checks here are all `row_current` keeps
        // its row as it is (the row already says what they say, but for the time, which
        // reads take from the results): at a million integrations that is most rows, and
        // rewriting each on every check cost as much as storing the results (bench F4). A
        // settled check follows one that was not (its first success) or was written; a
        // transition's check was written with it.
        let mut observations: Vec<(CheckRecord, bool)> = Vec::new();
        for result in results
            .iter()
            .filter(|r| r.outcome != CheckOutcome::Skipped)
        {
            match observations.last_mut() {
                Some((last, stale)) if last.integration_id == result.integration_id => {
                    *last = *result;
                    *stale |= !result.row_current;
                }
                _ => observations.push((*result, !result.row_current)),
            }
        }
        let observations = observations
            .into_iter()
            .filter_map(|(observation, stale)| stale.then_some(observation))
            .collect();
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
            row_current: false,
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

    /// An integration whose checks in the batch are all settled or on the row keeps its row;
    /// one with any check that is not gets its last check written, whatever it is.
    #[test]
    fn settled_checks_alone_leave_the_row_alone() {
        let report = |minute: i64, outcome| CheckReport {
            started_at: at("2025-03-31T12:00:00Z") + TimeDelta::minutes(minute),
            latency: std::time::Duration::from_millis(1),
            lateness: std::time::Duration::ZERO,
            outcome,
        };
        let active = |failures, successes| Lifecycle {
            status: Status::Active,
            consecutive_failures: failures,
            consecutive_successes: successes,
        };
        let degraded = Lifecycle {
            status: Status::Degraded,
            ..active(0, 3)
        };
        let failed = CheckOutcome::Failure(FailureClass::Timeout);
        // (case, each check: its lifecycle, outcome and whether it is a committed transition's,
        // which observation is written: its success count)
        type Case = (
            &'static str,
            Vec<(Lifecycle, CheckOutcome, bool)>,
            Option<u32>,
        );
        let cases: [Case; 9] = [
            (
                "steady successes",
                vec![
                    (active(0, 7), CheckOutcome::Success, false),
                    (active(0, 8), CheckOutcome::Success, false),
                ],
                None,
            ),
            (
                "the first success",
                vec![(active(0, 1), CheckOutcome::Success, false)],
                Some(1),
            ),
            (
                "first success, then settled",
                vec![
                    (active(0, 1), CheckOutcome::Success, false),
                    (active(0, 2), CheckOutcome::Success, false),
                ],
                Some(2),
            ),
            (
                "a failure, then settled",
                vec![
                    (active(1, 0), failed, false),
                    (active(0, 1), CheckOutcome::Success, false),
                    (active(0, 2), CheckOutcome::Success, false),
                ],
                Some(2),
            ),
            (
                "recovering",
                vec![(degraded, CheckOutcome::Success, false)],
                Some(3),
            ),
            ("a failure", vec![(active(2, 0), failed, false)], Some(0)),
            ("a transition alone", vec![(degraded, failed, true)], None),
            (
                "a transition, then a check",
                vec![
                    (degraded, failed, true),
                    (active(0, 1), CheckOutcome::Success, false),
                ],
                Some(1),
            ),
            (
                "a check, then a transition (its values again)",
                vec![
                    (active(1, 0), failed, false),
                    (active(0, 5), CheckOutcome::Success, true),
                ],
                Some(5),
            ),
        ];
        for (case, checks, written) in cases {
            let id = Uuid::from_u128(7);
            let records = checks
                .iter()
                .enumerate()
                .map(|(minute, (lifecycle, outcome, committed))| {
                    let record =
                        CheckRecord::new(id, 1, *lifecycle, &report(minute as i64, *outcome));
                    CheckRecord {
                        row_current: record.row_current || *committed,
                        ..record
                    }
                })
                .collect();
            let batch = Batch::new(records);
            let observed: Vec<u32> = batch
                .observations
                .iter()
                .map(|o| o.consecutive_successes)
                .collect();
            assert_eq!(observed, written.into_iter().collect::<Vec<_>>(), "{case}");
            assert_eq!(
                batch.results.len(),
                checks.len(),
                "{case}: every result is stored"
            );
        }
    }
}
