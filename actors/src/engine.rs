//! The engine's public handle: what the daemon holds to start the supervisor, tell it about
//! changes, deliver test results, read its counters and stop it.
//!
//! **API Boundary:** the daemon talks to the actors only through [`Engine`]; the message
//! types of the supervisor and the monitors are private to this crate.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, ActorStatus};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::Clock;
use crate::counters::EngineCounters;
use crate::flap::FlapOptions;
use crate::monitor::{MonitorContext, START_HOLD_MAX};
use crate::network_guard::NetworkGuard;
use crate::ports::{CheckReport, Ledger, PortError, Probe};
use crate::supervisor::{Supervisor, SupervisorArgs, SupervisorMsg, SPAWN_PAGE};

/// Tuning of the supervisor and the monitors; `monitor.*` in the daemon's configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How often the actor set is compared with the store and drift repaired.
    pub reconcile_interval: Duration,
    /// The first delay before re-spawning a crashed actor; it doubles per consecutive crash.
    pub restart_backoff_base: Duration,
    /// The cap of the restart delay. An actor that then runs for twice this long without
    /// crashing starts from the base again.
    pub restart_backoff_max: Duration,
    /// Failed integrations back off from their interval up to this cap.
    pub failed_backoff_max: Duration,
    /// Flap detection (DESIGN §10): `monitor.flap_threshold` and `monitor.flap_window`.
    pub flap: FlapOptions,
    /// The network guard (DESIGN §10) every monitor feeds its check outcomes to; `None`:
    /// off. The daemon builds it (with its reporter) and keeps a handle for `/metrics`.
    pub network_guard: Option<Arc<NetworkGuard>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            reconcile_interval: Duration::from_secs(60),
            restart_backoff_base: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            failed_backoff_max: Duration::from_secs(600),
            flap: FlapOptions::default(),
            network_guard: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not load the monitored integrations: {0}")]
    Ledger(#[from] PortError),
    #[error("could not start the supervisor: {0}")]
    Spawn(String),
    #[error("the engine is stopped")]
    Stopped,
}

/// A handle to the running engine. Cheap to clone; every clone talks to the same supervisor.
///
/// Notifications (`changed`, `deleted`, `deliver`) are fire-and-forget: they never wait for
/// the supervisor, and after `stop` they are dropped.
pub struct Engine<T> {
    supervisor: ActorRef<SupervisorMsg>,
    counters: Arc<EngineCounters>,
    spawned: watch::Receiver<bool>,
    draining: Arc<AtomicBool>,
    target: PhantomData<fn() -> T>,
}

impl<T> Clone for Engine<T> {
    fn clone(&self) -> Self {
        Engine {
            supervisor: self.supervisor.clone(),
            counters: self.counters.clone(),
            spawned: self.spawned.clone(),
            draining: self.draining.clone(),
            target: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Engine<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("supervisor", &self.supervisor.get_id())
            .field("counters", &self.counters)
            .finish()
    }
}

impl<T: Send + Sync + 'static> Engine<T> {
    /// Starts the supervisor, which spawns one actor per monitored integration.
    ///
    /// Returns once the first page of integrations is loaded and the supervisor runs; the
    /// fleet is then being spawned page by page in the background (a million actors take
    /// about 20 s), while notifications are already handled. Use [`spawned`] to wait for the
    /// whole initial fleet. Fails if the store cannot list integrations.
    ///
    /// [`spawned`]: Engine::spawned
    pub async fn start(
        ledger: Arc<dyn Ledger<T>>,
        probe: Arc<dyn Probe<T>>,
        clock: Arc<dyn Clock>,
        options: EngineOptions,
    ) -> Result<Self, EngineError> {
        let first_page = ledger.monitored_page(None, SPAWN_PAGE).await?;
        let (spawned_sender, spawned) = watch::channel(false);
        let counters = Arc::new(EngineCounters::default());
        let draining = Arc::new(AtomicBool::new(false));
        let wall = Duration::from_micros(
            u64::try_from(clock.now().timestamp_micros()).unwrap_or_default(),
        );
        let context = Arc::new(MonitorContext {
            ledger,
            probe,
            clock,
            epoch: Instant::now(),
            wall,
            failed_backoff_max: options.failed_backoff_max,
            flap: options.flap,
            network_guard: options.network_guard.clone(),
            counters: counters.clone(),
            fleet_spawned: spawned.clone(),
            hold_until: wall + START_HOLD_MAX,
            draining: draining.clone(),
        });
        tracing::info!("starting the monitor engine");
        let args = SupervisorArgs {
            first_page,
            spawned: spawned_sender,
        };
        let (supervisor, _) = Supervisor::spawn(None, Supervisor::new(context, options), args)
            .await
            .map_err(|error| EngineError::Spawn(error.to_string()))?;
        Ok(Engine {
            supervisor,
            counters,
            spawned,
            draining,
            target: PhantomData,
        })
    }

    /// The integration changed in the store (create, update, submit, pause, resume,
    /// activate). Its actor is started, reconfigured or stopped to match; with `check_now`
    /// (submit, resume) it checks at once.
    pub fn changed(&self, id: Uuid, check_now: bool) {
        self.notify(SupervisorMsg::Changed { id, check_now });
    }

    /// The integration was deleted: its actor stops.
    pub fn deleted(&self, id: Uuid) {
        self.notify(SupervisorMsg::Deleted { id });
    }

    /// Hands a manual connection test's result to the integration's actor, which applies it
    /// like one of its own checks, so that only the actor writes health state. Dropped when
    /// the integration has no running actor (draft, or an actor waiting to be restarted).
    pub fn deliver(&self, id: Uuid, report: CheckReport) {
        self.notify(SupervisorMsg::Deliver {
            id,
            report: Box::new(report),
        });
    }

    /// Pages through the monitored integrations again (as [`Ledger::monitored_page`] lists
    /// them now) and spawns an actor for each one that has none: the daemon took over more
    /// of the fleet. Running actors are left alone.
    pub fn rescan(&self) {
        self.notify(SupervisorMsg::Rescan);
    }

    /// The maintenance windows changed (DESIGN §10): every actor asks
    /// [`Ledger::maintenance`](crate::ports::Ledger::maintenance) again.
    pub fn calendar_changed(&self) {
        self.notify(SupervisorMsg::Recalendar);
    }

    /// Stops the actors of every integration `releases` names — the daemon gave them up or
    /// lost them — and waits, up to `within`, until they have exited, so that nothing they
    /// do overlaps with their next owner. Returns how many actors were stopped.
    pub async fn release(
        &self,
        releases: impl Fn(Uuid) -> bool + Send + 'static,
        within: Duration,
    ) -> usize {
        let releases: Box<dyn Fn(Uuid) -> bool + Send> = Box::new(releases);
        let stopped = match self
            .supervisor
            .call(|reply| SupervisorMsg::Release { releases, reply }, None)
            .await
        {
            Ok(CallResult::Success(stopped)) => stopped,
            _ => return 0,
        };
        let count = stopped.len();
        let deadline = Instant::now() + within;
        for actor in stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = actor.wait(Some(left)).await;
        }
        count
    }

    /// The number of running monitor actors, as the supervisor sees it (after every message
    /// sent before this call from this task).
    pub async fn actor_count(&self) -> Result<usize, EngineError> {
        match self.supervisor.call(SupervisorMsg::Count, None).await {
            Ok(CallResult::Success(count)) => Ok(count),
            _ => Err(EngineError::Stopped),
        }
    }

    /// Waits until the initial fleet is spawned.
    pub async fn spawned(&self) -> Result<(), EngineError> {
        let mut spawned = self.spawned.clone();
        spawned
            .wait_for(|spawned| *spawned)
            .await
            .map(|_| ())
            .map_err(|_| EngineError::Stopped)
    }

    /// Counters for metrics: restarts, running actors, checks in flight.
    pub fn counters(&self) -> Arc<EngineCounters> {
        self.counters.clone()
    }

    /// Whether the supervisor is running (for readiness).
    pub fn is_running(&self) -> bool {
        self.supervisor.get_status() == ActorStatus::Running
    }

    /// From now on no scheduled check starts: each actor skips its due slots, as during the
    /// start-up hold, until the engine stops. The daemon calls this as soon as it is told to
    /// stop, so that draining its APIs and stopping the actors do not compete with checks
    /// that the stop would cut off anyway (at a million integrations the box is busy
    /// checking, and a SIGTERM took more than a minute). Notifications and manual tests are
    /// still handled.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Stops every actor, letting each finish its current message, and waits.
    pub async fn stop(&self) {
        self.drain();
        if let Err(error) = self.supervisor.stop_and_wait(None, None).await {
            tracing::debug!(%error, "engine already stopped");
        }
    }

    fn notify(&self, message: SupervisorMsg) {
        if self.supervisor.cast(message).is_err() {
            tracing::debug!("engine stopped; notification dropped");
        }
    }
}
