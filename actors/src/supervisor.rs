//! The supervisor: keeps exactly one monitor actor per monitored integration, matching the
//! store. It spawns the fleet at start, follows the daemon's change notifications, repairs
//! drift with a periodic reconciliation pass, and re-spawns crashed actors with backoff from
//! the stored state.
//!
//! ractor has no restart strategy of its own and its default `handle_supervisor_evt` stops the
//! supervisor when any child exits; this one overrides it. Children are kept in a typed map
//! keyed by integration id, never in ractor's global name registry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::engine::EngineOptions;
use crate::lifecycle::Status;
use crate::monitor::{Monitor, MonitorArgs, MonitorContext, MonitorMsg, GONE};
use crate::ports::{CheckReport, MonitorSpec, PortError};
use crate::schedule;

/// How many actors the initial spawn creates per message. Spawning costs about 20 µs per
/// actor, so a batch holds the mailbox for roughly 20 ms; notifications that arrive during
/// start-up are handled between batches instead of after the whole fleet.
const SPAWN_BATCH: usize = 1024;

/// How long `stop` lets the actors finish what they are doing (a commit in progress).
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
    Reconciled(Box<Result<Vec<(Uuid, i64)>, PortError>>),
    /// A crashed actor's backoff has elapsed.
    Restart { id: Uuid },
    /// A child committed (or adopted) this version of its row.
    VersionSeen { id: Uuid, version: i64 },
    /// Spawn the next batch of the initial fleet.
    SpawnBatch,
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
    /// Every monitored integration, as loaded at start.
    pub(crate) fleet: Vec<MonitorSpec<T>>,
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
    /// The part of the initial fleet not spawned yet.
    pending: Vec<MonitorSpec<T>>,
    /// Integrations deleted while their initial spawn was still pending.
    deleted_while_starting: HashSet<Uuid>,
    reconciling: bool,
    spawned: watch::Sender<bool>,
}

struct Child<T> {
    actor: ActorRef<MonitorMsg<T>>,
    /// The row version the child holds, compared with the store on reconciliation.
    version: i64,
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
            children: HashMap::with_capacity(args.fleet.len()),
            owners: HashMap::with_capacity(args.fleet.len()),
            restarts: HashMap::new(),
            pending: args.fleet,
            deleted_while_starting: HashSet::new(),
            reconciling: false,
            spawned: args.spawned,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.cast(SupervisorMsg::SpawnBatch)?;
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
        myself
            .stop_children_and_wait(Some("engine stopping".to_owned()), Some(STOP_TIMEOUT))
            .await;
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
                self.changed(&myself, state, id, check_now).await;
            }
            SupervisorMsg::Deleted { id } => {
                self.stop_child(state, id);
                state.restarts.remove(&id);
                if !state.pending.is_empty() {
                    state.deleted_while_starting.insert(id);
                }
            }
            SupervisorMsg::Deliver { id, report } => match state.children.get(&id) {
                Some(child) => {
                    let _ = child.actor.cast(MonitorMsg::Deliver(report));
                }
                None => tracing::debug!(
                    integration_id = %id,
                    "test result for an integration without a monitor actor; not applied"
                ),
            },
            SupervisorMsg::Count(reply) => {
                let _ = reply.send(state.children.len());
            }
            SupervisorMsg::Reconcile => self.start_reconciliation(&myself, state),
            SupervisorMsg::Reconciled(listing) => {
                state.reconciling = false;
                match *listing {
                    Ok(listing) => self.reconcile(&myself, state, listing),
                    Err(error) => tracing::warn!(%error, "reconciliation skipped"),
                }
            }
            SupervisorMsg::Restart { id } => self.restart(&myself, state, id).await,
            SupervisorMsg::VersionSeen { id, version } => {
                if let Some(child) = state.children.get_mut(&id) {
                    child.version = child.version.max(version);
                }
            }
            SupervisorMsg::SpawnBatch => self.spawn_batch(&myself, state).await?,
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
                if reason.as_deref() == Some(GONE) {
                    if let Some(id) = state.owners.remove(&cell.get_id()) {
                        tracing::debug!(integration_id = %id, "monitor stopped: integration gone");
                        state.children.remove(&id);
                        state.restarts.remove(&id);
                        self.count_actors(state);
                    }
                    return Ok(());
                }
                let reason = reason.as_deref().unwrap_or("no reason given");
                (cell, format!("terminated: {reason}"))
            }
            _ => return Ok(()),
        };
        // Children stopped on purpose were already removed from `owners`.
        let Some(id) = state.owners.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.children.remove(&id);
        self.count_actors(state);
        self.schedule_restart(&myself, state, id, &reason);
        Ok(())
    }
}

impl<T: Send + Sync + 'static> Supervisor<T> {
    async fn spawn_batch(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
    ) -> Result<(), ActorProcessingErr> {
        for _ in 0..SPAWN_BATCH {
            let Some(spec) = state.pending.pop() else {
                break;
            };
            let id = spec.integration_id;
            // A notification handled between batches may already have spawned or deleted it.
            if state.children.contains_key(&id)
                || state.deleted_while_starting.contains(&id)
                || spec.lifecycle.status == Status::Draft
            {
                continue;
            }
            self.spawn(myself, state, spec, false).await;
        }
        self.count_actors(state);
        if state.pending.is_empty() {
            state.pending = Vec::new();
            state.deleted_while_starting = HashSet::new();
            state.spawned.send_replace(true);
            tracing::info!(
                actors = state.children.len(),
                "initial monitor fleet spawned"
            );
        } else {
            // Back of the mailbox: whatever arrived meanwhile is handled first.
            myself.cast(SupervisorMsg::SpawnBatch)?;
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
        let id = spec.integration_id;
        let version = spec.version;
        let monitor = Monitor::new(self.context.clone());
        let args = MonitorArgs { spec, check_now };
        match Monitor::spawn_linked(None, monitor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.owners.insert(actor.get_id(), id);
                if let Some(previous) = state.children.insert(id, Child { actor, version }) {
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

    /// Stops an actor on purpose: it is forgotten first, so it is not restarted.
    fn stop_child(&self, state: &mut SupervisorState<T>, id: Uuid) {
        if let Some(child) = state.children.remove(&id) {
            state.owners.remove(&child.actor.get_id());
            child.actor.stop(None);
            self.count_actors(state);
        }
    }

    fn count_actors(&self, state: &SupervisorState<T>) {
        self.context.stats.set_actors(state.children.len());
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
            Ok(_) => return self.stop_child(state, id),
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
            child.version = spec.version;
            let _ = child.actor.cast(MonitorMsg::Reconfigure {
                spec: Box::new(spec),
                check_now,
            });
        } else if state.restarts.get(&id).is_some_and(|r| r.pending) {
            // The crashed actor's backoff wins; the restart loads the latest state anyway.
            tracing::debug!(integration_id = %id, "change deferred to the pending restart");
        } else {
            self.spawn(myself, state, spec, check_now).await;
            self.count_actors(state);
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
        self.context.stats.count_restart();
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
        // During the initial spawn every pending integration would look like drift.
        if state.reconciling || !state.pending.is_empty() {
            return;
        }
        state.reconciling = true;
        let ledger = self.context.ledger.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            let listing = ledger.monitored_versions().await;
            let _ = myself.cast(SupervisorMsg::Reconciled(Box::new(listing)));
        });
    }

    /// Compares the listing with the children. Every disagreement (missing actor, extra
    /// actor, older version) becomes a `Changed` notification to itself, which loads the row
    /// and decides then: the listing may be older than a notification handled meanwhile, and
    /// the load is authoritative.
    fn reconcile(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<T>,
        mut listing: Vec<(Uuid, i64)>,
    ) {
        // Sorted and binary-searched rather than hashed: no second map of a million entries.
        listing.sort_unstable_by_key(|&(id, _)| id);
        let mut drift = Vec::new();
        for &(id, version) in &listing {
            match state.children.get(&id) {
                Some(child) if child.version >= version => {}
                Some(_) => drift.push(id),
                None if state.restarts.get(&id).is_some_and(|r| r.pending) => {}
                None => drift.push(id),
            }
        }
        drift.extend(
            state
                .children
                .keys()
                .filter(|id| listing.binary_search_by_key(*id, |(id, _)| *id).is_err()),
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
