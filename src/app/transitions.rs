//! Lifecycle transitions on one integration (DESIGN §4, §5): submit, pause, resume and
//! activate, with their requests. Each commits the transition, its audit entry and its outbox
//! event in one store transaction, then tells the engine so the owning actor follows.

use catalogd_actors::Input;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{author, require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::integration::{Change, Integration};
use crate::validation;

/// The body of a pause.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why the integration is paused (required), recorded in the audit trail and the event.
    pub reason: Option<String>,
    /// A change ticket, recorded in the audit trail.
    pub ticket: Option<String>,
}

/// The optional body of a resume (the seed's clients send both, for compliance): recorded in
/// the audit trail like a pause's; the reason is also the event's `reason`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Why monitoring resumes (optional).
    pub reason: Option<String>,
    /// A change ticket (optional).
    pub ticket: Option<String>,
}

/// The optional body of an activation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// Recorded in the audit trail; the approver is the token's subject.
    pub comment: Option<String>,
}

/// The optional (empty) body of submit and test.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

impl App {
    /// Submits a draft for verification: draft → pending_verification; a verification check
    /// runs at once.
    pub async fn submit(&self, principal: &Principal, id: Uuid) -> Result<Integration, AppError> {
        require(principal, UseCase::Submit)?;
        self.transition(principal, id, Input::Submit, None, None)
            .await
    }

    /// Pauses monitoring; a reason is required, a ticket optional.
    pub async fn pause(
        &self,
        principal: &Principal,
        id: Uuid,
        request: PauseRequest,
    ) -> Result<Integration, AppError> {
        require(principal, UseCase::Pause)?;
        let (reason, ticket) = reason_and_ticket(request.reason, true, request.ticket)?;
        self.transition(principal, id, Input::Pause, reason, ticket)
            .await
    }

    /// Resumes monitoring: paused → active with counters reset; a check runs at once. An
    /// optional reason and ticket are audited as a pause's are.
    pub async fn resume(
        &self,
        principal: &Principal,
        id: Uuid,
        request: ResumeRequest,
    ) -> Result<Integration, AppError> {
        require(principal, UseCase::Resume)?;
        let (reason, ticket) = reason_and_ticket(request.reason, false, request.ticket)?;
        self.transition(principal, id, Input::Resume, reason, ticket)
            .await
    }

    /// Activates by approval: draft, pending_verification or failed → active. The approver
    /// is the principal.
    pub async fn activate(
        &self,
        principal: &Principal,
        id: Uuid,
        request: ActivateRequest,
    ) -> Result<Integration, AppError> {
        require(principal, UseCase::Activate)?;
        let comment = validation::reason("comment", request.comment, false)
            .map_err(|error| AppError::Validation(vec![error]))?;
        self.transition(principal, id, Input::Activate, comment, None)
            .await
    }

    /// Commits `input` for integration `id` (the transition, its audit entry and its outbox
    /// event in one store transaction) and notifies the engine.
    async fn transition(
        &self,
        principal: &Principal,
        id: Uuid,
        input: Input,
        reason: Option<String>,
        ticket: Option<String>,
    ) -> Result<Integration, AppError> {
        let change = Change::Lifecycle {
            input,
            reason,
            ticket,
        };
        let now = self.clock.now();
        let integration = self
            .store
            .change(&author(principal), id, change, now)
            .await?
            .ok_or(AppError::Internal)?;
        // Submit runs the verification test at once; resume checks at once (DESIGN §4).
        let check_now = matches!(input, Input::Submit | Input::Resume);
        self.engine.changed(id, check_now);
        Ok(integration)
    }
}

/// A pause's or resume's reason and ticket, each checked, every error reported at once.
fn reason_and_ticket(
    reason: Option<String>,
    reason_required: bool,
    ticket: Option<String>,
) -> Result<(Option<String>, Option<String>), AppError> {
    let reason = validation::reason("reason", reason, reason_required);
    let ticket = validation::ticket(ticket);
    match (reason, ticket) {
        (Ok(reason), Ok(ticket)) => Ok((reason, ticket)),
        (reason, ticket) => {
            let errors = [reason.err(), ticket.err()].into_iter().flatten().collect();
            Err(AppError::Validation(errors))
        }
    }
}
