//! The status page (DESIGN §11): its configuration use cases (`GET`/`PUT
//! /api/v1/status-page`) and the page's data, [`StatusPageView`], a plain value built here
//! once per request and rendered by the transport three ways (HTML, `summary.json`, the SVG
//! badge), so the three always show the same values.
//!
//! The view is built from what a public page may show and nothing else: integration names
//! and states, counts of checks per day from the rollups (never raw results of 90 days),
//! and status changes from the audit trail's `integration.health` entries, of which only
//! the statuses are read. No base URL, AuthRef, configuration or failure detail is ever
//! read into it.
//!
//! Maintenance windows (DESIGN §10) reach the view through a [`MaintenanceCalendar`]: the
//! daemon's is [`StoredCalendar`], over the windows the store keeps, which fills the page's
//! "upcoming maintenance" list and marks maintenance days in the uptime bars.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{author, require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::maintenance::Selector;
use crate::store::history::Counts;
use crate::store::status_pages::{HealthTransition, StatusPageConfig, StoredStatusPage};
use crate::validation::{self, FieldError, Rule, StatusPageRequest};
use catalogd_actors::Status;

/// Days in the uptime bar.
pub const BAR_DAYS: u32 = 90;
/// Days of incidents the page lists.
pub const INCIDENT_DAYS: i64 = 14;
/// How far ahead the page lists maintenance.
pub const MAINTENANCE_HORIZON_DAYS: i64 = 30;
/// How long a tenant's checks per day and hour are reused between views (states are read
/// fresh on every view): a page refreshes every 60 s on however many screens.
pub const HISTORY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);
/// A day with at least this uptime counts as operational in the bar.
pub const OPERATIONAL_AT: f64 = 0.999;
/// A day below [`OPERATIONAL_AT`] but at least this is degraded; below it, an outage.
pub const DEGRADED_AT: f64 = 0.95;

/// A tenant's status page configuration, as `GET` and `PUT /api/v1/status-page` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusPageBody {
    pub enabled: bool,
    pub public: bool,
    pub title: String,
    pub description: Option<String>,
    pub selector: SelectorBody,
    /// 0 until the first `PUT`, then +1 on each.
    pub version: i64,
    pub modified_at: Option<DateTime<Utc>>,
    pub modified_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorBody {
    pub integration_ids: Vec<Uuid>,
    pub tags: Vec<String>,
    pub environment: Option<String>,
}

impl StatusPageBody {
    /// The page of a tenant that never configured one: disabled.
    fn unconfigured() -> Self {
        StatusPageBody {
            enabled: false,
            public: false,
            title: "Status".to_owned(),
            description: None,
            selector: SelectorBody {
                integration_ids: Vec::new(),
                tags: Vec::new(),
                environment: None,
            },
            version: 0,
            modified_at: None,
            modified_by: None,
        }
    }
}

impl From<StoredStatusPage> for StatusPageBody {
    fn from(stored: StoredStatusPage) -> Self {
        let StatusPageConfig {
            enabled,
            public,
            title,
            description,
            selector,
        } = stored.config;
        StatusPageBody {
            enabled,
            public,
            title,
            description,
            selector: SelectorBody {
                integration_ids: selector.integration_ids,
                tags: selector.tags,
                environment: selector.environment,
            },
            version: stored.version,
            modified_at: Some(stored.modified_at),
            modified_by: Some(stored.modified_by),
        }
    }
}

/// What a whole page, or one integration on it, looks like right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    Operational,
    /// Not verified yet (`pending_verification`): no verdict.
    Pending,
    /// Paused by an operator: not checked.
    Paused,
    Maintenance,
    Degraded,
    Outage,
}

impl PageState {
    pub fn of(status: Status) -> Self {
        match status {
            Status::Active => PageState::Operational,
            Status::Degraded => PageState::Degraded,
            Status::Failed => PageState::Outage,
            Status::Paused => PageState::Paused,
            Status::Draft | Status::PendingVerification => PageState::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PageState::Operational => "operational",
            PageState::Pending => "pending",
            PageState::Paused => "paused",
            PageState::Maintenance => "maintenance",
            PageState::Degraded => "degraded",
            PageState::Outage => "outage",
        }
    }

    /// The words a person reads for it.
    pub fn label(self) -> &'static str {
        match self {
            PageState::Operational => "Operational",
            PageState::Pending => "Pending verification",
            PageState::Paused => "Paused",
            PageState::Maintenance => "Under maintenance",
            PageState::Degraded => "Degraded",
            PageState::Outage => "Outage",
        }
    }
}

/// One day of an uptime bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayState {
    Operational,
    Degraded,
    Outage,
    Maintenance,
    NoData,
}

impl DayState {
    fn of(counts: Option<Counts>) -> Self {
        match counts.and_then(|counts| counts.ratio()) {
            None => DayState::NoData,
            Some(ratio) if ratio >= OPERATIONAL_AT => DayState::Operational,
            Some(ratio) if ratio >= DEGRADED_AT => DayState::Degraded,
            Some(_) => DayState::Outage,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DayState::Operational => "operational",
            DayState::Degraded => "degraded",
            DayState::Outage => "outage",
            DayState::Maintenance => "maintenance",
            DayState::NoData => "no_data",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct DayView {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    pub state: DayState,
    /// `null` on a day without a check.
    pub uptime: Option<f64>,
}

/// Uptime ratios over the page's windows (24 h from hourly data; 7, 30 and 90 days from the
/// day cells, today included).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, ToSchema)]
pub struct PageUptime {
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    #[serde(rename = "30d")]
    pub month: Option<f64>,
    #[serde(rename = "90d")]
    pub quarter: Option<f64>,
}

impl PageUptime {
    /// `(label, ratio)` in display order.
    pub fn windows(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("24h", self.day),
            ("7d", self.week),
            ("30d", self.month),
            ("90d", self.quarter),
        ]
    }
}

/// One integration on the page.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentView {
    pub name: String,
    pub state: PageState,
    pub uptime: PageUptime,
    /// [`BAR_DAYS`] days, oldest first, the last one today.
    pub days: Vec<DayView>,
}

/// A period in which an integration was degraded or failed, derived from its transitions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentView {
    pub integration: String,
    /// When it left operation; the start of the 14-day window when that was earlier.
    pub started_at: DateTime<Utc>,
    /// Whether it began before the window (so `startedAt` is the window's start).
    pub started_before: bool,
    /// `null` while it is ongoing.
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: i64,
    /// `degraded` or `outage`.
    pub worst_state: PageState,
}

/// A maintenance window the page lists as upcoming.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceView {
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The names of the page's integrations it covers.
    pub integrations: Vec<String>,
}

/// Everything a status page shows: the HTML, `summary.json` and the badges render this.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusPageView {
    pub tenant_id: String,
    pub title: String,
    pub description: Option<String>,
    pub generated_at: DateTime<Utc>,
    /// The worst current state among the integrations: `operational`, `degraded`,
    /// `outage` or `maintenance`.
    pub overall: PageState,
    /// Ordered by name.
    pub integrations: Vec<ComponentView>,
    /// The last 14 days', newest first.
    pub incidents: Vec<IncidentView>,
    /// Within the next 30 days, soonest first.
    pub upcoming_maintenance: Vec<MaintenanceView>,
}

impl StatusPageView {
    pub fn integration(&self, name: &str) -> Option<&ComponentView> {
        self.integrations.iter().find(|c| c.name == name)
    }
}

/// A maintenance window as the status page needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Which integrations the window covers; the page resolves it against its members,
    /// which it has read anyway.
    pub selector: Selector,
}

/// Where the page learns of maintenance windows (DESIGN §10), past and upcoming.
#[async_trait]
pub trait MaintenanceCalendar: Send + Sync + 'static {
    /// The tenant's windows (occurrences, for recurring ones) that overlap `[from, to)`.
    async fn windows(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MaintenanceWindow>, AppError>;
}

/// The tenant's stored maintenance windows, each opening in the span one window of the page.
/// No integration is read here: the page matches each window's selector against its
/// members (a second read of every integration of the tenant cost as much as the page).
pub struct StoredCalendar {
    pub store: std::sync::Arc<dyn crate::store::Store>,
}

#[async_trait]
impl MaintenanceCalendar for StoredCalendar {
    async fn windows(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MaintenanceWindow>, AppError> {
        let mut openings = Vec::new();
        for window in self.store.list_windows(tenant_id).await? {
            let Ok(schedule) = window.schedule() else {
                tracing::warn!(window = %window.window_id, "a stored window has no valid schedule");
                continue;
            };
            for occurrence in schedule.between(from, to) {
                openings.push(MaintenanceWindow {
                    name: window.name.clone(),
                    starts_at: occurrence.start,
                    ends_at: occurrence.end,
                    selector: window.selector.clone(),
                });
            }
        }
        Ok(openings)
    }
}

/// How a viewer of `/status/{tenant}` identified itself: the `Authorization` header's value
/// or the `?token=` parameter, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub authorization: Option<String>,
    pub token: Option<String>,
}

impl App {
    /// The caller's tenant's page configuration (a disabled default before the first `PUT`).
    pub async fn status_page_config(
        &self,
        principal: &Principal,
    ) -> Result<StatusPageBody, AppError> {
        require(principal, UseCase::GetStatusPage)?;
        Ok(self
            .status_pages
            .get(&principal.tenant_id)
            .await?
            .map_or_else(StatusPageBody::unconfigured, StatusPageBody::from))
    }

    /// Replaces the caller's tenant's page configuration. Every listed integration id must
    /// name one of the tenant's integrations.
    pub async fn put_status_page_config(
        &self,
        principal: &Principal,
        request: StatusPageRequest,
    ) -> Result<StatusPageBody, AppError> {
        require(principal, UseCase::PutStatusPage)?;
        let config = validation::status_page_config(request).map_err(AppError::Validation)?;
        if !config.selector.integration_ids.is_empty() {
            let members = self.status_pages.members(&principal.tenant_id).await?;
            let unknown: Vec<FieldError> = config
                .selector
                .integration_ids
                .iter()
                .enumerate()
                .filter(|(_, id)| !members.iter().any(|m| m.integration_id == **id))
                .map(|(index, _)| {
                    FieldError::new(
                        format!("/selector/integrationIds/{index}"),
                        Rule::InvalidSelector,
                        "no integration of this tenant has this id",
                    )
                })
                .collect();
            if !unknown.is_empty() {
                return Err(AppError::Validation(unknown));
            }
        }
        let author = author(principal);
        let stored = self
            .store
            .put_status_page(&author, &config, self.clock.now())
            .await?;
        tracing::info!(
            tenant = %principal.tenant_id,
            subject = %author.subject,
            version = stored.version,
            enabled = stored.config.enabled,
            public = stored.config.public,
            "status page configured"
        );
        Ok(stored.into())
    }

    /// The page of `tenant_id` for `viewer`. A tenant without an enabled page: `NotFound`.
    /// A page that is not public needs a read token of that tenant: none (or an invalid one)
    /// is `Unauthorized`, another tenant's is `NotFound`, exactly as if the page did not
    /// exist.
    pub async fn status_page(
        &self,
        tenant_id: &str,
        viewer: &Viewer,
    ) -> Result<StatusPageView, AppError> {
        let Some(stored) = self.status_pages.get(tenant_id).await? else {
            return Err(AppError::NotFound);
        };
        let config = stored.config;
        if !config.enabled {
            return Err(AppError::NotFound);
        }
        if !config.public {
            let authorization = match (&viewer.authorization, &viewer.token) {
                (Some(header), _) => Some(header.clone()),
                (None, Some(token)) => Some(format!("Bearer {token}")),
                (None, None) => None,
            };
            let principal = self.authenticate(authorization.as_deref(), UseCase::GetStatusPage)?;
            if principal.tenant_id != tenant_id {
                return Err(AppError::NotFound);
            }
        }
        self.build_status_page(tenant_id, &config).await
    }

    async fn build_status_page(
        &self,
        tenant_id: &str,
        config: &StatusPageConfig,
    ) -> Result<StatusPageView, AppError> {
        let now = self.clock.now();
        let members: Vec<_> = self
            .status_pages
            .members(tenant_id)
            .await?
            .into_iter()
            // Drafts are not monitored yet: they have nothing to show.
            .filter(|member| member.status != Status::Draft && config.selector.matches(member))
            .collect();
        let history = self
            .history
            .tenant_history_cached(tenant_id, BAR_DAYS, now, HISTORY_MAX_AGE)
            .await?;
        let since = now - TimeDelta::days(INCIDENT_DAYS);
        let transitions = self.status_pages.transitions(tenant_id, since).await?;
        let today = now.date_naive();
        let first_day = today - TimeDelta::days(i64::from(BAR_DAYS) - 1);
        let windows = self
            .maintenance
            .windows(
                tenant_id,
                first_day.and_time(chrono::NaiveTime::MIN).and_utc(),
                now + TimeDelta::days(MAINTENANCE_HORIZON_DAYS),
            )
            .await?;
        let names: HashMap<Uuid, &str> = members
            .iter()
            .map(|member| (member.integration_id, member.name.as_str()))
            .collect();

        // Each window's members, once: a member's days look up every window.
        let covered: Vec<HashSet<Uuid>> = windows
            .iter()
            .map(|window| {
                members
                    .iter()
                    .filter(|member| {
                        window.selector.matches(
                            member.integration_id,
                            &member.tags,
                            member.environment.as_deref(),
                        )
                    })
                    .map(|member| member.integration_id)
                    .collect()
            })
            .collect();
        let mut in_maintenance_now = Vec::new();
        let integrations: Vec<ComponentView> = members
            .iter()
            .map(|member| {
                let id = member.integration_id;
                let own_windows: Vec<&MaintenanceWindow> = windows
                    .iter()
                    .zip(&covered)
                    .filter(|(_, covered)| covered.contains(&id))
                    .map(|(window, _)| window)
                    .collect();
                let mut state = PageState::of(member.status);
                if own_windows
                    .iter()
                    .any(|window| window.starts_at <= now && now < window.ends_at)
                {
                    state = PageState::Maintenance;
                    in_maintenance_now.push(id);
                }
                let empty = BTreeMap::new();
                let days_of = history.days.get(&id).unwrap_or(&empty);
                let days: Vec<DayView> = (0..i64::from(BAR_DAYS))
                    .map(|offset| {
                        let date = first_day + TimeDelta::days(offset);
                        let start = date.and_time(chrono::NaiveTime::MIN).and_utc();
                        let counts = days_of.get(&start).copied();
                        let maintained = own_windows.iter().any(|window| {
                            window.starts_at < start + TimeDelta::days(1)
                                && window.ends_at > start
                                && window.starts_at <= now
                        });
                        DayView {
                            date,
                            state: if maintained {
                                DayState::Maintenance
                            } else {
                                DayState::of(counts)
                            },
                            uptime: counts.and_then(|counts| counts.ratio()),
                        }
                    })
                    .collect();
                let sum_last = |n: i64| {
                    let from = (today - TimeDelta::days(n - 1))
                        .and_time(chrono::NaiveTime::MIN)
                        .and_utc();
                    let mut total = Counts::default();
                    for (_, counts) in days_of.range(from..) {
                        total.absorb(*counts);
                    }
                    total.ratio()
                };
                ComponentView {
                    name: member.name.clone(),
                    state,
                    uptime: PageUptime {
                        day: history.last_day.get(&id).and_then(Counts::ratio),
                        week: sum_last(7),
                        month: sum_last(30),
                        quarter: sum_last(i64::from(BAR_DAYS)),
                    },
                    days,
                }
            })
            .collect();

        let overall = overall(integrations.iter().map(|c| c.state));
        let mut upcoming_maintenance: Vec<MaintenanceView> = windows
            .iter()
            .zip(&covered)
            .filter(|(window, _)| window.ends_at > now)
            .filter_map(|(window, covered)| {
                let mut covered: Vec<String> = covered
                    .iter()
                    .filter_map(|id| names.get(id).map(|name| (*name).to_owned()))
                    .collect();
                covered.sort();
                (!covered.is_empty()).then(|| MaintenanceView {
                    name: window.name.clone(),
                    starts_at: window.starts_at,
                    ends_at: window.ends_at,
                    integrations: covered,
                })
            })
            .collect();
        upcoming_maintenance.sort_by_key(|window| window.starts_at);
        let mut incidents = incidents(&transitions, &names, since, now);
        incidents.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| a.integration.cmp(&b.integration))
        });
        Ok(StatusPageView {
            tenant_id: tenant_id.to_owned(),
            title: config.title.clone(),
            description: config.description.clone(),
            generated_at: now,
            overall,
            integrations,
            incidents,
            upcoming_maintenance,
        })
    }
}

/// The banner: an outage anywhere, else degradation anywhere, else maintenance anywhere,
/// else operational (paused and pending integrations give no verdict).
pub fn overall(states: impl Iterator<Item = PageState>) -> PageState {
    let mut overall = PageState::Operational;
    for state in states {
        let rank = |state: PageState| match state {
            PageState::Outage => 3,
            PageState::Degraded => 2,
            PageState::Maintenance => 1,
            _ => 0,
        };
        if rank(state) > rank(overall) {
            overall = state;
        }
    }
    overall
}

fn is_unhealthy(status: Status) -> bool {
    matches!(status, Status::Degraded | Status::Failed)
}

/// Incidents from status changes (oldest first): one opens when an integration becomes
/// degraded or failed and closes when it becomes anything else; its worst state is the worst
/// it reached. A first change *out of* an unhealthy state means the incident began before
/// `since`. Only the page's integrations (`names`) are considered.
pub fn incidents(
    transitions: &[HealthTransition],
    names: &HashMap<Uuid, &str>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<IncidentView> {
    struct Open {
        started_at: DateTime<Utc>,
        started_before: bool,
        worst: PageState,
    }
    let mut open: HashMap<Uuid, Open> = HashMap::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut done = Vec::new();
    for transition in transitions {
        let Some(name) = names.get(&transition.integration_id) else {
            continue;
        };
        let first = seen.insert(transition.integration_id);
        let id = transition.integration_id;
        if first && is_unhealthy(transition.from) && !open.contains_key(&id) {
            open.insert(
                id,
                Open {
                    started_at: since,
                    started_before: true,
                    worst: PageState::of(transition.from),
                },
            );
        }
        if is_unhealthy(transition.to) {
            let state = PageState::of(transition.to);
            let incident = open.entry(id).or_insert(Open {
                started_at: transition.at,
                started_before: false,
                worst: state,
            });
            incident.worst = incident.worst.max(state);
        } else if let Some(incident) = open.remove(&id) {
            done.push(IncidentView {
                integration: (*name).to_owned(),
                started_at: incident.started_at,
                started_before: incident.started_before,
                ended_at: Some(transition.at),
                duration_seconds: (transition.at - incident.started_at).num_seconds(),
                worst_state: incident.worst,
            });
        }
    }
    for (id, incident) in open {
        done.push(IncidentView {
            integration: names.get(&id).copied().unwrap_or_default().to_owned(),
            started_at: incident.started_at,
            started_before: incident.started_before,
            ended_at: None,
            duration_seconds: (now - incident.started_at).num_seconds(),
            worst_state: incident.worst,
        });
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    #[test]
    fn incidents_open_close_and_keep_their_worst_state() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let hidden = Uuid::from_u128(3);
        let names = HashMap::from([(a, "alpha"), (b, "beta")]);
        let t = |id, minute, from, to| HealthTransition {
            integration_id: id,
            at: at(minute),
            from,
            to,
        };
        let transitions = [
            // Began before the window: its first change is a recovery.
            t(b, 5, Status::Failed, Status::Active),
            t(a, 10, Status::Active, Status::Degraded),
            t(a, 20, Status::Degraded, Status::Failed),
            t(hidden, 25, Status::Active, Status::Failed),
            t(a, 30, Status::Failed, Status::Active),
            t(a, 40, Status::Active, Status::Degraded),
        ];
        let mut found = incidents(&transitions, &names, at(0), at(50));
        found.sort_by_key(|incident| (incident.integration.clone(), incident.started_at));
        let summary: Vec<_> = found
            .iter()
            .map(|i| {
                (
                    i.integration.as_str(),
                    i.started_before,
                    i.duration_seconds / 60,
                    i.ended_at.is_some(),
                    i.worst_state,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("alpha", false, 20, true, PageState::Outage),
                ("alpha", false, 10, false, PageState::Degraded),
                ("beta", true, 5, true, PageState::Outage),
            ]
        );
    }

    #[test]
    fn the_banner_is_the_worst_current_state() {
        use PageState::*;
        for (states, expected) in [
            (vec![], Operational),
            (vec![Operational, Paused, Pending], Operational),
            (vec![Operational, Maintenance], Maintenance),
            (vec![Maintenance, Degraded], Degraded),
            (vec![Degraded, Outage, Operational], Outage),
        ] {
            assert_eq!(overall(states.into_iter()), expected);
        }
    }

    #[test]
    fn day_states_follow_the_thresholds() {
        let counts = |successes, failures| {
            Some(Counts {
                successes,
                failures,
            })
        };
        assert_eq!(DayState::of(None), DayState::NoData);
        assert_eq!(DayState::of(counts(0, 0)), DayState::NoData);
        assert_eq!(DayState::of(counts(1000, 1)), DayState::Operational);
        assert_eq!(DayState::of(counts(96, 4)), DayState::Degraded);
        assert_eq!(DayState::of(counts(1, 1)), DayState::Outage);
    }
}
