//! The supervisor: keeps exactly one monitor actor per monitored integration, matching the
//! store. It spawns the fleet at start, follows the daemon's change notifications, repairs
//! drift with a periodic reconciliation pass, and re-spawns crashed actors with backoff from
//! the stored state.
//!
//! ractor has no restart strategy of its own and its default `handle_supervisor_evt` stops the
//! supervisor when any child exits; this one overrides it. Children are kept in a typed map
//! keyed by integration id, never in ractor's global name registry.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::dependencies::DependencyGraph;
use crate::engine::EngineOptions;
use crate::lifecycle::Status;
use crate::monitor::{Monitor, MonitorArgs, MonitorContext, MonitorMsg, GONE};
use crate::ports::{CheckReport, MonitorSpec, PortError};
use crate::schedule;

/// How many integrations the initial spawn loads and spawns per message. Spawning costs
/// about 20 µs per actor, so a page holds the mailbox for roughly 20 ms plus one query;
/// notifications that arrive during start-up are handled between pages instead of after
/// the whole fleet.
pub(crate) const SPAWN_PAGE: usize = 1024;

/// How many actors of a page are being spawned at once.
const SPAWN_CONCURRENCY: usize = 64;

/// How many links of a chain of dependencies without actors here are loaded at once.
const MAX_DEPENDENCY_ROUNDS: usize = 8;

/// How long `stop` waits for the next actor to finish what it is doing (a commit in
/// progress) before it kills the rest.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) enum SupervisorMsg {
    /// The integration changed in the store (create, update, submit, pause, resume,
    /// activate): load it and start, reconfigure or stop its actor to match.
    Changed { id: Uuid, check_now: bool },
    /// The integration was deleted: stop its actor.
    Deleted { id: Uuid },
    /// A manual connection test's result, for the owning actor to apply.
    Deliver { id: Uuid, report: Box<CheckReport> },
    /// How many monitor actors are running.
    Count(RpcReplyPort<usize>),
    // Internal messages below.
    /// Time for a reconciliation pass (a timer message).
    Reconcile,
    /// The listing a reconciliation pass fetched in the background.
    Reconciled(Box<Reconciliation>),
    /// A crashed actor's backoff has elapsed.
    Restart { id: Uuid },
    /// A child committed (or adopted) this version of its row, in this status.
    VersionSeen {
        id: Uuid,
        version: i64,
        status: Status,
    },
    /// Load and spawn the next page of the initial fleet.
    SpawnPage,
    /// Page through the monitored integrations again and spawn those without an actor (the
    /// daemon took over more of the fleet).
    Rescan,
    /// The maintenance windows changed: every child asks the calendar again.
    Recalendar,
    /// Stop the actors of every integration the predicate names (the daemon gave up or lost
    /// them); the reply carries the stopped actors, so the caller can wait for them to exit.
    Release {
        releases: Box<dyn Fn(Uuid) -> bool + Send>,
        reply: RpcReplyPort<Vec<ActorCell>>,
    },
}

/// What a reconciliation pass read in the background: the monitored `(id, version)` listing,
/// and the current state of the dependencies this node has no actor for.
pub(crate) struct Reconciliation {
    listing: Result<Vec<(Uuid, i64)>, PortError>,
    remote: Vec<RemoteDependencies>,
}

/// Dependencies of one tenant read from the store: the ids asked for and what was found
/// (an id not found is gone).
struct RemoteDependencies {
    tenant_id: Arc<str>,
    asked: Vec<Uuid>,
    found: Result<Vec<(Uuid, Status, Vec<Uuid>)>, PortError>,
}

pub(crate) struct Supervisor<T> {
    context: Arc<MonitorContext<T>>,
    options: EngineOptions,
}

impl<T> Supervisor<T> {
    pub(crate) fn new(context: Arc<MonitorContext<T>>, options: EngineOptions) -> Self {
        Supervisor { context, options }
    }
}

pub(crate) struct SupervisorArgs<T> {
    /// The first page of monitored integrations, loaded by `Engine::start` so that a store
    /// that cannot list them fails the start.
    pub(crate) first_page: Vec<MonitorSpec<T>>,
    /// Set to `true` once the whole initial fleet is spawned.
    pub(crate) spawned: watch::Sender<bool>,
}

pub(crate) struct SupervisorState<T> {
    children: HashMap<Uuid, Child<T>>,
    /// Which integration each running child serves. Supervision events name actors, not
    /// integrations. A child stopped on purpose is removed from here first, so its
    /// termination event is recognised as expected.
    owners: HashMap<ActorId, Uuid>,
    /// Crash history, only for integrations whose actor crashed recently.
    restarts: HashMap<Uuid, Restarts>,
    /// The initial spawn's progress: `Some(after)` while pages remain, where `after` is
    /// the last id spawned; `None` once the whole fleet runs.
    initial: Option<Option<Uuid>>,
    /// The page `Engine::start` loaded, spawned by the first `SpawnPage`; `None` when the
    /// first page is to be loaded (a rescan).
    first_page: Option<Vec<MonitorSpec<T>>>,
    /// A rescan was asked for while a pass was running: start over when it ends.
    rescan_again: bool,
    /// The next page of the initial spawn, loading while this one spawns.
    prefetch: Option<tokio::task::JoinHandle<Result<Vec<MonitorSpec<T>>, PortError>>>,
    /// Integrations a notification was handled for during the initial spawn: that handler
    /// already spawned, reconfigured or stopped them with what it loaded, so a prefetched
    /// (possibly older) copy of them is not spawned.
    touched: HashSet<Uuid>,
    /// Manual test results for integrations without a running actor (crashed and waiting
    /// for its restart, or not spawned yet), handed to the actor when it starts. Bounded by
    /// the integrations in that state.
    deliveries: HashMap<Uuid, Box<CheckReport>>,
    reconciling: bool,
    spawned: watch::Sender<bool>,
    /// The children, what they depend on and those dependencies' statuses (DESIGN §10):
    /// how a status change reaches the integrations that depend on it, as a message.
    graph: DependencyGraph,
    /// Integrations whose place in the graph changed since the children were last told
    /// their suppression.
    graph_dirty: Vec<Uuid>,
}

impl<T> SupervisorState<T> {
    /// The integration's actor crashed and its restart is scheduled: nothing else may spawn
    /// it before the backoff has elapsed.
    fn restart_pending(&self, id: Uuid) -> bool {
        self.restarts
            .get(&id)
            .is_some_and(|restarts| restarts.pending)
    }
}

struct Child<T> {
    actor: ActorRef<MonitorMsg<T>>,
    /// The row version the child holds, compared with the store on reconciliation.
    version: i64,
    /// The suppression the child was last told of (or started with).
    suppressed_by: Arc<[Uuid]>,
}

/// What the supervisor keeps of a spec it spawns an actor for.
struct Spawned {
    id: Uuid,
    version: i64,
    tenant_id: Arc<str>,
    status: Status,
    depends_on: Arc<[Uuid]>,
    suppressed_by: Arc<[Uuid]>,
}

impl Spawned {
    fn of<T>(spec: &MonitorSpec<T>) -> Self {
        Spawned {
            id: spec.integration_id,
            version: spec.version,
            tenant_id: spec.tenant_id.clone(),
            status: spec.lifecycle.status,
            depends_on: spec.depends_on.clone(),
            suppressed_by: spec.suppressed_by.clone(),
        }
    }
}

struct Restarts {
    /// Consecutive crashes; reset once an actor has run for a while without crashing.
    attempts: u32,
    /// When the current incarnation was (re)started.
    since: Instant,
    /// A `Restart` message is scheduled.
    pending: bool,
}

#[ractor::async_trait]
impl<T: Send + Sync + 'static> Actor for Supervisor<T> {
    type Msg = SupervisorMsg;
    type State = SupervisorState<T>;
    type Arguments = SupervisorArgs<T>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs<T>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            children: HashMap::new(),
            owners: HashMap::new(),
            restarts: HashMap::new(),
            initial: Some(None),
            first_page: Some(args.first_page),
            rescan_again: false,
            prefetch: None,
            touched: HashSet::new(),
            deliveries: HashMap::new(),
            reconciling: false,
            spawned: args.spawned,
            graph: DependencyGraph::default(),
            graph_dirty: Vec::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.cast(SupervisorMsg::SpawnPage)?;
        myself.send_interval(self.options.reconcile_interval, || SupervisorMsg::Reconcile);
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Without this, ractor kills the children when the supervisor exits, possibly in the
        // middle of a commit. Stopping lets each finish its current message first.
        //
        // Every child is told at once, then waited for in turn. ractor's
        // `stop_children_and_wait` spawns a task and a timer per child instead, which at a
        // million actors is seconds of the stop. The children exit concurrently, so by the time
        // one is waited for, most after it are done: the timeout is on progress (no child
        // exited for `STOP_TIMEOUT`, say a commit hanging on a dead database), not on the
        // whole fleet, which at a million actors takes about that long to exit by itself.
        let children = myself.get_children();
        for child in &children {
            child.stop(None);
        }
        for child in children {
            if tokio::time::timeout(STOP_TIMEOUT, child.wait(None))
                .await
                .is_err()
            {
                tracing::warn!(
                    timeout = ?STOP_TIMEOUT,
                    "a monitor actor did not stop within the timeout; the rest are killed"
                );
                break;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Changed { id, check_now } => {
                if state.initial.is_some() {
                    state.touched.insert(id);
                }
                self.changed(&myself, state, id, check_now).await;
            }
            SupervisorMsg::Deleted { id } => {
                if state.initial.is_some() {
                    state.touched.insert(id);
                }
                self.stop_child(state, id);
                state.restarts.remove(&id);
                state.deliveries.remove(&id);
                if state.graph.contains(id) {
                    let affected = state.graph.affected(id);
                    state.graph.remove(id);
                    self.tell_suppression(state, affected);
                }
            }
            SupervisorMsg::Deliver { id, report } => match state.children.get(&id) {
                Some(child) => {
                    let _ = child.actor.cast(MonitorMsg::Deliver(report));
                }
                None => self.deliver_later(&myself, state, id, report).await,
            },
            SupervisorMsg::Count(reply) => {
                let _ = reply.send(state.children.len());
            }
            SupervisorMsg::Reconcile => self.start_reconciliation(&myself, state),
            SupervisorMsg::Reconciled(reconciliation) => {
                state.reconciling = false;
                let Reconciliation { listing, remote } = *reconciliation;
                self.learn_remote(state, remote);
                let dirty = std::mem::take(&mut state.graph_dirty);
                self.tell_suppression(state, dirty);
                match listing {
                    Ok(listing) => self.reconcile(&myself, state, listing).await,
                    Err(error) => tracing::warn!(%error, "reconciliation skipped"),
                }
            }
            SupervisorMsg::Restart { id } => self.restart(&myself, state, id).await,
            SupervisorMsg::VersionSeen {
                id,
                version,
                status,
            } => {
                if let Some(child) = state.children.get_mut(&id) {
                    child.version = child.version.max(version);
                }
                if state.graph.set_status(id, status) {
                    let affected = state.graph.affected(id);
                    self.tell_suppression(state, affected);
                }
            }
            SupervisorMsg::SpawnPage => self.spawn_page(&myself, state).await?,
            SupervisorMsg::Recalendar => {
                // One message per actor: windows change rarely (an operator's edit), and
                // each actor only asks the in-memory calendar.
                for child in state.children.values() {
                    let _ = child.actor.cast(MonitorMsg::Recalendar);
                }
            }
            SupervisorMsg::Rescan => {
                if state.initial.is_some() {
                    state.rescan_again = true;
                } else {
                    state.initial = Some(None);
                    state.first_page = None;
                    myself.cast(SupervisorMsg::SpawnPage)?;
                }
            }
            SupervisorMsg::Release { releases, reply } => {
                let _ = reply.send(self.release(state, releases.as_ref()));
            }
        }
        Ok(())
    }

    /// Replaces ractor's default, which stops the supervisor when any child exits.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".to_owned()))
            }
            _ => return Ok(()),
        };
        // Children stopped on purpose were already removed from `owners`.
        let Some(id) = state.owners.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.children.remove(&id);
        self.count_actors(state);
        if matches!(&event, SupervisionEvent::ActorTerminated(..)) && reason == GONE {
            // It found its integration deleted (or back to draft) when committing.
            tracing::debug!(integration_id = %id, "monitor stopped: integration gone");
            state.restarts.remove(&id);
        } else {
            self.schedule_restart(&myself, state, id, &reason);
        }
        Ok(())
    }
}

impl<T: Send + Sync + 'static> Supervisor<T> {
    /// Spawns the next page of the initial fleet, then queues the page after it.
    ///
    /// The next page loads while this one spawns (start-up is then bounded by the slower of
    /// the two, not their sum). A page may therefore be older than notifications handled
    /// between pages: the integrations they named are in `touched` and skipped here, because
    /// their handler already acted on a fresh load. One deleted after its page spawned is
    /// stopped by the `Deleted` that follows.
    async fn spawn_page(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(after) = state.initial else {
            return Ok(());
        };
        let page = if let (None, Some(first)) = (after, state.first_page.as_mut()) {
            std::mem::take(first)
        } else {
            let loaded = match state.prefetch.take() {
                Some(prefetch) => prefetch.await.unwrap_or_else(|e| {
                    Err(PortError::Unavailable(format!("page load task: {e}")))
                }),
                None => self.context.ledger.monitored_page(after, SPAWN_PAGE).await,
            };
            match loaded {
                Ok(page) => page,
                Err(error) => {
                    let retry = self.options.restart_backoff_base;
                    tracing::warn!(%error, retry_ms = retry.as_millis() as u64, "could not load the next page of integrations; retrying");
                    myself.send_after(retry, || SupervisorMsg::SpawnPage);
                    return Ok(());
                }
            }
        };
        let last = page.last().map(|spec| spec.integration_id);
        let exhausted = page.len() < SPAWN_PAGE;
        if let (Some(last), false) = (last, exhausted) {
            let ledger = self.context.ledger.clone();
            state.prefetch = Some(tokio::spawn(async move {
                ledger.monitored_page(Some(last), SPAWN_PAGE).await
            }));
        }
        let wanted = page.into_iter().filter(|spec| {
            let id = spec.integration_id;
            // A notification handled between pages may already have spawned it, or it may
            // have crashed already and be waiting for its restart.
            !state.touched.contains(&id)
                && !state.children.contains_key(&id)
                && !state.restart_pending(id)
                && spec.lifecycle.status != Status::Draft
        });
        // Several spawns at once: each waits for its actor's `pre_start` to run on a worker,
        // and one at a time the supervisor idled through every one of those hand-offs (half
        // of an actor's spawn time at 1M, measured with `engine-fleet`).
        let mut wanted = wanted.collect::<Vec<_>>().into_iter();
        let mut spawning = FuturesUnordered::new();
        loop {
            while spawning.len() < SPAWN_CONCURRENCY {
                let Some(spec) = wanted.next() else { break };
                spawning.push(self.start(myself, spec, false));
            }
            let Some((spawned, started)) = spawning.next().await else {
                break;
            };
            self.register(myself, state, spawned, started);
        }
        self.count_actors(state);
        self.refresh_dependencies(state).await;
        match last {
            Some(last) if !exhausted => {
                state.initial = Some(Some(last));
                // Back of the mailbox: whatever arrived meanwhile is handled first.
                myself.cast(SupervisorMsg::SpawnPage)?;
            }
            _ if state.rescan_again => {
                state.rescan_again = false;
                state.initial = Some(None);
                state.first_page = None;
                myself.cast(SupervisorMsg::SpawnPage)?;
            }
            _ => {
                state.initial = None;
                state.touched = HashSet::new();
                state.spawned.send_replace(true);
                tracing::info!(
                    actors = state.children.len(),
                    "initial monitor fleet spawned"
                );
            }
        }
        Ok(())
    }

    async fn spawn(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        spec: MonitorSpec<T>,
        check_now: bool,
    ) {
        let (spawned, started) = self.start(myself, spec, check_now).await;
        self.register(myself, state, spawned, started);
        self.refresh_dependencies(state).await;
    }

    /// Spawns the actor of `spec`, linked to this supervisor; [`Self::register`] records it.
    fn start(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        spec: MonitorSpec<T>,
        check_now: bool,
    ) -> impl Future<Output = (Spawned, Result<ActorRef<MonitorMsg<T>>, SpawnErr>)> + use<T> {
        let spawned = Spawned::of(&spec);
        let monitor = Monitor::new(self.context.clone());
        let args = MonitorArgs { spec, check_now };
        let supervisor = myself.get_cell();
        async move {
            let started = Monitor::spawn_linked(None, monitor, args, supervisor).await;
            (spawned, started.map(|(actor, _)| actor))
        }
    }

    /// Records a spawned actor as the integration's child (and in the dependency graph; the
    /// caller then calls [`Self::refresh_dependencies`]), or schedules a restart if its spawn
    /// failed.
    fn register(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        spawned: Spawned,
        started: Result<ActorRef<MonitorMsg<T>>, SpawnErr>,
    ) {
        let Spawned {
            id,
            version,
            tenant_id,
            status,
            depends_on,
            suppressed_by,
        } = spawned;
        match started {
            Ok(actor) => {
                state.owners.insert(actor.get_id(), id);
                if let Some(report) = state.deliveries.remove(&id) {
                    let _ = actor.cast(MonitorMsg::Deliver(report));
                }
                // Only integrations that take part in a dependency are kept in the graph.
                let involved = !depends_on.is_empty()
                    || state.graph.contains(id)
                    || state.graph.has_dependents(id);
                if involved && state.graph.set(id, tenant_id, status, depends_on) {
                    state.graph_dirty.push(id);
                }
                let child = Child {
                    actor,
                    version,
                    suppressed_by,
                };
                // A new actor is told its suppression even if its status did not change.
                state.graph_dirty.push(id);
                if let Some(previous) = state.children.insert(id, child) {
                    // Never two actors for one integration.
                    state.owners.remove(&previous.actor.get_id());
                    previous.actor.stop(None);
                }
            }
            Err(error) => {
                self.schedule_restart(myself, state, id, &format!("spawn failed: {error}"));
            }
        }
    }

    /// A manual test's result for an integration without a running actor: kept for the actor
    /// that its pending restart starts, or else for the one spawned for it now (a monitored
    /// integration always has one). Dropped when the integration turns out not to be
    /// monitored (a draft, or gone): nothing would apply it.
    async fn deliver_later(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        id: Uuid,
        report: Box<CheckReport>,
    ) {
        match state.deliveries.get(&id) {
            Some(kept) if kept.started_at > report.started_at => {}
            _ => {
                state.deliveries.insert(id, report);
            }
        }
        if state.restart_pending(id) {
            tracing::debug!(integration_id = %id, "test result kept for the actor's restart");
            return;
        }
        if state.initial.is_some() {
            state.touched.insert(id);
        }
        self.changed(myself, state, id, false).await;
        if !state.children.contains_key(&id) && !state.restart_pending(id) {
            state.deliveries.remove(&id);
            tracing::debug!(
                integration_id = %id,
                "test result for an integration that is not monitored; not applied"
            );
        }
    }

    /// Stops an actor on purpose: it is forgotten first, so it is not restarted.
    fn stop_child(&self, state: &mut SupervisorState<T>, id: Uuid) {
        if let Some(child) = state.children.remove(&id) {
            state.owners.remove(&child.actor.get_id());
            child.actor.stop(None);
            self.count_actors(state);
        }
    }

    /// Stops the actors of the integrations `releases` names, and forgets their pending
    /// restarts and deliveries: this daemon no longer monitors them.
    fn release(
        &self,
        state: &mut SupervisorState<T>,
        releases: &(dyn Fn(Uuid) -> bool + Send),
    ) -> Vec<ActorCell> {
        let ids: Vec<Uuid> = state
            .children
            .keys()
            .copied()
            .filter(|id| releases(*id))
            .collect();
        let mut stopped = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(child) = state.children.get(&id) {
                stopped.push(child.actor.get_cell());
            }
            self.stop_child(state, id);
        }
        state.restarts.retain(|id, _| !releases(*id));
        state.deliveries.retain(|id, _| !releases(*id));
        if !stopped.is_empty() {
            tracing::info!(actors = stopped.len(), "monitors released");
        }
        stopped
    }

    fn count_actors(&self, state: &SupervisorState<T>) {
        self.context.counters.set_actors(state.children.len());
    }

    async fn changed(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        id: Uuid,
        check_now: bool,
    ) {
        let spec = match self.context.ledger.load(id).await {
            Ok(Some(spec)) if spec.lifecycle.status != Status::Draft => spec,
            Ok(_) => {
                // Gone or back to draft: it suppresses nothing any more.
                if state.graph.set_status(id, Status::Draft) {
                    let affected = state.graph.affected(id);
                    self.tell_suppression(state, affected);
                }
                return self.stop_child(state, id);
            }
            Err(error) => {
                tracing::warn!(
                    integration_id = %id,
                    %error,
                    "could not load a changed integration; reconciliation will retry"
                );
                return;
            }
        };
        if let Some(child) = state.children.get_mut(&id) {
            child.version = child.version.max(spec.version);
            let involved = !spec.depends_on.is_empty()
                || state.graph.contains(id)
                || state.graph.has_dependents(id);
            let changed = involved
                && state.graph.set(
                    id,
                    spec.tenant_id.clone(),
                    spec.lifecycle.status,
                    spec.depends_on.clone(),
                );
            let _ = child.actor.cast(MonitorMsg::Reconfigure {
                spec: Box::new(spec),
                check_now,
            });
            if changed {
                state.graph_dirty.push(id);
                self.refresh_dependencies(state).await;
            }
        } else if state.restart_pending(id) {
            // The crashed actor's backoff wins; the restart loads the latest state anyway.
            tracing::debug!(integration_id = %id, "change deferred to the pending restart");
        } else {
            self.spawn(myself, state, spec, check_now).await;
            self.count_actors(state);
        }
    }

    /// Loads the dependencies the graph names but does not know (no actor here), then tells
    /// the children whose suppression changed: those in `graph_dirty` and every one that
    /// depends on them.
    async fn refresh_dependencies(&self, state: &mut SupervisorState<T>) {
        // A chain of unknown dependencies is loaded one link per round; bounded, because a
        // dependency the store cannot read now is looked for again at reconciliation.
        for _ in 0..MAX_DEPENDENCY_ROUNDS {
            let unknown = state.graph.unknown();
            if unknown.is_empty() {
                break;
            }
            let mut by_tenant: HashMap<Arc<str>, Vec<Uuid>> = HashMap::new();
            for (tenant_id, id) in unknown {
                by_tenant.entry(tenant_id).or_default().push(id);
            }
            let mut remote = Vec::with_capacity(by_tenant.len());
            for (tenant_id, asked) in by_tenant {
                let found = self.context.ledger.dependencies(&tenant_id, &asked).await;
                remote.push(RemoteDependencies {
                    tenant_id,
                    asked,
                    found,
                });
            }
            if !self.learn_remote(state, remote) {
                break;
            }
        }
        let dirty = std::mem::take(&mut state.graph_dirty);
        let mut told = HashSet::new();
        let mut affected = Vec::new();
        for id in dirty {
            if told.insert(id) {
                affected.push(id);
            }
            for dependent in state.graph.affected(id) {
                if told.insert(dependent) {
                    affected.push(dependent);
                }
            }
        }
        self.tell_suppression(state, affected);
    }

    /// Records dependencies read from the store; an id asked for and not found is gone (or
    /// of another tenant) and suppresses nothing. Their dependents are marked for telling.
    /// Returns whether every read succeeded.
    fn learn_remote(
        &self,
        state: &mut SupervisorState<T>,
        remote: Vec<RemoteDependencies>,
    ) -> bool {
        let mut complete = true;
        for RemoteDependencies {
            tenant_id,
            asked,
            found,
        } in remote
        {
            let found = match found {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(%error, "could not read dependencies; retrying at reconciliation");
                    complete = false;
                    continue;
                }
            };
            let mut missing: HashSet<Uuid> = asked.into_iter().collect();
            for (id, status, depends_on) in found {
                missing.remove(&id);
                if state.children.contains_key(&id) && state.graph.contains(id) {
                    // Its own actor's reports are newer than any read. (A monitor joins the
                    // graph only once something depends on it: then its row is read once,
                    // and its reports, handled after that read, keep it current.)
                    continue;
                }
                if state
                    .graph
                    .set(id, tenant_id.clone(), status, Arc::from(depends_on))
                {
                    state.graph_dirty.push(id);
                }
            }
            for id in missing {
                if state
                    .graph
                    .set(id, tenant_id.clone(), Status::Draft, Arc::from([]))
                {
                    state.graph_dirty.push(id);
                }
            }
        }
        let children = &state.children;
        state.graph.prune(|id| children.contains_key(&id));
        let dirty = std::mem::take(&mut state.graph_dirty);
        let affected: Vec<Uuid> = dirty
            .iter()
            .flat_map(|id| state.graph.affected(*id))
            .collect();
        state.graph_dirty = dirty;
        state.graph_dirty.extend(affected);
        complete
    }

    /// Sends each of `ids` that has an actor its suppression, if it changed since it was
    /// last told: the message between actors through which a dependent learns its
    /// dependencies' state (never a read per check).
    fn tell_suppression(&self, state: &mut SupervisorState<T>, ids: Vec<Uuid>) {
        for id in ids {
            let suppressed_by = state.graph.suppressed_by(id);
            let Some(child) = state.children.get_mut(&id) else {
                continue;
            };
            if *child.suppressed_by == *suppressed_by {
                continue;
            }
            child.suppressed_by = Arc::from(suppressed_by.as_slice());
            let _ = child
                .actor
                .cast(MonitorMsg::Suppress(suppressed_by.into_boxed_slice()));
        }
    }

    fn schedule_restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        id: Uuid,
        reason: &str,
    ) {
        let now = Instant::now();
        let restarts = state.restarts.entry(id).or_insert(Restarts {
            attempts: 0,
            since: now,
            pending: false,
        });
        if now.duration_since(restarts.since) >= self.stable_after() {
            restarts.attempts = 0;
        }
        restarts.attempts = restarts.attempts.saturating_add(1);
        restarts.pending = true;
        let attempt = restarts.attempts;
        let delay = self.restart_delay(attempt);
        self.context.counters.count_restart();
        tracing::warn!(
            integration_id = %id,
            attempt,
            delay_ms = delay.as_millis() as u64,
            reason,
            "monitor actor stopped unexpectedly; restarting it after a backoff"
        );
        myself.send_after(delay, move || SupervisorMsg::Restart { id });
    }

    fn restart_delay(&self, attempt: u32) -> std::time::Duration {
        schedule::restart_delay(
            self.options.restart_backoff_base,
            self.options.restart_backoff_max,
            attempt,
        )
    }

    /// An actor that ran this long since its last restart is considered healthy again: its
    /// next crash starts the backoff from the base. Twice the cap, so that an actor crashing
    /// at every check keeps its backoff at the cap instead of oscillating.
    fn stable_after(&self) -> std::time::Duration {
        self.options.restart_backoff_max * 2
    }

    async fn restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        id: Uuid,
    ) {
        match state.restarts.get_mut(&id) {
            // Deleted meanwhile, or already restarted by a change notification.
            None => return,
            Some(restarts) if !restarts.pending => return,
            Some(restarts) => restarts.pending = false,
        }
        if state.children.contains_key(&id) {
            return;
        }
        match self.context.ledger.load(id).await {
            Ok(Some(spec)) if spec.lifecycle.status != Status::Draft => {
                if let Some(restarts) = state.restarts.get_mut(&id) {
                    restarts.since = Instant::now();
                }
                tracing::info!(integration_id = %id, "restarting monitor actor");
                self.spawn(myself, state, spec, false).await;
                self.count_actors(state);
            }
            Ok(_) => {
                state.restarts.remove(&id);
                state.deliveries.remove(&id);
            }
            Err(error) => {
                // Not a crash of the actor: retry with the same delay, without counting it.
                let attempt = state.restarts.get_mut(&id).map_or(1, |restarts| {
                    restarts.pending = true;
                    restarts.attempts
                });
                let delay = self.restart_delay(attempt);
                tracing::warn!(integration_id = %id, %error, "could not load integration for a restart; retrying");
                myself.send_after(delay, move || SupervisorMsg::Restart { id });
            }
        }
    }

    /// Lists `(id, version)` in a background task, so a large listing never holds the
    /// supervisor's mailbox; the result comes back as [`SupervisorMsg::Reconciled`].
    fn start_reconciliation(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
    ) {
        // During the initial spawn every integration not spawned yet would look like drift.
        if state.reconciling || state.initial.is_some() {
            return;
        }
        state.reconciling = true;
        let ledger = self.context.ledger.clone();
        let myself = myself.clone();
        // Dependencies without an actor here (another node's, drafts): their status is read
        // again once per pass, which bounds how late a dependent on this node learns of it.
        let children = &state.children;
        let remote = state.graph.remote(|id| children.contains_key(&id));
        tokio::spawn(async move {
            let mut remote_read = Vec::with_capacity(remote.len());
            for (tenant_id, asked) in remote {
                let found = ledger.dependencies(&tenant_id, &asked).await;
                remote_read.push(RemoteDependencies {
                    tenant_id,
                    asked,
                    found,
                });
            }
            let listing = match ledger.monitored_versions().await {
                // Sorting a million entries takes tens of milliseconds of CPU: off the async
                // workers, which run the monitors' timers and checks.
                Ok(mut listing) => tokio::task::spawn_blocking(move || {
                    listing.sort_unstable_by_key(|&(id, _)| id);
                    listing
                })
                .await
                .map_err(|error| PortError::Unavailable(format!("sorting the listing: {error}"))),
                Err(error) => Err(error),
            };
            let _ = myself.cast(SupervisorMsg::Reconciled(Box::new(Reconciliation {
                listing,
                remote: remote_read,
            })));
        });
    }

    /// Compares the listing with the children. Every disagreement (missing actor, extra
    /// actor, older version) becomes a `Changed` notification to itself, which loads the row
    /// and decides then: the listing may be older than a notification handled meanwhile, and
    /// the load is authoritative.
    ///
    /// The listing arrives sorted by id and is binary-searched rather than hashed: no second
    /// map of a million entries. The comparison yields to the runtime every few thousand
    /// entries, so that a large fleet's pass does not hold a worker thread (and the checks
    /// scheduled on it) for hundreds of milliseconds.
    async fn reconcile(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        listing: Vec<(Uuid, i64)>,
    ) {
        let started = Instant::now();
        let mut drift = Vec::new();
        let mut listed_children = 0;
        for (index, &(id, version)) in listing.iter().enumerate() {
            yield_every_chunk(index).await;
            match state.children.get(&id) {
                Some(child) => {
                    listed_children += 1;
                    if child.version < version {
                        drift.push(id);
                    }
                }
                None if state.restart_pending(id) => {}
                None => drift.push(id),
            }
        }
        // Only when some child was not listed is it worth searching for which.
        if listed_children < state.children.len() {
            for (index, id) in state.children.keys().enumerate() {
                yield_every_chunk(index).await;
                if listing.binary_search_by_key(id, |(id, _)| *id).is_err() {
                    drift.push(*id);
                }
            }
        }
        tracing::debug!(
            integrations = listing.len(),
            drift = drift.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reconciliation pass"
        );
        let now = Instant::now();
        let stable_after = self.stable_after();
        state
            .restarts
            .retain(|_, r| r.pending || now.duration_since(r.since) < stable_after);
        if !drift.is_empty() {
            tracing::info!(drift = drift.len(), "reconciliation found drift; reloading");
        }
        for id in drift {
            let _ = myself.cast(SupervisorMsg::Changed {
                id,
                check_now: false,
            });
        }
    }
}

/// Lets other tasks on this worker thread run once every few thousand iterations of a long
/// loop inside a handler. The supervisor's own mailbox still waits: the handler resumes
/// before any other message of this actor is handled.
async fn yield_every_chunk(index: usize) {
    const CHUNK: usize = 8192;
    if index % CHUNK == CHUNK - 1 {
        tokio::task::yield_now().await;
    }
}
