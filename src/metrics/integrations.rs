//! Gauges read from the store rather than counted: `catalogd_integrations{tenant,status}` and
//! the per-integration series (`catalogd_integration_*`).
//!
//! They live in one table per daemon, rendered straight into the `/metrics` text instead of
//! going through the `metrics` recorder, for two reasons:
//!
//! - **No stale series.** The refresh task replaces the set of integrations wholesale from the
//!   store, so a deleted integration's series disappear at the next refresh; the recorder has
//!   no way to remove one series.
//! - **Render cost.** Each integration's label set is escaped once, when it is read from the
//!   store, and rendering is a copy of it per series (see the cardinality budget in README).
//!   The families that change rarely (`status`, `uptime_ratio`: only the refresh task changes
//!   them; `up`: when a check's outcome flips) are rendered, and gzip-compressed, once per
//!   change ([`Stable`]) rather than once per scrape; only the last duration, which every
//!   check result updates, is rendered at each scrape.
//!
//! Between refreshes the table follows every change at once, so a dashboard or an `absent()`
//! alert never waits for a refresh:
//!
//! - every committed change of the catalog (create, edit, transition, delete) reaches
//!   [`IntegrationGauges`] as a [`ChangeObserver`] right after its commit: it moves the
//!   integration between the `catalogd_integrations` counts and adds, relabels or removes its
//!   series;
//! - every check result updates its integration's `up` and last duration
//!   ([`IntegrationGauges::observe`]), and gives a new integration its first uptime ratios; it
//!   never adds an integration, so a result arriving after a delete cannot bring its series back.
//!
//! The refresh then only repairs what the daemon could not see (another writer of the
//! database). A refresh that raced a change keeps the in-memory state of what changed: the
//! counts are left alone when a change was applied while they were read, and the series of an
//! integration changed while the integrations were read keep their in-memory state.
//! `catalogd_integrations` has a sample for every status of every tenant with integrations,
//! zeros included (as kube-state-metrics does for pod phases), so a status that empties does
//! not vanish.

use crate::cluster::{Ownership, WriteKind};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use catalogd_actors::{CheckOutcome, Clock, EngineCounters, Status};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::gzip::Part;
use super::internal_events::{GaugesRefreshFailed, GaugesRefreshed, InternalEvent};
use super::names;
use crate::integration::Integration;
use crate::store::census::{Census, IntegrationLabels, StatusCount};
use crate::store::history::{HistoryStore, Uptime, UPTIME_WINDOWS};
use crate::store::{ChangeObserver, StoreError};

/// The `catalogd_integration_status` value of a status: its index in [`Status::ALL`].
pub fn status_value(status: Status) -> u8 {
    Status::ALL.iter().position(|s| *s == status).unwrap_or(0) as u8
}

/// One integration's series. Cheap to clone (the label set is shared), so renders copy the
/// table out and format it without the lock that every check result takes.
#[derive(Debug, Clone)]
struct Series {
    /// `tenant="…",integration="…",name="…",type="…",provider="…"`, escaped.
    labels: Arc<str>,
    tenant: Arc<str>,
    status: u8,
    up: Option<bool>,
    duration: Option<f64>,
    uptime: Uptime,
}

/// Integrations of one tenant by status, indexed by [`status_value`].
type Counts = [i64; Status::ALL.len()];

#[derive(Debug, Default)]
struct Table {
    counts: BTreeMap<Arc<str>, Counts>,
    series: HashMap<Uuid, Series>,
    /// Changes applied since start: a refresh compares it before and after reading the
    /// counts, to tell whether one raced it.
    changes: u64,
    /// While a refresh reads the integrations, the ones changed meanwhile: their in-memory
    /// state is newer than what the read returns.
    touched: Option<HashSet<Uuid>>,
    /// Bumped whenever the status and uptime families change: the set of integrations, a
    /// label set, a status or an uptime ratio.
    generation: u64,
    /// Bumped whenever the `up` family changes: the set, a label set, or an `up` value.
    up_generation: u64,
}

/// The per-integration families that change rarely (`status`, `uptime_ratio`, `up`),
/// rendered once per generation of the table (`Table::generation`) and compressed on first
/// demand.
#[derive(Debug)]
pub struct Stable {
    generation: u64,
    text: String,
    gzip: OnceLock<Part>,
}

impl Stable {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text as a gzip [`Part`], compressed by the first scrape that asks for it.
    pub fn gzip(&self) -> &Part {
        self.gzip
            .get_or_init(|| Part::compress(self.text.as_bytes()))
    }
}

/// The store-derived gauges of one daemon. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IntegrationGauges {
    per_integration: bool,
    table: Arc<Mutex<Table>>,
    /// The cached `up` family and the cached status and uptime families.
    stable: Arc<Mutex<[Option<Arc<Stable>>; 2]>>,
}

impl IntegrationGauges {
    pub fn new(per_integration: bool) -> Self {
        IntegrationGauges {
            per_integration,
            table: Arc::default(),
            stable: Arc::default(),
        }
    }

    pub fn per_integration(&self) -> bool {
        self.per_integration
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Integrations with per-integration series.
    pub fn len(&self) -> usize {
        self.lock().series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A check result of `id`: its `up` and last duration. Skipped checks change nothing.
    pub fn observe(&self, id: Uuid, outcome: CheckOutcome, latency: Duration) {
        if !self.per_integration || outcome == CheckOutcome::Skipped {
            return;
        }
        let mut table = self.lock();
        if let Some(series) = table.series.get_mut(&id) {
            let success = outcome == CheckOutcome::Success;
            series.duration = Some(latency.as_secs_f64());
            // A first check is the whole history of every window, until the uptime pass
            // computes the ratios from the stored results.
            let first = series.uptime == Uptime::default();
            if first {
                series.uptime = Uptime::first_check(success);
            }
            let up_changed = series.up != Some(success);
            series.up = Some(success);
            if first {
                table.generation += 1;
            }
            if up_changed {
                // `up` is cached on its own: it changes when a check's outcome flips, far
                // less often than every check, and a flip re-renders only this family.
                table.up_generation += 1;
            }
        }
    }

    /// How many changes were applied so far: pass it to [`Self::set_counts`].
    fn changes(&self) -> u64 {
        self.lock().changes
    }

    /// Replaces the counts with `counts` read from the store, unless a change was applied
    /// since `changes_before` (the read may then miss it or count it twice; the counts the
    /// changes kept current are right, and the next refresh repairs anything else). Returns
    /// whether the counts were replaced.
    fn set_counts(&self, counts: Vec<StatusCount>, changes_before: u64) -> bool {
        let mut fresh: BTreeMap<Arc<str>, Counts> = BTreeMap::new();
        for count in counts {
            let Ok(status) = Status::from_str(&count.status) else {
                continue;
            };
            let tenant: Arc<str> = count.tenant_id.into();
            fresh.entry(tenant).or_default()[usize::from(status_value(status))] +=
                i64::try_from(count.count).unwrap_or(i64::MAX);
        }
        let mut table = self.lock();
        if table.changes != changes_before {
            return false;
        }
        table.counts = fresh;
        true
    }

    /// A refresh starts reading the integrations: note the ones changed meanwhile.
    fn begin_sync(&self) {
        self.lock().touched = Some(HashSet::new());
    }

    /// Makes the set of integrations exactly `rows`: removes the others, adds new ones and
    /// updates labels and status. Live values (`up`, duration, uptime) of kept ones stay.
    pub fn sync(&self, rows: Vec<IntegrationLabels>) {
        // Everything per row that costs (escaping, parsing, allocating) happens before the
        // lock: every check result takes it, and a worker thread blocked on it is a late check.
        let mut fresh: HashMap<Uuid, Prepared> = rows
            .into_iter()
            .map(|row| {
                let prepared = Prepared {
                    status: Status::from_str(&row.status).map_or(0, status_value),
                    labels: label_set(&row).into(),
                    tenant: row.tenant_id.into(),
                    last_test_success: row.last_test_success,
                };
                (row.integration_id, prepared)
            })
            .collect();
        let mut table = self.lock();
        // What changed while the store was read is newer in memory than in `rows`.
        let touched = table.touched.take().unwrap_or_default();
        fresh.retain(|id, _| !touched.contains(id));
        let before = table.series.len();
        table
            .series
            .retain(|id, _| fresh.contains_key(id) || touched.contains(id));
        // The set and the label sets are in every family; a status only in one, an `up`
        // only in the other.
        let mut set_changed = table.series.len() != before;
        let mut status_changed = false;
        let mut up_changed = false;
        for (id, row) in fresh.drain() {
            let Prepared {
                status,
                labels,
                tenant,
                last_test_success,
            } = row;
            match table.series.get_mut(&id) {
                Some(series) => {
                    if series.status != status {
                        series.status = status;
                        status_changed = true;
                    }
                    if series.labels != labels {
                        series.labels = labels;
                        series.tenant = tenant;
                        set_changed = true;
                    }
                    if series.up.is_none() && last_test_success.is_some() {
                        series.up = last_test_success;
                        up_changed = true;
                    }
                }
                None => {
                    set_changed = true;
                    table.series.insert(
                        id,
                        Series {
                            labels,
                            tenant,
                            status,
                            up: last_test_success,
                            duration: None,
                            uptime: Uptime::default(),
                        },
                    );
                }
            }
        }
        if set_changed || status_changed {
            table.generation += 1;
        }
        if set_changed || up_changed {
            table.up_generation += 1;
        }
    }

    pub fn set_uptime(&self, id: Uuid, uptime: Uptime) {
        let mut table = self.lock();
        if let Some(series) = table.series.get_mut(&id) {
            if series.uptime != uptime {
                series.uptime = uptime;
                table.generation += 1;
            }
        }
    }

    /// `(id, tenant)` of every integration with series, for the uptime pass.
    fn ids(&self) -> Vec<(Uuid, Arc<str>)> {
        self.lock()
            .series
            .iter()
            .map(|(id, s)| (*id, s.tenant.clone()))
            .collect()
    }

    /// Appends `catalogd_integrations` and, when on, the per-integration families.
    pub fn render_into(&self, out: &mut String) {
        self.render_live(out);
        for stable in self.stable() {
            out.push_str(stable.text());
        }
    }

    /// Appends `catalogd_integrations` and, when on, the per-integration family every check
    /// result changes (the last duration).
    pub fn render_live(&self, out: &mut String) {
        // Copied out under the lock, formatted without it.
        type Copied = (Vec<(Arc<str>, Counts)>, Vec<(Arc<str>, f64)>);
        let (counts, durations): Copied = {
            let table = self.lock();
            let durations = if self.per_integration {
                table
                    .series
                    .values()
                    .filter_map(|s| Some((s.labels.clone(), s.duration?)))
                    .collect()
            } else {
                Vec::new()
            };
            let counts = table
                .counts
                .iter()
                .filter(|(_, counts)| counts.iter().any(|count| *count > 0))
                .map(|(tenant, counts)| (tenant.clone(), *counts))
                .collect();
            (counts, durations)
        };
        family(
            out,
            names::INTEGRATIONS,
            "gauge",
            "Integrations per tenant and status.",
        );
        for (tenant, counts) in &counts {
            for (status, count) in Status::ALL.iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "{}{{tenant=\"{}\",status=\"{}\"}} {}",
                    names::INTEGRATIONS,
                    escape(tenant),
                    status.as_str(),
                    (*count).max(0)
                );
            }
        }
        if durations.is_empty() {
            return;
        }
        out.reserve(durations.len() * (durations[0].0.len() + 60));
        family(
            out,
            names::INTEGRATION_CHECK_DURATION,
            "gauge",
            "Duration of the integration's last health check, in seconds.",
        );
        for (labels, duration) in &durations {
            series_line(
                out,
                names::INTEGRATION_CHECK_DURATION,
                labels,
                "",
                *duration,
            );
        }
    }

    /// The per-integration families that change rarely (none when per-integration series
    /// are off or there are none), each rendered again only after it changed: `up`, then
    /// status and uptime ratios.
    pub fn stable(&self) -> Vec<Arc<Stable>> {
        if !self.per_integration {
            return Vec::new();
        }
        // One renderer at a time: concurrent scrapes after a change wait for one render.
        let mut cached = self.stable.lock().unwrap_or_else(|e| e.into_inner());
        let (generations, series) = {
            let table = self.lock();
            if table.series.is_empty() {
                return Vec::new();
            }
            let generations = [table.up_generation, table.generation];
            let fresh = cached
                .iter()
                .zip(generations)
                .all(|(c, g)| c.as_ref().is_some_and(|c| c.generation == g));
            // A copy of the series only when something is rendered again; formatting (and
            // compressing) then happens without the table lock.
            let series: Vec<Series> = if fresh {
                Vec::new()
            } else {
                table.series.values().cloned().collect()
            };
            (generations, series)
        };
        let mut parts = Vec::with_capacity(2);
        for (which, generation) in generations.into_iter().enumerate() {
            if let Some(stable) = cached[which]
                .as_ref()
                .filter(|s| s.generation == generation)
            {
                parts.push(stable.clone());
                continue;
            }
            let capacity = cached[which]
                .as_ref()
                .map_or(0, |s| s.text.len() + s.text.len() / 8);
            let text = if which == 0 {
                render_up(&series, capacity)
            } else {
                render_status_and_uptime(&series, capacity)
            };
            let stable = Arc::new(Stable {
                generation,
                text,
                gzip: OnceLock::new(),
            });
            cached[which] = Some(stable.clone());
            parts.push(stable);
        }
        parts
    }
}

fn render_up(series: &[Series], capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    family(
        &mut out,
        names::INTEGRATION_UP,
        "gauge",
        "1 if the integration's last health check succeeded, 0 if it failed.",
    );
    for s in series {
        if let Some(up) = s.up {
            series_line(
                &mut out,
                names::INTEGRATION_UP,
                &s.labels,
                "",
                f64::from(up as u8),
            );
        }
    }
    out
}

fn render_status_and_uptime(series: &[Series], capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    family(
        &mut out,
        names::INTEGRATION_STATUS,
        "gauge",
        "Lifecycle status: 0 draft, 1 pending_verification, 2 active, 3 degraded, 4 failed, 5 paused.",
    );
    for s in series {
        series_line(
            &mut out,
            names::INTEGRATION_STATUS,
            &s.labels,
            "",
            f64::from(s.status),
        );
    }
    family(
        &mut out,
        names::INTEGRATION_UPTIME,
        "gauge",
        "Share of successful health checks over the window, from the health history.",
    );
    for s in series {
        for (window, ratio) in s.uptime.by_window() {
            if let Some(ratio) = ratio {
                let window = match window {
                    "1h" => ",window=\"1h\"",
                    "24h" => ",window=\"24h\"",
                    "7d" => ",window=\"7d\"",
                    _ => ",window=\"30d\"",
                };
                series_line(
                    &mut out,
                    names::INTEGRATION_UPTIME,
                    &s.labels,
                    window,
                    ratio,
                );
            }
        }
    }
    out
}

impl ChangeObserver for IntegrationGauges {
    fn committed(&self, before: Option<&Integration>, after: Option<&Integration>) {
        let Some(id) = after.or(before).map(|i| i.integration_id) else {
            return;
        };
        // Labels are built before the lock, as in `sync`.
        let fresh = after.filter(|_| self.per_integration).map(|after| {
            let labels: Arc<str> = label_set(&IntegrationLabels::from(after)).into();
            (labels, status_value(after.status))
        });
        let mut table = self.lock();
        table.changes += 1;
        if let Some(touched) = &mut table.touched {
            touched.insert(id);
        }
        if let Some(before) = before {
            table.count(&before.tenant_id, before.status, -1);
        }
        if let Some(after) = after {
            table.count(&after.tenant_id, after.status, 1);
        }
        if !self.per_integration {
            return;
        }
        let changed = match (fresh, after) {
            (None, _) => table.series.remove(&id).is_some(),
            (Some((labels, status)), Some(after)) => match table.series.get_mut(&id) {
                Some(series) if series.labels == labels && series.status == status => false,
                Some(series) => {
                    series.labels = labels;
                    series.status = status;
                    true
                }
                None => {
                    let series = Series {
                        labels,
                        tenant: after.tenant_id.as_str().into(),
                        status,
                        up: after.last_test_success,
                        duration: None,
                        uptime: Uptime::default(),
                    };
                    table.series.insert(id, series);
                    true
                }
            },
            (Some(_), None) => false,
        };
        if changed {
            table.generation += 1;
            table.up_generation += 1;
        }
    }
}

impl Table {
    fn count(&mut self, tenant: &str, status: Status, delta: i64) {
        let slot = usize::from(status_value(status));
        match self.counts.get_mut(tenant) {
            Some(counts) => counts[slot] += delta,
            None => {
                let mut counts = Counts::default();
                counts[slot] = delta;
                self.counts.insert(tenant.into(), counts);
            }
        }
    }
}

/// Appends the engine's own gauges, read at scrape time from its lock-free counters.
pub fn render_engine(out: &mut String, counters: &EngineCounters) {
    family(
        out,
        names::ACTORS,
        "gauge",
        "Monitor actors running (one per monitored integration).",
    );
    let _ = writeln!(out, "{} {}", names::ACTORS, counters.actors());
    family(
        out,
        names::ACTOR_RESTARTS_TOTAL,
        "counter",
        "Monitor actors restarted after a failure, since start.",
    );
    let _ = writeln!(
        out,
        "{} {}",
        names::ACTOR_RESTARTS_TOTAL,
        counters.restarts()
    );
}

/// This node's cluster metrics (DESIGN §9), read from its [`Ownership`] at scrape time.
pub fn render_cluster(out: &mut String, ownership: &Ownership) {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = ownership.counters();
    let gauges = [
        (
            names::CLUSTER_NODES,
            "gauge",
            "Live catalogd nodes sharing the fleet, as this node last saw them (1 on SQLite).",
            counters.nodes.load(Relaxed),
        ),
        (
            names::CLUSTER_SHARDS,
            "gauge",
            "Shards the fleet is split into (cluster.shards).",
            u64::from(ownership.shards()),
        ),
        (
            names::SHARDS_OWNED,
            "gauge",
            "Shards this node holds a live lease on and monitors.",
            ownership.owned(),
        ),
        (
            names::SHARD_TAKEOVERS_TOTAL,
            "counter",
            "Shards this node took over from another node (after it died, stalled or handed them over), since start.",
            counters.takeovers.load(Relaxed),
        ),
        (
            names::SHARD_LOSSES_TOTAL,
            "counter",
            "Shards this node lost without handing them over (lease expired or taken, or a write fenced), since start.",
            counters.losses.load(Relaxed),
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        out,
        names::FENCED_WRITES_TOTAL,
        "counter",
        "Monitor writes the database refused because this node no longer held the shard at that epoch, since start.",
    );
    for kind in WriteKind::ALL {
        let _ = writeln!(
            out,
            "{}{{kind=\"{}\"}} {}",
            names::FENCED_WRITES_TOTAL,
            kind.as_str(),
            counters.fenced(kind)
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn series_line(out: &mut String, name: &str, labels: &str, extra: &str, value: f64) {
    let _ = writeln!(out, "{name}{{{labels}{extra}}} {value}");
}

/// A row of the store, made ready for [`Series`] before the table lock is taken.
struct Prepared {
    status: u8,
    labels: Arc<str>,
    tenant: Arc<str>,
    last_test_success: Option<bool>,
}

fn label_set(row: &IntegrationLabels) -> String {
    format!(
        "tenant=\"{}\",integration=\"{}\",name=\"{}\",type=\"{}\",provider=\"{}\"",
        escape(&row.tenant_id),
        row.integration_id,
        escape(&row.name),
        escape(&row.kind),
        escape(&row.provider)
    )
}

/// Escapes a label value for the text exposition format.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// How the refresh task reads the store.
#[derive(Clone)]
pub struct Refresher {
    pub census: Census,
    pub history: HistoryStore,
    pub gauges: IntegrationGauges,
    pub clock: Arc<dyn Clock>,
    /// Counts, statuses and labels are re-read this often.
    pub refresh: Duration,
    /// Uptime ratios are recomputed this often.
    pub uptime_refresh: Duration,
}

/// Integrations read per page, and uptimes computed between two yields.
const PAGE: u32 = 1000;

impl Refresher {
    /// Runs until `stop` turns true (or its sender is dropped).
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut uptime_at: Option<Instant> = None;
            loop {
                let with_uptime = uptime_at.is_none_or(|at| at.elapsed() >= self.uptime_refresh);
                let started = Instant::now();
                match self.refresh_once(with_uptime).await {
                    Ok((integrations, uptimes)) => {
                        if with_uptime {
                            uptime_at = Some(started);
                        }
                        GaugesRefreshed {
                            integrations,
                            uptimes,
                            duration: started.elapsed(),
                        }
                        .emit();
                    }
                    Err(error) => GaugesRefreshFailed { error: &error }.emit(),
                }
                tokio::select! {
                    () = tokio::time::sleep(self.refresh) => {}
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// One pass: counts, then (when per-integration series are on) the integrations, then
    /// (when `with_uptime`) each one's uptime ratios from the health history. Returns the
    /// integrations with series and the uptimes computed.
    pub async fn refresh_once(&self, with_uptime: bool) -> Result<(usize, usize), StoreError> {
        let changes = self.gauges.changes();
        if !self.gauges.set_counts(self.census.counts().await?, changes) {
            tracing::debug!("a change raced the counts' refresh; kept the counts the changes kept");
        }
        if !self.gauges.per_integration() {
            return Ok((0, 0));
        }
        self.gauges.begin_sync();
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = self.census.page(after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|row| row.integration_id);
            rows.extend(page);
            if !full {
                break;
            }
        }
        let integrations = rows.len();
        self.gauges.sync(rows);
        if !with_uptime {
            return Ok((integrations, 0));
        }
        // One statement of at most 16 index range scans per integration (see
        // `HistoryStore::uptime`), one at a time so the pass never competes with the history
        // writer for more than one connection.
        let now = self.clock.now();
        let mut uptimes = 0;
        for (index, (id, tenant)) in self.gauges.ids().into_iter().enumerate() {
            let uptime = self.history.uptime(&tenant, id, now).await?;
            self.gauges.set_uptime(id, uptime);
            uptimes += 1;
            if index % PAGE as usize == 0 {
                tokio::task::yield_now().await;
            }
        }
        debug_assert_eq!(UPTIME_WINDOWS.len(), 4);
        Ok((integrations, uptimes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: Uuid, name: &str, status: &str) -> IntegrationLabels {
        IntegrationLabels {
            integration_id: id,
            tenant_id: "acme".into(),
            name: name.into(),
            kind: "host".into(),
            provider: "http".into(),
            status: status.into(),
            last_test_success: None,
        }
    }

    #[test]
    fn sync_removes_deleted_and_observe_never_adds() {
        let gauges = IntegrationGauges::new(true);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        gauges.sync(vec![
            row(a, "a \"quoted\"\nname", "active"),
            row(b, "b", "failed"),
        ]);
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(20));
        let mut out = String::new();
        gauges.render_into(&mut out);
        assert!(out.contains(&format!("integration=\"{a}\"")));
        assert!(out.contains("name=\"a \\\"quoted\\\"\\nname\""));
        assert!(out.contains("} 0.02\n"));
        gauges.sync(vec![row(b, "b", "failed")]);
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(20));
        let mut out = String::new();
        gauges.render_into(&mut out);
        assert!(!out.contains(&a.to_string()));
        assert!(out.contains(&format!("integration=\"{b}\"")));
    }

    #[test]
    fn cached_families_are_rendered_again_only_after_their_change() {
        let gauges = IntegrationGauges::new(true);
        let a = Uuid::new_v4();
        gauges.sync(vec![row(a, "a", "active")]);
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(5));
        let first = gauges.stable();
        // Another success changes the duration only: both cached parts are reused.
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(7));
        let same = gauges.stable();
        assert!(Arc::ptr_eq(&first[0], &same[0]) && Arc::ptr_eq(&first[1], &same[1]));
        // A flip re-renders `up` alone; a status change the status and uptime part alone.
        let timeout = CheckOutcome::Failure(catalogd_actors::FailureClass::Timeout);
        gauges.observe(a, timeout, Duration::from_millis(9));
        let flipped = gauges.stable();
        assert!(!Arc::ptr_eq(&first[0], &flipped[0]) && Arc::ptr_eq(&first[1], &flipped[1]));
        gauges.sync(vec![row(a, "a", "degraded")]);
        let degraded = gauges.stable();
        assert!(Arc::ptr_eq(&flipped[0], &degraded[0]) && !Arc::ptr_eq(&flipped[1], &degraded[1]));
        let mut out = String::new();
        gauges.render_into(&mut out);
        assert!(out.contains(&format!(
            "{}{{tenant=\"acme\",integration=\"{a}\"",
            names::INTEGRATION_UP
        )));
        assert!(out.contains("} 0\n") && out.contains("} 3\n") && out.contains("} 0.009\n"));
    }

    fn integration(name: &str, status: Status) -> Integration {
        let spec = crate::integration::IntegrationSpec {
            name: name.into(),
            description: None,
            kind: crate::integration::IntegrationType::Host,
            provider: "http".into(),
            base_url: None,
            auth_ref: None,
            configuration: Default::default(),
            environment: None,
            tags: Vec::new(),
            owner_id: None,
            health_check: Default::default(),
        };
        let mut integration = Integration::new("acme", spec, "tester", chrono::Utc::now());
        integration.status = status;
        integration
    }

    fn rendered(gauges: &IntegrationGauges) -> String {
        let mut out = String::new();
        gauges.render_into(&mut out);
        out
    }

    #[test]
    fn a_refresh_that_raced_a_change_keeps_what_the_change_did() {
        let gauges = IntegrationGauges::new(true);
        let a = integration("a", Status::Active);
        // A refresh starts reading; meanwhile `a` is created and moves to degraded.
        let changes = gauges.changes();
        gauges.begin_sync();
        gauges.committed(None, Some(&a));
        let degraded = Integration {
            status: Status::Degraded,
            ..a.clone()
        };
        gauges.committed(Some(&a), Some(&degraded));
        // What the refresh read predates both changes: its counts are not applied, and `a`'s
        // series keeps its in-memory status.
        assert!(!gauges.set_counts(Vec::new(), changes));
        gauges.sync(Vec::new());
        let out = rendered(&gauges);
        assert!(out.contains("catalogd_integrations{tenant=\"acme\",status=\"degraded\"} 1\n"));
        assert!(out.contains("catalogd_integrations{tenant=\"acme\",status=\"active\"} 0\n"));
        assert!(out.contains(&format!("integration=\"{}\"", a.integration_id)));
        // A refresh that no change raced is applied whole.
        let changes = gauges.changes();
        gauges.begin_sync();
        let count = StatusCount {
            tenant_id: "acme".into(),
            status: "failed".into(),
            count: 2,
        };
        assert!(gauges.set_counts(vec![count], changes));
        gauges.sync(Vec::new());
        let out = rendered(&gauges);
        assert!(out.contains("catalogd_integrations{tenant=\"acme\",status=\"failed\"} 2\n"));
        assert!(out.contains("catalogd_integrations{tenant=\"acme\",status=\"degraded\"} 0\n"));
        assert!(!out.contains(&a.integration_id.to_string()));
        // A creation and a deletion add and remove the series and the count at once.
        let b = integration("b", Status::Active);
        gauges.committed(None, Some(&b));
        let out = rendered(&gauges);
        assert!(out.contains("catalogd_integrations{tenant=\"acme\",status=\"active\"} 1\n"));
        assert!(out.contains(&format!("integration=\"{}\"", b.integration_id)));
        gauges.committed(Some(&b), None);
        let out = rendered(&gauges);
        assert!(out.contains("catalogd_integrations{tenant=\"acme\",status=\"active\"} 0\n"));
        assert!(!out.contains(&b.integration_id.to_string()));
    }

    #[test]
    fn per_integration_off_renders_none() {
        let gauges = IntegrationGauges::new(false);
        gauges.sync(vec![row(Uuid::new_v4(), "a", "active")]);
        let mut out = String::new();
        gauges.render_into(&mut out);
        assert!(!out.contains("catalogd_integration_"));
    }
}
