//! Gauges read from the store rather than counted: `catalogd_integrations{tenant,status}` and
//! the per-integration series (`catalogd_integration_*`).
//!
//! The per-integration series follow the info-metric pattern (DESIGN §7): `up`, `status`,
//! `check_duration_seconds` and `uptime_ratio{window}` are labelled `tenant` and
//! `integration` (the id) only, and one `catalogd_integration_info{tenant,integration,name,
//! type,provider} 1` per integration carries the rest, for `group_left` joins. A label that
//! every series repeated would cost its bytes 8 times per integration; only the id has to.
//!
//! They live in one table per daemon, rendered straight into the `/metrics` text instead of
//! going through the `metrics` recorder, for two reasons:
//!
//! - **No stale series.** The refresh task replaces the set of integrations wholesale from the
//!   store, so a deleted integration's series disappear at the next refresh; the recorder has
//!   no way to remove one series.
//! - **Render cost.** Each integration's label sets are escaped once, when it is read from the
//!   store, and rendering is a copy of them per series (see the cardinality budget in README).
//!   The families that change rarely (`info`: when the set or a name changes; `status`: a
//!   transition; `uptime_ratio`: the uptime pass; `up`: when a check's outcome flips) are each
//!   rendered, and gzip-compressed, once per change ([`Stable`]) rather than once per scrape;
//!   only the last duration, which every check result updates, is rendered at each scrape.
//!
//! **Size.** Every family lists its integrations sorted by (tenant, id): ids are UUIDv7, so
//! neighbours share their timestamp prefix and DEFLATE encodes that part of each id as a short
//! back-reference; in hash order every id is a fresh 36 characters. Values carry no needless
//! digits: a duration is rounded to the microsecond, an uptime ratio to 7 decimals (one check
//! of a 30 d window at the 1 s minimum interval is 3.9e-7, so every distinct ratio stays
//! distinct), and a whole number is printed without a fraction (`1`, not `1.0`).
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

use bytes::Bytes;
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

/// Decimals of a rendered uptime ratio: enough to tell apart two ratios that differ by one
/// check in the longest window at the shortest interval (30 d at 1 s: 1/2,592,000 ≈ 3.9e-7,
/// and 7 decimals round by at most 5e-8).
const UPTIME_DECIMALS: usize = 7;

/// One integration's series. Cheap to clone (the label sets are shared), so renders copy the
/// table out and format it without the lock that every check result takes.
#[derive(Debug, Clone)]
struct Series {
    /// `tenant="…",integration="…"`, escaped: the labels of every family.
    labels: Arc<str>,
    /// `name="…",type="…",provider="…"`, escaped: what `catalogd_integration_info` adds.
    info: Arc<str>,
    tenant: Arc<str>,
    status: u8,
    up: Option<bool>,
    /// The last check's duration in whole microseconds: finer is noise (a check's own timing
    /// jitters by more), coarser would flatten the sub-millisecond checks of a local target.
    duration: Option<u64>,
    uptime: Uptime,
}

/// Ids and their label sets in the order every family lists them: by (tenant, id).
type Order = Arc<[(Uuid, Arc<str>)]>;

/// Integrations of one tenant by status, indexed by [`status_value`].
type Counts = [i64; Status::ALL.len()];

/// The per-integration families cached between their changes, in rendering order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Info = 0,
    Up = 1,
    Status = 2,
    Uptime = 3,
}

impl Family {
    const ALL: [Family; 4] = [Family::Info, Family::Up, Family::Status, Family::Uptime];
}

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
    /// One counter per [`Family`], bumped whenever that family's text changes: the set of
    /// integrations changes all of them; a name only `info`, a status only `status`, and so on.
    generations: [u64; Family::ALL.len()],
    /// Ids and label sets sorted by (tenant, id), kept until the set or a label set changes:
    /// the durations rendered at every scrape follow it instead of sorting 100k entries.
    order: Option<Order>,
}

impl Table {
    fn bump(&mut self, family: Family) {
        self.generations[family as usize] += 1;
    }

    /// The set of integrations (or an id's label set) changed: every family's text did.
    fn bump_all(&mut self) {
        for family in Family::ALL {
            self.bump(family);
        }
        self.order = None;
    }

    /// Ids and label sets sorted by (tenant, id), the order every family lists them in.
    fn order(&mut self) -> Order {
        if let Some(order) = &self.order {
            return order.clone();
        }
        let mut sorted: Vec<(&Arc<str>, Uuid, Arc<str>)> = self
            .series
            .iter()
            .map(|(id, s)| (&s.tenant, *id, s.labels.clone()))
            .collect();
        sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let order: Order = sorted
            .into_iter()
            .map(|(_, id, labels)| (id, labels))
            .collect();
        self.order = Some(order.clone());
        order
    }

    /// The series in [`Self::order`].
    fn sorted(&mut self) -> Vec<Series> {
        let order = self.order();
        order
            .iter()
            .filter_map(|(id, _)| self.series.get(id).cloned())
            .collect()
    }
}

/// One per-integration family that changes rarely, rendered once per generation of the table
/// ([`Table::generations`]) and compressed on first demand.
#[derive(Debug)]
pub struct Stable {
    generation: u64,
    text: Bytes,
    gzip: OnceLock<Vec<Part>>,
}

impl Stable {
    /// The exposition text; cloning it shares the buffer.
    pub fn text(&self) -> &Bytes {
        &self.text
    }

    /// The text as gzip [`Part`]s, once some scrape compressed it (see
    /// [`super::Exporter::render_gzip`], which compresses what is missing in parallel).
    pub fn gzip(&self) -> Option<&[Part]> {
        self.gzip.get().map(Vec::as_slice)
    }

    /// Keeps `parts` as this text compressed (a concurrent scrape may have done it first:
    /// either result is the same text).
    pub fn set_gzip(&self, parts: Vec<Part>) -> &[Part] {
        self.gzip.get_or_init(|| parts)
    }
}

/// The store-derived gauges of one daemon. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IntegrationGauges {
    per_integration: bool,
    table: Arc<Mutex<Table>>,
    /// The cached families, indexed by [`Family`].
    stable: Arc<Mutex<[Option<Arc<Stable>>; Family::ALL.len()]>>,
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
            series.duration = Some(micros(latency));
            // A first check is the whole history of every window, until the uptime pass
            // computes the ratios from the stored results.
            let first = series.uptime == Uptime::default();
            if first {
                series.uptime = Uptime::first_check(success);
            }
            let up_changed = series.up != Some(success);
            series.up = Some(success);
            if first {
                table.bump(Family::Uptime);
            }
            if up_changed {
                // `up` is cached on its own: it changes when a check's outcome flips, far
                // less often than every check, and a flip re-renders only this family.
                table.bump(Family::Up);
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
            .map(|row| (row.integration_id, Prepared::of(&row)))
            .collect();
        let mut table = self.lock();
        // What changed while the store was read is newer in memory than in `rows`.
        let touched = table.touched.take().unwrap_or_default();
        fresh.retain(|id, _| !touched.contains(id));
        let before = table.series.len();
        table
            .series
            .retain(|id, _| fresh.contains_key(id) || touched.contains(id));
        let mut set_changed = table.series.len() != before;
        let mut changed = [false; Family::ALL.len()];
        for (id, row) in fresh.drain() {
            let Prepared {
                status,
                labels,
                info,
                tenant,
                last_test_success,
            } = row;
            match table.series.get_mut(&id) {
                Some(series) => {
                    if series.status != status {
                        series.status = status;
                        changed[Family::Status as usize] = true;
                    }
                    if series.labels != labels {
                        series.labels = labels;
                        series.tenant = tenant;
                        set_changed = true;
                    }
                    if series.info != info {
                        series.info = info;
                        changed[Family::Info as usize] = true;
                    }
                    if series.up.is_none() && last_test_success.is_some() {
                        series.up = last_test_success;
                        changed[Family::Up as usize] = true;
                    }
                }
                None => {
                    set_changed = true;
                    table.series.insert(
                        id,
                        Series {
                            labels,
                            info,
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
        if set_changed {
            table.bump_all();
        } else {
            for family in Family::ALL {
                if changed[family as usize] {
                    table.bump(family);
                }
            }
        }
    }

    pub fn set_uptime(&self, id: Uuid, uptime: Uptime) {
        self.set_uptimes([(id, uptime)]);
    }

    /// [`Self::set_uptime`] for many, under one lock.
    pub fn set_uptimes(&self, uptimes: impl IntoIterator<Item = (Uuid, Uptime)>) {
        let mut table = self.lock();
        let mut changed = false;
        for (id, uptime) in uptimes {
            if let Some(series) = table.series.get_mut(&id) {
                if series.uptime != uptime {
                    series.uptime = uptime;
                    changed = true;
                }
            }
        }
        if changed {
            table.bump(Family::Uptime);
        }
    }

    /// The ids of every integration with series, sorted, for the uptime pass.
    fn ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.lock().series.keys().copied().collect();
        // In id order, a chunk's index ranges lie close together in the history's tables.
        ids.sort_unstable();
        ids
    }

    /// Appends `catalogd_integrations` and, when on, the per-integration families.
    pub fn render_into(&self, out: &mut String) {
        self.render_live(out);
        for stable in self.stable() {
            // Rendered by us from `&str`s: always UTF-8.
            out.push_str(std::str::from_utf8(stable.text()).unwrap_or_default());
        }
    }

    /// Appends `catalogd_integrations` and, when on, the per-integration family every check
    /// result changes (the last duration).
    pub fn render_live(&self, out: &mut String) {
        // Copied out under the lock (the durations as plain numbers, in the cached order),
        // formatted without it.
        type Copied = (Vec<(Arc<str>, Counts)>, Option<(Order, Vec<Option<u64>>)>);
        let (counts, durations): Copied = {
            let mut table = self.lock();
            let durations = (self.per_integration && !table.series.is_empty()).then(|| {
                let order = table.order();
                let durations = order
                    .iter()
                    .map(|(id, _)| table.series.get(id).and_then(|s| s.duration))
                    .collect();
                (order, durations)
            });
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
        let Some((order, durations)) = durations else {
            return;
        };
        if durations.iter().all(Option::is_none) {
            return;
        }
        out.reserve(order.len() * (names::INTEGRATION_CHECK_DURATION.len() + 72));
        family(
            out,
            names::INTEGRATION_CHECK_DURATION,
            "gauge",
            "Duration of the integration's last health check, in seconds.",
        );
        for ((_, labels), duration) in order.iter().zip(durations) {
            if let Some(duration) = duration {
                line_start(out, names::INTEGRATION_CHECK_DURATION, labels);
                out.push_str("} ");
                push_micros(out, duration);
                out.push('\n');
            }
        }
    }

    /// The per-integration families that change rarely (none when per-integration series
    /// are off or there are none), each rendered again only after it changed, in [`Family`]
    /// order: info, up, status, uptime ratios.
    pub fn stable(&self) -> Vec<Arc<Stable>> {
        if !self.per_integration {
            return Vec::new();
        }
        // One renderer at a time: concurrent scrapes after a change wait for one render.
        let mut cached = self.stable.lock().unwrap_or_else(|e| e.into_inner());
        let (generations, series) = {
            let mut table = self.lock();
            if table.series.is_empty() {
                return Vec::new();
            }
            let generations = table.generations;
            let fresh = cached
                .iter()
                .zip(generations)
                .all(|(c, g)| c.as_ref().is_some_and(|c| c.generation == g));
            // A copy of the series only when something is rendered again; sorting,
            // formatting (and compressing) then happen without the table lock.
            let series = if fresh { Vec::new() } else { table.sorted() };
            (generations, series)
        };
        let stale: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|f| {
                cached[*f as usize]
                    .as_ref()
                    .is_none_or(|s| s.generation != generations[*f as usize])
            })
            .collect();
        // Families rendered again are rendered side by side (a new integration changes all
        // four, ~80 MB of text at 100k integrations).
        let rendered: Vec<(Family, String)> = std::thread::scope(|scope| {
            let renders: Vec<_> = stale
                .iter()
                .map(|&family| {
                    // Last render's size, plus room to grow, so the text is not copied as it
                    // grows.
                    let capacity = cached[family as usize]
                        .as_ref()
                        .map_or(0, |s| s.text.len() + s.text.len() / 8);
                    let series = &series;
                    scope.spawn(move || {
                        let mut out = String::with_capacity(capacity);
                        render_family(&mut out, family, series);
                        (family, out)
                    })
                })
                .collect();
            renders
                .into_iter()
                .filter_map(|render| render.join().ok())
                .collect()
        });
        for (family, text) in rendered {
            cached[family as usize] = Some(Arc::new(Stable {
                generation: generations[family as usize],
                text: Bytes::from(text),
                gzip: OnceLock::new(),
            }));
        }
        cached.iter().flatten().cloned().collect()
    }
}

/// Appends `family`'s HELP, TYPE and lines for `series` (sorted by tenant and id).
fn render_family(out: &mut String, which: Family, series: &[Series]) {
    match which {
        Family::Info => {
            family(
                out,
                names::INTEGRATION_INFO,
                "gauge",
                "Always 1: the integration's name, type and provider, for joins on (tenant, integration).",
            );
            for s in series {
                line_start(out, names::INTEGRATION_INFO, &s.labels);
                out.push(',');
                out.push_str(&s.info);
                out.push_str("} 1\n");
            }
        }
        Family::Up => {
            family(
                out,
                names::INTEGRATION_UP,
                "gauge",
                "1 if the integration's last health check succeeded, 0 if it failed.",
            );
            for s in series {
                if let Some(up) = s.up {
                    line_start(out, names::INTEGRATION_UP, &s.labels);
                    out.push_str(if up { "} 1\n" } else { "} 0\n" });
                }
            }
        }
        Family::Status => {
            family(
                out,
                names::INTEGRATION_STATUS,
                "gauge",
                "Lifecycle status: 0 draft, 1 pending_verification, 2 active, 3 degraded, 4 failed, 5 paused.",
            );
            for s in series {
                line_start(out, names::INTEGRATION_STATUS, &s.labels);
                let _ = writeln!(out, "}} {}", s.status);
            }
        }
        Family::Uptime => {
            family(
                out,
                names::INTEGRATION_UPTIME,
                "gauge",
                "Share of successful health checks over the window, from the health history.",
            );
            for s in series {
                for (window, ratio) in s.uptime.by_window() {
                    if let Some(ratio) = ratio {
                        line_start(out, names::INTEGRATION_UPTIME, &s.labels);
                        out.push_str(match window {
                            "1h" => ",window=\"1h\"} ",
                            "24h" => ",window=\"24h\"} ",
                            "7d" => ",window=\"7d\"} ",
                            _ => ",window=\"30d\"} ",
                        });
                        push_rounded(out, ratio, UPTIME_DECIMALS);
                        out.push('\n');
                    }
                }
            }
        }
    }
}

impl ChangeObserver for IntegrationGauges {
    fn committed(&self, before: Option<&Integration>, after: Option<&Integration>) {
        let Some(id) = after.or(before).map(|i| i.integration_id) else {
            return;
        };
        // Labels are built before the lock, as in `sync`.
        let fresh = after
            .filter(|_| self.per_integration)
            .map(|after| Prepared::of(&IntegrationLabels::from(after)));
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
        match fresh {
            None => {
                if table.series.remove(&id).is_some() {
                    table.bump_all();
                }
            }
            Some(fresh) => match table.series.get_mut(&id) {
                Some(series) => {
                    let status = series.status != fresh.status;
                    let info = series.info != fresh.info;
                    let labels = series.labels != fresh.labels;
                    series.status = fresh.status;
                    series.info = fresh.info;
                    if labels {
                        series.labels = fresh.labels;
                        series.tenant = fresh.tenant;
                        table.bump_all();
                    } else {
                        if status {
                            table.bump(Family::Status);
                        }
                        if info {
                            table.bump(Family::Info);
                        }
                    }
                }
                None => {
                    let series = Series {
                        labels: fresh.labels,
                        info: fresh.info,
                        tenant: fresh.tenant,
                        status: fresh.status,
                        up: fresh.last_test_success,
                        duration: None,
                        uptime: Uptime::default(),
                    };
                    table.series.insert(id, series);
                    table.bump_all();
                }
            },
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

/// Appends the engine's own gauges, read at scrape time from its lock-free counters, and
/// with `per_integration` (`metrics.per_integration`) the sparse suppressed and maintenance
/// series.
pub fn render_engine(out: &mut String, counters: &EngineCounters, per_integration: bool) {
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
    // DESIGN §10, counted by this node's monitors (a cluster's total is the sum over nodes).
    for (name, help, value) in [
        (
            names::INTEGRATIONS_FLAPPING,
            "Integrations monitored here that are flapping (their healthy/unhealthy events held back).",
            counters.flapping(),
        ),
        (
            names::INTEGRATIONS_SUPPRESSED,
            "Integrations monitored here whose failures a degraded or failed dependency suppresses.",
            counters.suppressed(),
        ),
        (
            names::INTEGRATIONS_IN_MAINTENANCE,
            "Integrations monitored here that are in a maintenance window.",
            counters.in_maintenance(),
        ),
    ] {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    if !per_integration {
        return;
    }
    // Sparse: a series only for an integration that is suppressed (or in maintenance) now,
    // so alert rules can leave it out (`unless on (tenant, integration)`) at the cost of no
    // series for the rest.
    for (name, help, listed) in [
        (
            names::INTEGRATION_SUPPRESSED,
            "1 for each integration monitored here whose failures a degraded or failed dependency suppresses.",
            counters.suppressed_integrations(),
        ),
        (
            names::INTEGRATION_MAINTENANCE,
            "1 for each integration monitored here that is in a maintenance window.",
            counters.maintenance_integrations(),
        ),
    ] {
        family(out, name, "gauge", help);
        for (tenant, id) in listed {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",integration=\"{id}\"}} 1",
                escape(&tenant)
            );
        }
    }
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

/// `name{labels`: the caller appends any further label, `} ` and the value.
fn line_start(out: &mut String, name: &str, labels: &str) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
}

/// Appends `value` rounded to `decimals` places, without trailing zeros: `1`, `0.25`,
/// `0.001234` (Prometheus parses any float; the shortest text compresses best).
fn push_rounded(out: &mut String, value: f64, decimals: usize) {
    // Most ratios are exactly 1 (or 0): no formatting machinery for them.
    if value == 1.0 || value == 0.0 {
        out.push(if value == 1.0 { '1' } else { '0' });
        return;
    }
    if !value.is_finite() {
        // Not produced by durations or ratios; spelled as the text format wants if ever.
        out.push_str(if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        });
        return;
    }
    let start = out.len();
    let _ = write!(out, "{value:.decimals$}");
    if out[start..].contains('.') {
        let trimmed = out[start..]
            .trim_end_matches('0')
            .trim_end_matches('.')
            .len();
        out.truncate(start + trimmed);
    }
    if &out[start..] == "-0" {
        out.truncate(start);
        out.push('0');
    }
}

/// `duration` in whole microseconds, rounded to the nearest.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX)
}

/// Appends `micros` microseconds as seconds, without trailing zeros: `0.001234`, `0.02`, `12`.
fn push_micros(out: &mut String, micros: u64) {
    let (seconds, fraction) = (micros / 1_000_000, micros % 1_000_000);
    let _ = write!(out, "{seconds}");
    if fraction == 0 {
        return;
    }
    let mut digits = [b'0'; 6];
    let mut rest = fraction;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let used = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
    out.push('.');
    for digit in &digits[..used] {
        out.push(char::from(*digit));
    }
}

/// A row of the store, made ready for [`Series`] before the table lock is taken.
struct Prepared {
    status: u8,
    labels: Arc<str>,
    info: Arc<str>,
    tenant: Arc<str>,
    last_test_success: Option<bool>,
}

impl Prepared {
    fn of(row: &IntegrationLabels) -> Self {
        Prepared {
            status: Status::from_str(&row.status).map_or(0, status_value),
            labels: format!(
                "tenant=\"{}\",integration=\"{}\"",
                escape(&row.tenant_id),
                row.integration_id
            )
            .into(),
            info: format!(
                "name=\"{}\",type=\"{}\",provider=\"{}\"",
                escape(&row.name),
                escape(&row.kind),
                escape(&row.provider)
            )
            .into(),
            tenant: row.tenant_id.as_str().into(),
            last_test_success: row.last_test_success,
        }
    }
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

/// The wait after a pass that took `took`: `refresh`, or nine times the pass when that is
/// longer, so the passes take at most a tenth of the daemon's time however large the fleet
/// (at a million integrations a pass reads every row and takes seconds: 5 s on PostgreSQL
/// on the benchmark box, a quarter of the time at the 15 s default, which bench F8's list
/// throughput paid for). Only other writers' changes wait for a pass (this daemon's own
/// reach the table at once), so at that size they show up to about a minute late.
fn pause(refresh: Duration, took: Duration) -> Duration {
    refresh.max(took.saturating_mul(9))
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

/// Integrations whose uptimes one statement reads: the ids are bound once each, so this
/// stays far below SQLite's 32,766 bound parameters.
const UPTIME_CHUNK: usize = 500;

/// Integrations read per page, and uptimes computed between two yields.
const PAGE: u32 = 1000;

impl Refresher {
    /// Runs until `stop` turns true (or its sender is dropped), starting once `after`
    /// completes.
    ///
    /// The daemon passes the engine's initial spawn as `after`: the start-up read (while the
    /// engine spawns) has just set the counts and series, and the first pass (every row again,
    /// then every integration's uptime ratios) would otherwise compete with spawning the
    /// fleet for the cores and SQLite's connections (a tenth of start-up's CPU at 100k).
    pub fn spawn(
        self,
        after: impl std::future::Future<Output = ()> + Send + 'static,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            tokio::select! {
                () = after => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            let mut uptime_at: Option<Instant> = None;
            loop {
                let with_uptime = uptime_at.is_none_or(|at| at.elapsed() >= self.uptime_refresh);
                let started = Instant::now();
                // A pass only reads: on a stop it is dropped where it is, not finished (at a
                // million integrations a pass takes seconds, which a SIGTERM would wait for).
                let pass = tokio::select! {
                    pass = self.refresh_once(with_uptime) => pass,
                    _ = stop.wait_for(|stop| *stop) => return,
                };
                match pass {
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
                    () = tokio::time::sleep(pause(self.refresh, started.elapsed())) => {}
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
        // One statement per chunk of integrations (see `HistoryStore::uptimes`), one at a
        // time so the pass never competes with the history writer for more than one
        // connection. A statement per integration cost a worker round trip and the rollup
        // marks' read each: at a million integrations, 3,300 statements a second.
        let now = self.clock.now();
        let mut uptimes = 0;
        let ids = self.gauges.ids();
        for chunk in ids.chunks(UPTIME_CHUNK) {
            let read = self.history.uptimes(chunk, now).await?;
            uptimes += read.len();
            self.gauges.set_uptimes(read);
            tokio::task::yield_now().await;
        }
        debug_assert_eq!(UPTIME_WINDOWS.len(), 4);
        Ok((integrations, uptimes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_take_at_most_a_tenth_of_the_time() {
        let refresh = Duration::from_secs(15);
        // (the pass took, the wait after it)
        for (took, wait) in [
            (0, 15_000),
            (100, 15_000),
            (1_666, 15_000),
            (5_000, 45_000),
            (10_000, 90_000),
        ] {
            let took = Duration::from_millis(took);
            let waited = pause(refresh, took);
            assert_eq!(waited, Duration::from_millis(wait), "after {took:?}");
            let share = took.as_secs_f64() / (took + waited).as_secs_f64();
            assert!(
                share <= 0.1 + 1e-9,
                "a pass of {took:?} is {share} of the time"
            );
        }
    }

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
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        gauges.sync(vec![
            row(a, "a \"quoted\"\nname", "active"),
            row(b, "b", "failed"),
        ]);
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(20));
        let mut out = String::new();
        gauges.render_into(&mut out);
        assert!(out.contains(&format!("integration=\"{a}\"")));
        assert!(out.contains(&format!(
            "catalogd_integration_info{{tenant=\"acme\",integration=\"{a}\",name=\"a \\\"quoted\\\"\\nname\",type=\"host\",provider=\"http\"}} 1\n"
        )));
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
        let a = Uuid::now_v7();
        gauges.sync(vec![row(a, "a", "active")]);
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(5));
        let first = gauges.stable();
        assert_eq!(first.len(), Family::ALL.len());
        let same_as = |before: &[Arc<Stable>], after: &[Arc<Stable>]| -> Vec<bool> {
            before
                .iter()
                .zip(after)
                .map(|(b, a)| Arc::ptr_eq(b, a))
                .collect()
        };
        // Another success changes the duration only: every cached family is reused.
        gauges.observe(a, CheckOutcome::Success, Duration::from_millis(7));
        let same = gauges.stable();
        assert_eq!(same_as(&first, &same), [true, true, true, true]);
        // A flip re-renders `up` alone, a status change `status` alone, a rename `info` alone.
        let timeout = CheckOutcome::Failure(catalogd_actors::FailureClass::Timeout);
        gauges.observe(a, timeout, Duration::from_millis(9));
        let flipped = gauges.stable();
        assert_eq!(same_as(&same, &flipped), [true, false, true, true]);
        gauges.sync(vec![row(a, "a", "degraded")]);
        let degraded = gauges.stable();
        assert_eq!(same_as(&flipped, &degraded), [true, true, false, true]);
        gauges.sync(vec![row(a, "renamed", "degraded")]);
        let renamed = gauges.stable();
        assert_eq!(same_as(&degraded, &renamed), [false, true, true, true]);
        let uptime = Uptime {
            hour: Some(0.5),
            ..Uptime::first_check(true)
        };
        gauges.set_uptime(a, uptime);
        let recomputed = gauges.stable();
        assert_eq!(same_as(&renamed, &recomputed), [true, true, true, false]);
        // A new integration changes every family.
        gauges.sync(vec![
            row(a, "renamed", "degraded"),
            row(Uuid::now_v7(), "b", "active"),
        ]);
        assert_eq!(same_as(&recomputed, &gauges.stable()), [false; 4]);
        let out = rendered(&gauges);
        let labels = format!("{{tenant=\"acme\",integration=\"{a}\"}}");
        for line in [
            format!("{}{labels} 0\n", names::INTEGRATION_UP),
            format!("{}{labels} 3\n", names::INTEGRATION_STATUS),
            format!("{}{labels} 0.009\n", names::INTEGRATION_CHECK_DURATION),
        ] {
            assert!(out.contains(&line), "{line} missing:\n{out}");
        }
        assert!(out.contains(",window=\"1h\"} 0.5\n") && out.contains(",window=\"30d\"} 1\n"));
    }

    /// The info-metric pattern: one `info` series per integration carries name, type and
    /// provider; every other per-integration series carries `tenant` and `integration` only
    /// (plus `window`), so a join is the only way to them, and every family lists the
    /// integrations sorted by (tenant, id).
    #[test]
    fn info_carries_the_names_and_every_other_series_only_tenant_and_id() {
        let gauges = IntegrationGauges::new(true);
        let mut rows = Vec::new();
        for tenant in ["zeta", "acme"] {
            for i in 0..50 {
                rows.push(IntegrationLabels {
                    tenant_id: tenant.into(),
                    ..row(Uuid::now_v7(), &format!("n{i}"), "active")
                });
            }
        }
        // Hash order in, sorted order out.
        rows.reverse();
        gauges.sync(rows.clone());
        for (i, row) in rows.iter().enumerate() {
            gauges.observe(
                row.integration_id,
                CheckOutcome::Success,
                Duration::from_micros(1000 + i as u64),
            );
        }
        let out = rendered(&gauges);
        let mut expected: Vec<(String, Uuid)> = rows
            .iter()
            .map(|r| (r.tenant_id.clone(), r.integration_id))
            .collect();
        expected.sort();
        let families = [
            names::INTEGRATION_INFO,
            names::INTEGRATION_UP,
            names::INTEGRATION_STATUS,
            names::INTEGRATION_CHECK_DURATION,
            names::INTEGRATION_UPTIME,
        ];
        for family in families {
            let lines: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .collect();
            let per = if family == names::INTEGRATION_UPTIME {
                4
            } else {
                1
            };
            assert_eq!(lines.len(), rows.len() * per, "{family}");
            let mut order = Vec::new();
            for line in &lines {
                let labels = &line[family.len() + 1..line.rfind('}').unwrap()];
                let keys: Vec<&str> = labels
                    .split(',')
                    .map(|pair| pair.split_once('=').unwrap().0)
                    .collect();
                let expected_keys: &[&str] = match family {
                    names::INTEGRATION_INFO => {
                        &["tenant", "integration", "name", "type", "provider"]
                    }
                    names::INTEGRATION_UPTIME => &["tenant", "integration", "window"],
                    _ => &["tenant", "integration"],
                };
                assert_eq!(keys, expected_keys, "{line}");
                let tenant = labels.split('"').nth(1).unwrap().to_owned();
                let id: Uuid = labels.split('"').nth(3).unwrap().parse().unwrap();
                if order.last() != Some(&(tenant.clone(), id)) {
                    order.push((tenant, id));
                }
            }
            assert_eq!(
                order, expected,
                "{family} lists integrations sorted by (tenant, id)"
            );
        }
        let row = &rows[7];
        assert!(out.contains(&format!(
            "catalogd_integration_info{{tenant=\"{}\",integration=\"{}\",name=\"{}\",type=\"host\",provider=\"http\"}} 1\n",
            row.tenant_id, row.integration_id, row.name
        )));
        // Each family's HELP and TYPE once.
        for family in families {
            assert_eq!(out.matches(&format!("# TYPE {family} gauge\n")).count(), 1);
        }
    }

    #[test]
    fn values_carry_no_needless_digits_and_lose_no_meaningful_ones() {
        let cases: [(f64, usize, &str); 8] = [
            (1.0, UPTIME_DECIMALS, "1"),
            (0.0, UPTIME_DECIMALS, "0"),
            (0.5, UPTIME_DECIMALS, "0.5"),
            // 287 of 288 checks.
            (287.0 / 288.0, UPTIME_DECIMALS, "0.9965278"),
            // One failed check in 30 days at a 1 s interval stays below 1.
            (1.0 - 1.0 / 2_592_000.0, UPTIME_DECIMALS, "0.9999996"),
            (0.000_000_04, UPTIME_DECIMALS, "0"),
            (-0.000_000_04, UPTIME_DECIMALS, "0"),
            (f64::NAN, UPTIME_DECIMALS, "NaN"),
        ];
        for (value, decimals, text) in cases {
            let mut out = String::new();
            push_rounded(&mut out, value, decimals);
            assert_eq!(out, text, "{value}");
        }
        let durations = [
            (Duration::from_nanos(1_234_567), "0.001235"),
            (Duration::from_nanos(1_234_499), "0.001234"),
            (Duration::from_millis(20), "0.02"),
            (Duration::from_secs(12), "12"),
            (Duration::from_micros(30_000_001), "30.000001"),
            (Duration::from_nanos(400), "0"),
        ];
        for (duration, text) in durations {
            let mut out = String::new();
            push_micros(&mut out, micros(duration));
            assert_eq!(out, text, "{duration:?}");
        }
        // Neighbouring ratios of the longest window stay apart.
        let (mut a, mut b) = (String::new(), String::new());
        push_rounded(&mut a, 1_000_000.0 / 2_592_000.0, UPTIME_DECIMALS);
        push_rounded(&mut b, 1_000_001.0 / 2_592_000.0, UPTIME_DECIMALS);
        assert_ne!(a, b);
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
            depends_on: Vec::new(),
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
