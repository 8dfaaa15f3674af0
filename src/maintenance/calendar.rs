//! The engine's maintenance calendar (DESIGN §10): every stored window, compiled, in memory,
//! answering "which window is this integration in now, and when does that change?" for the
//! monitors ([`catalogd_actors::Ledger::maintenance`]) without touching the database.
//!
//! It is loaded from the store at start, again after each window change made through this
//! node, and every `refresh` interval (a change made through another node of a cluster). When
//! what it holds changed, the engine is told, and each monitor asks again.
//!
//! A recurring window's openings are computed by the `rrule` crate, which walks its rule; a
//! million monitors asking at once must not each walk it. So each window keeps the answer of
//! its last evaluation with the span it holds for (until its current opening ends or its next
//! one starts), and answers every question inside that span from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{MaintenanceWindow, Occurrence, Schedule, Selector};
use crate::connectors::Target;
use crate::store::Store;
use catalogd_actors::{Engine, Maintenance, MaintenanceView};

/// How far ahead a monitor is told of the next opening. One with nothing planned within it
/// asks again then (a window may have been created meanwhile, but that is announced; this
/// bounds the rrule walk).
const HORIZON: TimeDelta = TimeDelta::days(1);

/// Every window, by tenant.
#[derive(Default)]
pub struct Calendar {
    tenants: RwLock<HashMap<String, Arc<[Compiled]>>>,
    /// `(window, version)` of what is held, to tell whether a reload changed anything.
    versions: Mutex<Vec<(Uuid, i64)>>,
}

struct Compiled {
    window_id: Uuid,
    selector: Selector,
    schedule: Schedule,
    /// The last evaluation and the span it holds for.
    cached: Mutex<Option<Evaluation>>,
}

#[derive(Clone, Copy)]
struct Evaluation {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    open: Option<Occurrence>,
    next: Option<Occurrence>,
}

impl Compiled {
    fn evaluate(&self, at: DateTime<Utc>) -> Evaluation {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = *cached {
            if hit.from <= at && at < hit.until {
                return hit;
            }
        }
        let open = self.schedule.open_at(at);
        let next = self.schedule.next_after(at, HORIZON);
        let until = [open.map(|o| o.end), next.map(|o| o.start)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(at + HORIZON);
        let evaluation = Evaluation {
            from: at,
            until,
            open,
            next,
        };
        *cached = Some(evaluation);
        evaluation
    }
}

impl Calendar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what the calendar holds with `windows`; whether anything changed. A window
    /// whose schedule no longer compiles (it was validated when stored) is left out.
    pub fn load(&self, windows: Vec<MaintenanceWindow>) -> bool {
        let mut versions: Vec<(Uuid, i64)> =
            windows.iter().map(|w| (w.window_id, w.version)).collect();
        versions.sort_unstable();
        {
            let mut held = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            if *held == versions {
                return false;
            }
            *held = versions;
        }
        let mut tenants: HashMap<String, Vec<Compiled>> = HashMap::new();
        for window in windows {
            let schedule = match window.schedule() {
                Ok(schedule) => schedule,
                Err(error) => {
                    tracing::warn!(window_id = %window.window_id, %error, "maintenance window left out of the calendar");
                    continue;
                }
            };
            tenants.entry(window.tenant_id).or_default().push(Compiled {
                window_id: window.window_id,
                selector: window.selector,
                schedule,
                cached: Mutex::new(None),
            });
        }
        let tenants = tenants
            .into_iter()
            .map(|(tenant, windows)| (tenant, Arc::from(windows)))
            .collect();
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = tenants;
        true
    }

    /// The window the integration is in at `at` (of several, the one that ends last) and
    /// when that next changes.
    pub fn view(
        &self,
        tenant_id: &str,
        integration_id: Uuid,
        tags: &[String],
        environment: Option<&str>,
        at: DateTime<Utc>,
    ) -> MaintenanceView {
        let windows = {
            let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
            match tenants.get(tenant_id) {
                Some(windows) => windows.clone(),
                None => return MaintenanceView::default(),
            }
        };
        let mut current: Option<Maintenance> = None;
        let mut next_change: Option<DateTime<Utc>> = None;
        let mut earliest = |time: DateTime<Utc>| {
            next_change = Some(next_change.map_or(time, |t| t.min(time)));
        };
        for window in windows
            .iter()
            .filter(|w| w.selector.matches(integration_id, tags, environment))
        {
            let evaluation = window.evaluate(at);
            if let Some(open) = evaluation.open {
                earliest(open.end);
                if current.is_none_or(|c| open.end > c.ends_at) {
                    current = Some(Maintenance {
                        window_id: window.window_id,
                        ends_at: open.end,
                    });
                }
            }
            match evaluation.next {
                Some(next) => earliest(next.start),
                None => earliest(at + HORIZON),
            }
        }
        MaintenanceView {
            current,
            next_change,
        }
    }
}

/// Keeps a [`Calendar`] in step with the store: reloads it when told (a window changed
/// through this node) and every `every` (a change through another node), and tells the
/// engine when what it holds changed.
pub struct CalendarSync {
    calendar: Arc<Calendar>,
    store: Arc<dyn Store>,
    every: Duration,
    wake: Notify,
}

impl CalendarSync {
    pub fn new(calendar: Arc<Calendar>, store: Arc<dyn Store>, every: Duration) -> Self {
        CalendarSync {
            calendar,
            store,
            every,
            wake: Notify::new(),
        }
    }

    /// A window changed: reload now.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// Reloads until `stopped` turns true.
    pub fn spawn(
        self: Arc<Self>,
        engine: Engine<Target>,
        mut stopped: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.every) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
                match self.store.all_windows().await {
                    Ok(windows) => {
                        if self.calendar.load(windows) {
                            engine.calendar_changed();
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not reload the maintenance windows");
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::WindowSpec;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(
        tenant: &str,
        selector: Selector,
        starts: &str,
        ends: Option<&str>,
        rrule: Option<&str>,
    ) -> MaintenanceWindow {
        MaintenanceWindow::new(
            tenant,
            WindowSpec {
                name: "w".to_owned(),
                description: None,
                starts_at: at(starts),
                ends_at: ends.map(at),
                rrule: rrule.map(str::to_owned),
                duration_seconds: rrule.map(|_| 3600),
                time_zone: "UTC".to_owned(),
                selector,
            },
            "admin",
            at("2026-01-01T00:00:00Z"),
        )
    }

    /// The monitors' view of a daily 01:00–02:00 window in Europe/Berlin follows local time
    /// across the change to summer time on 29 March 2026: 00:00–01:00 UTC before it,
    /// 23:00–00:00 UTC after.
    #[test]
    fn a_recurring_window_opens_at_local_time_across_daylight_saving() {
        let id = Uuid::from_u128(1);
        let mut berlin = window(
            "a",
            Selector::default(),
            "2026-03-20T00:00:00Z",
            None,
            Some("FREQ=DAILY;BYHOUR=1;BYMINUTE=0;BYSECOND=0"),
        );
        berlin.time_zone = "Europe/Berlin".to_owned();
        let calendar = Calendar::new();
        calendar.load(vec![berlin]);
        let cases = [
            // (time, in the window until, else the next change)
            ("2026-03-27T23:30:00Z", None, "2026-03-28T00:00:00Z"),
            (
                "2026-03-28T00:30:00Z",
                Some("2026-03-28T01:00:00Z"),
                "2026-03-28T01:00:00Z",
            ),
            ("2026-03-29T22:30:00Z", None, "2026-03-29T23:00:00Z"),
            (
                "2026-03-29T23:30:00Z",
                Some("2026-03-30T00:00:00Z"),
                "2026-03-30T00:00:00Z",
            ),
            ("2026-03-30T00:30:00Z", None, "2026-03-30T23:00:00Z"),
        ];
        for (time, until, next) in cases {
            let view = calendar.view("a", id, &[], None, at(time));
            assert_eq!(view.current.map(|m| m.ends_at), until.map(at), "{time}");
            assert_eq!(view.next_change, Some(at(next)), "{time}");
        }
    }

    #[test]
    fn integrations_see_the_windows_that_select_them_and_when_that_changes() {
        let id = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let by_tag = Selector {
            tags: vec!["db".to_owned()],
            ..Selector::default()
        };
        let once = window(
            "a",
            by_tag,
            "2026-06-01T10:00:00Z",
            Some("2026-06-01T12:00:00Z"),
            None,
        );
        let daily = window(
            "a",
            Selector {
                integration_ids: vec![id],
                ..Selector::default()
            },
            "2026-06-01T00:00:00Z",
            None,
            Some("FREQ=DAILY;BYHOUR=11;BYMINUTE=0;BYSECOND=0"),
        );
        let calendar = Calendar::new();
        assert!(calendar.load(vec![once.clone(), daily.clone()]));
        assert!(
            !calendar.load(vec![daily.clone(), once.clone()]),
            "same windows"
        );
        let tags = ["db".to_owned()];
        let view = |tenant: &str, id: Uuid, tags: &[String], time: &str| {
            calendar.view(tenant, id, tags, None, at(time))
        };
        // Before both: the one-off window's start is the next change.
        let before = view("a", id, &tags, "2026-06-01T09:00:00Z");
        assert_eq!(before.current, None);
        assert_eq!(before.next_change, Some(at("2026-06-01T10:00:00Z")));
        // In both: the one that ends last, the daily 11:00–12:00 and the 10:00–12:00 end
        // together, so the first found holds; the change is at 12:00.
        let both = view("a", id, &tags, "2026-06-01T11:30:00Z");
        assert_eq!(both.current.unwrap().ends_at, at("2026-06-01T12:00:00Z"));
        assert_eq!(both.next_change, Some(at("2026-06-01T12:00:00Z")));
        // Only the one-off window selects by tag; the daily one lists `id` alone.
        let tagged = view("a", other, &tags, "2026-06-02T11:30:00Z");
        assert_eq!(tagged.current, None);
        let daily_only = view("a", id, &[], "2026-06-02T11:30:00Z");
        assert_eq!(daily_only.current.unwrap().window_id, daily.window_id);
        // Another tenant's windows select nothing here.
        assert_eq!(
            view("b", id, &tags, "2026-06-01T11:30:00Z"),
            MaintenanceView::default()
        );
        // Reloading without the windows empties the calendar.
        assert!(calendar.load(Vec::new()));
        assert_eq!(view("a", id, &tags, "2026-06-01T11:30:00Z").current, None);
    }
}
