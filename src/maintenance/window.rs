//! The maintenance window resource (DESIGN §10): what a client sends, its validation into a
//! [`WindowSpec`], and [`apply`], the pure change of a stored window with its audit record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::schedule::{Schedule, ScheduleError};
use crate::integration::{AuditRecord, Author, ChangeError};
use crate::validation::{self, FieldError, Rule};

/// Integration ids one selector may list.
pub const MAX_SELECTOR_IDS: usize = 1000;

/// Which integrations a window covers: an integration matches if it is listed by id or has a
/// listed tag, and is in `environment` when one is given. With no ids and no tags, every
/// integration of the tenant (of `environment`, when given) matches: a tenant-wide window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub integration_ids: Vec<Uuid>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

impl Selector {
    pub fn matches(&self, id: Uuid, tags: &[String], environment: Option<&str>) -> bool {
        if let Some(wanted) = &self.environment {
            if environment != Some(wanted.as_str()) {
                return false;
            }
        }
        (self.integration_ids.is_empty() && self.tags.is_empty())
            || self.integration_ids.contains(&id)
            || self.tags.iter().any(|tag| tags.contains(tag))
    }
}

/// A maintenance window as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    pub window_id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// The end of a one-off window; `null` for a recurring one.
    pub ends_at: Option<DateTime<Utc>>,
    /// An RFC 5545 RRULE (`FREQ=WEEKLY;BYDAY=SU;BYHOUR=2`) evaluated from `startsAt` in
    /// `timeZone`; `null` for a one-off window.
    pub rrule: Option<String>,
    /// How long each opening of a recurring window lasts.
    pub duration_seconds: Option<i64>,
    /// The IANA time zone the rule is evaluated in.
    pub time_zone: String,
    pub selector: Selector,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub modified_at: DateTime<Utc>,
    pub modified_by: String,
    pub version: i64,
}

impl MaintenanceWindow {
    pub fn new(tenant_id: &str, spec: WindowSpec, author: &str, now: DateTime<Utc>) -> Self {
        let mut window = MaintenanceWindow {
            window_id: Uuid::now_v7(),
            tenant_id: tenant_id.to_owned(),
            name: String::new(),
            description: None,
            starts_at: now,
            ends_at: None,
            rrule: None,
            duration_seconds: None,
            time_zone: String::new(),
            selector: Selector::default(),
            created_at: now,
            created_by: author.to_owned(),
            modified_at: now,
            modified_by: author.to_owned(),
            version: 1,
        };
        window.set_spec(spec);
        window
    }

    fn set_spec(&mut self, spec: WindowSpec) {
        self.name = spec.name;
        self.description = spec.description;
        self.starts_at = spec.starts_at;
        self.ends_at = spec.ends_at;
        self.rrule = spec.rrule;
        self.duration_seconds = spec.duration_seconds;
        self.time_zone = spec.time_zone;
        self.selector = spec.selector;
    }

    /// When it is open. A stored window was validated, so this fails only for a row written
    /// around the API (reported, never a panic).
    pub fn schedule(&self) -> Result<Schedule, ScheduleError> {
        match (&self.rrule, self.duration_seconds, self.ends_at) {
            (Some(rule), Some(duration), _) => {
                Schedule::recurring(self.starts_at, rule, duration, &self.time_zone)
            }
            (_, _, Some(ends_at)) => Schedule::once(self.starts_at, ends_at),
            _ => Err(ScheduleError::EndsBeforeStart),
        }
    }

    /// The audit trail's view: the whole window (it holds nothing secret).
    pub fn audit_summary(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The audit record of its creation.
    pub fn creation_record(&self) -> AuditRecord {
        AuditRecord {
            tenant_id: self.tenant_id.clone(),
            actor: self.created_by.clone(),
            action: "maintenance_window.create".to_owned(),
            target_id: self.window_id,
            before: None,
            after: Some(self.audit_summary()),
            reason: None,
            ticket: None,
            occurred_at: self.created_at,
        }
    }
}

/// The body of a create or an update, as sent: every field optional so that one answer lists
/// every problem.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowRequest {
    /// 1–128 characters, no control characters, no surrounding whitespace.
    #[schema(required = true, value_type = String, example = "sunday-patching")]
    pub name: Option<String>,
    /// Up to 2048 characters.
    pub description: Option<String>,
    /// The start of a one-off window, or the first start (DTSTART) of a recurring one.
    #[schema(required = true, value_type = DateTime<Utc>)]
    pub starts_at: Option<DateTime<Utc>>,
    /// The end of a one-off window (after `startsAt`). Not with `rrule`.
    pub ends_at: Option<DateTime<Utc>>,
    /// An RFC 5545 RRULE, at most hourly, without DTSTART. Needs `durationSeconds`.
    #[schema(example = "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2")]
    pub rrule: Option<String>,
    /// 1 s to 7 days: how long each opening of a recurring window lasts.
    #[serde(default, deserialize_with = "integral")]
    pub duration_seconds: Option<i64>,
    /// The IANA time zone a recurring rule is evaluated in; `UTC` when absent.
    #[schema(example = "Europe/Berlin")]
    pub time_zone: Option<String>,
    pub selector: Option<Selector>,
    /// Required on an update (or `If-Match`): the version the change was based on.
    #[serde(default, deserialize_with = "integral")]
    pub version: Option<i64>,
    /// Ignored unless it differs from the path's id (then 422 `id_mismatch`).
    pub window_id: Option<Uuid>,
}

/// An optional `i64` that may be written as an integral float (`5.0`): JSON Schema's
/// `integer`, which the OpenAPI document promises, includes such numbers.
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom(
            "an integer of 64 bits was expected",
        )),
    }
}

/// A validated window's user-settable fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub name: String,
    pub description: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub rrule: Option<String>,
    pub duration_seconds: Option<i64>,
    pub time_zone: String,
    pub selector: Selector,
}

/// Checks every field of `request`; returns the spec or every broken rule.
pub fn validate(request: WindowRequest) -> Result<WindowSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    validation::check_name(request.name.as_deref(), &mut errors);
    if let Some(description) = &request.description {
        validation::check_description(description, &mut errors);
    }
    let schedule_error = |field: &str, error: ScheduleError| {
        FieldError::new(field, Rule::InvalidSchedule, error.to_string())
    };
    let time_zone = request
        .time_zone
        .clone()
        .unwrap_or_else(|| "UTC".to_owned());
    match (request.starts_at, request.ends_at, &request.rrule) {
        (None, _, _) => errors.push(FieldError::new(
            "/startsAt",
            Rule::InvalidSchedule,
            "startsAt is required",
        )),
        (Some(_), Some(_), Some(_)) => errors.push(FieldError::new(
            "/rrule",
            Rule::InvalidSchedule,
            "a window has either endsAt (one-off) or rrule with durationSeconds (recurring), not both",
        )),
        (Some(start), Some(end), None) => {
            if request.duration_seconds.is_some() {
                errors.push(FieldError::new(
                    "/durationSeconds",
                    Rule::InvalidSchedule,
                    "durationSeconds belongs to a recurring window (with rrule)",
                ));
            }
            if let Err(error) = Schedule::once(start, end) {
                errors.push(schedule_error("/endsAt", error));
            }
        }
        (Some(_), None, None) => errors.push(FieldError::new(
            "/endsAt",
            Rule::InvalidSchedule,
            "a one-off window needs endsAt; a recurring one needs rrule and durationSeconds",
        )),
        (Some(start), None, Some(rule)) => match request.duration_seconds {
            None => errors.push(FieldError::new(
                "/durationSeconds",
                Rule::InvalidSchedule,
                "a recurring window needs durationSeconds",
            )),
            Some(duration) => {
                if let Err(error) = Schedule::recurring(start, rule, duration, &time_zone) {
                    let field = match error {
                        ScheduleError::InvalidDuration => "/durationSeconds",
                        ScheduleError::UnknownTimeZone => "/timeZone",
                        _ => "/rrule",
                    };
                    errors.push(schedule_error(field, error));
                }
            }
        },
    }
    if request.rrule.is_none() && request.time_zone.is_some() {
        if let Err(error) = super::schedule::time_zone(&time_zone) {
            errors.push(schedule_error("/timeZone", error));
        }
    }
    let selector = request.selector.unwrap_or_default();
    if selector.integration_ids.len() > MAX_SELECTOR_IDS {
        errors.push(FieldError::new(
            "/selector/integrationIds",
            Rule::InvalidSelector,
            format!("at most {MAX_SELECTOR_IDS} integration ids"),
        ));
    }
    let mut tag_errors = Vec::new();
    validation::check_tags(&selector.tags, &mut tag_errors);
    errors.extend(tag_errors.into_iter().map(|e| FieldError {
        field: format!("/selector{}", e.field),
        rule: Rule::InvalidSelector,
        detail: e.detail,
    }));
    if let Some(environment) = &selector.environment {
        if !validation::is_environment(environment) {
            errors.push(FieldError::new(
                "/selector/environment",
                Rule::InvalidSelector,
                "environment must be 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
    }
    match (request.name, request.starts_at) {
        (Some(name), Some(starts_at)) if errors.is_empty() => Ok(WindowSpec {
            name,
            description: request.description,
            starts_at,
            ends_at: if request.rrule.is_some() {
                None
            } else {
                request.ends_at
            },
            duration_seconds: request.rrule.as_ref().and(request.duration_seconds),
            rrule: request.rrule,
            time_zone,
            selector,
        }),
        _ => Err(errors),
    }
}

/// A change a user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowChange {
    Update {
        expected_version: i64,
        spec: WindowSpec,
    },
    Delete {
        expected_version: Option<i64>,
    },
}

/// Applies `change` to `current`: the window after it (`None` when deleted) and its audit
/// record. Pure: the caller supplies the time.
pub fn apply(
    current: &MaintenanceWindow,
    change: WindowChange,
    author: &Author,
    now: DateTime<Utc>,
) -> Result<(Option<MaintenanceWindow>, AuditRecord), ChangeError> {
    let check = |expected: i64| {
        if expected == current.version {
            Ok(())
        } else {
            Err(ChangeError::VersionMismatch {
                expected,
                current: current.version,
            })
        }
    };
    let (after, action) = match change {
        WindowChange::Update {
            expected_version,
            spec,
        } => {
            check(expected_version)?;
            let mut next = current.clone();
            next.set_spec(spec);
            next.version += 1;
            next.modified_at = now;
            next.modified_by = author.subject.clone();
            (Some(next), "maintenance_window.update")
        }
        WindowChange::Delete { expected_version } => {
            if let Some(expected) = expected_version {
                check(expected)?;
            }
            (None, "maintenance_window.delete")
        }
    };
    let audit = AuditRecord {
        tenant_id: current.tenant_id.clone(),
        actor: author.subject.clone(),
        action: action.to_owned(),
        target_id: current.window_id,
        before: Some(current.audit_summary()),
        after: after.as_ref().map(MaintenanceWindow::audit_summary),
        reason: None,
        ticket: None,
        occurred_at: now,
    };
    Ok((after, audit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> WindowRequest {
        serde_json::from_value(body).unwrap()
    }

    /// Each bad body names the field and the rule; good ones validate.
    #[test]
    fn windows_are_validated_field_by_field() {
        let cases = [
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T02:00:00Z"}),
                None,
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "rrule": "FREQ=WEEKLY;BYDAY=SU", "durationSeconds": 3600, "timeZone": "Europe/Berlin"}),
                None,
            ),
            (
                json!({"name": "w"}),
                Some(("/startsAt", "invalid_schedule")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z"}),
                Some(("/endsAt", "invalid_schedule")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2025-01-01T00:00:00Z"}),
                Some(("/endsAt", "invalid_schedule")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "rrule": "FREQ=DAILY"}),
                Some(("/durationSeconds", "invalid_schedule")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "rrule": "FREQ=SOMETIMES", "durationSeconds": 60}),
                Some(("/rrule", "invalid_schedule")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "rrule": "FREQ=DAILY", "durationSeconds": 60, "timeZone": "Nowhere/Land"}),
                Some(("/timeZone", "invalid_schedule")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-02T00:00:00Z", "selector": {"tags": ["bad tag"]}}),
                Some(("/selector/tags/0", "invalid_selector")),
            ),
            (
                json!({"name": "w", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-02T00:00:00Z", "selector": {"environment": ""}}),
                Some(("/selector/environment", "invalid_selector")),
            ),
            (
                json!({"name": " w", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-02T00:00:00Z"}),
                Some(("/name", "invalid_name")),
            ),
        ];
        for (body, expected) in cases {
            let result = validate(request(body.clone()));
            match expected {
                None => assert!(result.is_ok(), "{body}: {result:?}"),
                Some((field, code)) => {
                    let errors = result.expect_err(&body.to_string());
                    assert!(
                        errors
                            .iter()
                            .any(|e| e.field == field && e.rule.code() == code),
                        "{body}: {errors:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_selector_matches_by_id_or_tag_within_its_environment() {
        let id = Uuid::now_v7();
        let other = Uuid::now_v7();
        let tags = vec!["db".to_owned()];
        let cases = [
            (Selector::default(), other, true),
            (
                Selector {
                    integration_ids: vec![id],
                    ..Default::default()
                },
                id,
                true,
            ),
            (
                Selector {
                    integration_ids: vec![id],
                    ..Default::default()
                },
                other,
                false,
            ),
            (
                Selector {
                    tags: vec!["db".into()],
                    ..Default::default()
                },
                other,
                true,
            ),
            (
                Selector {
                    tags: vec!["db".into()],
                    environment: Some("dev".into()),
                    ..Default::default()
                },
                other,
                false,
            ),
            (
                Selector {
                    environment: Some("prod".into()),
                    ..Default::default()
                },
                other,
                true,
            ),
        ];
        for (selector, who, expected) in cases {
            assert_eq!(
                selector.matches(who, &tags, Some("prod")),
                expected,
                "{selector:?}"
            );
        }
    }
}
