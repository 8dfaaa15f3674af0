//! The manual connection test of one integration: a staged test run now, audited and published
//! as `integration.tested`, and for a monitored integration also delivered to its actor as a
//! check.

use std::time::Duration;

use catalogd_actors::CheckReport;
use uuid::Uuid;

use super::{author, require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::connectors::{ConnectionTestReport, Target};
use crate::integration::TestSummary;

impl App {
    /// Runs a staged connection test now. The result is audited; for a monitored integration
    /// it also counts as a check, applied by the integration's own actor (a successful test
    /// verifies a pending integration). A failed test is a report, not an error.
    pub async fn test(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<ConnectionTestReport, AppError> {
        require(principal, UseCase::Test)?;
        let integration = self
            .store
            .get(&principal.tenant_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let timeout = integration
            .health_check
            .timeout_seconds
            .map_or(self.monitor.timeout, |s| Duration::from_secs(s.into()));
        let report = self
            .connectors
            .test(&Target::from(&integration), timeout)
            .await;
        let summary = TestSummary {
            success: report.success,
            failure_class: report.failure_class,
            latency_ms: report.latency_ms,
            skipped: report.skipped,
            tested_at: report.tested_at,
        };
        // Audited and published as `integration.tested` in one transaction, whether or not
        // the result changes the status (DESIGN §12).
        self.store
            .record_test(&author(principal), id, &summary, self.clock.now())
            .await?;
        if integration.status.is_monitored() {
            self.engine.deliver(
                id,
                CheckReport {
                    outcome: report.outcome(),
                    started_at: report.tested_at,
                    latency: Duration::from_millis(report.latency_ms),
                    lateness: Duration::ZERO,
                },
            );
        }
        Ok(report)
    }
}
