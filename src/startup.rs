//! Builds the application from a [`Config`] and runs it until a shutdown signal.
//!
//! Tests use the same path as the binary: [`Application::build`] with `http.listen` on port 0,
//! then [`Application::port`] and [`Application::run_until_stopped`].

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use catalogd_actors::{Clock, Engine, EngineCounters, EngineOptions, SystemClock};
use tokio::net::TcpListener;

use crate::app::App;
use crate::auth::{Authenticator, KeySource};
use crate::cluster::{ClusterOptions, Membership, MembershipHandle, Ownership};
use crate::config::Config;
use crate::connectors::{ConnectorError, Connectors, Target};
use crate::control;
use crate::http;
use crate::maintenance::{Calendar, CalendarSync};
use crate::metrics::{self, Exporter, IntegrationGauges, Refresher};
use crate::monitoring::{ClusterControl, EngineMonitors, MonitorDefaults, OwnedProbe, StoreLedger};
use crate::nats::NatsReadiness;
use crate::network_guard::NetworkGuardTask;
use crate::relay::{Relay, RelayHandle, RelayOptions};
use crate::store::history::HistoryWriter;
use crate::store::{self, Database, ServeLock, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Connectors(#[from] ConnectorError),
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    #[error("cannot start the monitor engine: {0}")]
    Engine(#[from] catalogd_actors::EngineError),
}

/// The running parts of the daemon: the REST listener and the application it serves, the
/// monitor engine and the history writer.
pub struct Application {
    listener: TcpListener,
    app: App,
    engine: Engine<Target>,
    history_writer: HistoryWriter,
    relay: Relay,
    nats: Option<async_nats::Client>,
    metrics_listener: TcpListener,
    exporter: Exporter,
    refresher: Refresher,
    calendar_sync: Arc<CalendarSync>,
    rate_limit: http::rate_limit::RateLimiter,
    /// This node's lease protocol (PostgreSQL); it leaves the cluster last.
    membership: Option<MembershipHandle>,
    /// The network guard's event task; `None` when `monitor.network_guard` is off.
    network_guard: Option<NetworkGuardTask>,
    /// Held until the daemon has stopped (SQLite: no second daemon on the same file).
    _serve_lock: Option<ServeLock>,
}

impl Application {
    /// Opens the store (applying migrations), loads or generates the signing key and binds
    /// the REST listener.
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // One pool for every store over the database; migrations run once.
        let mut database = Database::connect(&store_options(config)?).await?;
        // SQLite is single-node: one serving daemon per database file.
        let serve_lock = database.lock_for_serving(&config.database.url)?;
        // On PostgreSQL the daemon joins the cluster and monitors only the shards it holds;
        // on SQLite it holds every shard.
        let cluster = ClusterOptions::from_config(&config.cluster);
        database.identify(&cluster.node_id);
        let membership = match database.leases() {
            Some(leases) => Some(Membership::join(leases, cluster.clone()).await?),
            None => None,
        };
        let ownership = membership.as_ref().map_or_else(
            || Ownership::single(&cluster.node_id, cluster.shards),
            Membership::ownership,
        );
        // The fleet gauges follow every committed change of the catalog.
        let gauges = IntegrationGauges::new(config.metrics.per_integration);
        database.observe(Arc::new(gauges.clone()));
        let store = database.store(config.monitor.thresholds());
        let history = database.history((&config.history).into());
        // NATS connects in the background: the daemon never waits for it (events wait in
        // the outbox).
        let nats = crate::nats::connect(&config.nats, "catalogd").await?;
        // The store hands the relay every event right after its commit.
        let relay = Relay::spawn_with_handoff(
            database.outbox(),
            nats.clone(),
            RelayOptions::from(&config.events),
            &database.handoff(),
            ownership.clone(),
        );
        let auth = Authenticator::from_config(&config.auth)?;
        log_key_source(&auth.source);
        let connectors = Arc::new(Connectors::new(
            &config.egress,
            &config.offline,
            &config.plugins,
            &config.secrets,
            clock.clone(),
        )?);
        let monitor = MonitorDefaults {
            interval: config.monitor.interval,
            timeout: config.monitor.timeout,
            thresholds: config.monitor.thresholds(),
        };
        let history_writer = HistoryWriter::spawn_fenced(
            history.clone(),
            clock.clone(),
            ownership.is_leased().then(|| ownership.clone()),
        );
        // The monitors read the maintenance windows from memory: loaded before the first
        // actor starts, then kept in step by `calendar_sync`.
        let calendar = Arc::new(Calendar::new());
        calendar.load(store.all_windows().await?);
        let calendar_sync = Arc::new(CalendarSync::new(
            calendar.clone(),
            store.clone(),
            config.monitor.reconcile_interval,
        ));
        let ledger = StoreLedger::new(
            store.clone(),
            history_writer.clone(),
            clock.clone(),
            monitor,
        )
        .with_gauges(gauges.clone())
        .owned_by(ownership.clone())
        .with_calendar(calendar);
        let refresher = Refresher {
            census: database.census(),
            history: history.clone(),
            gauges: gauges.clone(),
            clock: clock.clone(),
            refresh: config.metrics.refresh,
            uptime_refresh: config.metrics.uptime_refresh,
        };
        // The network guard (DESIGN §10): this node judges its own network from its checks.
        let network_guard = NetworkGuardTask::start(
            &config.monitor,
            database.outbox(),
            database.handoff(),
            clock.clone(),
            &cluster.node_id,
        );
        let engine = Engine::start(
            Arc::new(ledger),
            Arc::new(OwnedProbe {
                inner: connectors.clone(),
                ownership: ownership.clone(),
            }),
            clock.clone(),
            EngineOptions {
                reconcile_interval: config.monitor.reconcile_interval,
                restart_backoff_max: config.monitor.restart_backoff_max,
                failed_backoff_max: config.monitor.failed_backoff_max,
                flap: config.monitor.flap_options(),
                network_guard: network_guard.as_ref().map(|task| task.guard.clone()),
                ..EngineOptions::default()
            },
        )
        .await?;
        // The fleet gauges are exported from the first scrape: counts and series are read
        // before the listeners start (uptime ratios follow in the background), and every
        // change from then on reaches them at once. The read runs while the engine spawns
        // the fleet rather than before it (about half a second at 100k off start-up, bench
        // F3): a transition committed during the read wins over the row the read saw
        // (`IntegrationGauges::sync` keeps what a change did), and a series the read had to
        // skip for it comes with the refresher's first pass, right after the spawn.
        refresher.refresh_once(false).await?;
        let membership = membership.map(|membership| {
            membership.spawn(Arc::new(EngineMonitors {
                engine: engine.clone(),
                history: history_writer.clone(),
                relay: relay.handle(),
                shards: cluster.shards,
            }))
        });
        let control = ClusterControl {
            engine: engine.clone(),
            ownership: ownership.clone(),
            notifier: membership.as_ref().map(MembershipHandle::notifier),
            calendar: Some(calendar_sync.clone()),
        };
        let addr = config.http.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen { addr, source })?;
        let addr = config.metrics.listen;
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen { addr, source })?;
        let exporter = Exporter::new(engine.counters(), gauges.clone())
            .with_cluster(ownership)
            .with_network_guard(network_guard.as_ref().map(|task| task.guard.clone()))
            .with_history(history_writer.clone());
        let maintenance = Arc::new(crate::app::status_page::StoredCalendar {
            store: store.clone(),
        });
        let app = App {
            store,
            auth: Arc::new(auth),
            clock,
            providers: Arc::new(connectors.providers()),
            default_thresholds: config.monitor.thresholds(),
            default_interval_seconds: config.monitor.interval.as_secs().max(1) as u32,
            body_limit_bytes: config.http.body_limit_bytes,
            request_timeout: config.http.request_timeout,
            engine: Arc::new(control),
            history,
            connectors,
            monitor,
            nats: NatsReadiness::new(nats.clone()),
            status_pages: database.status_pages(),
            maintenance,
        };
        Ok(Application {
            listener,
            app,
            engine,
            history_writer,
            relay,
            nats,
            metrics_listener,
            exporter,
            refresher,
            calendar_sync,
            rate_limit: http::rate_limit::RateLimiter::new(&config.http.rate_limit),
            membership,
            network_guard,
            _serve_lock: serve_lock,
        })
    }

    /// The address of the Prometheus `/metrics` listener.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().expect("bound listener")
    }

    /// What `/metrics` serves (for tests and benchmarks that render it directly).
    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    /// The background task that refreshes the store-derived gauges.
    pub fn refresher(&self) -> Refresher {
        self.refresher.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The application the REST API and the NATS control service serve.
    pub fn state(&self) -> &App {
        &self.app
    }

    /// The engine's counters: running actors, restarts, checks.
    pub fn engine_stats(&self) -> Arc<EngineCounters> {
        self.engine.counters()
    }

    /// Wakes the outbox relay after a commit; its counters.
    pub fn relay(&self) -> RelayHandle {
        self.relay.handle()
    }

    /// The NATS connection (`None` when `nats.url` is empty); it may not be connected yet.
    pub fn nats(&self) -> Option<async_nats::Client> {
        self.nats.clone()
    }

    /// A handle to the monitor engine (for tests and benchmarks that wait for the fleet).
    pub fn engine(&self) -> Engine<Target> {
        self.engine.clone()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let addr = self.local_addr();
        let (stop_metrics, stopped) = tokio::sync::watch::channel(false);
        metrics::log_listening(self.metrics_addr());
        let engine = self.engine.clone();
        let refresher = self.refresher.spawn(
            async move {
                let _ = engine.spawned().await;
            },
            stopped.clone(),
        );
        let calendar = self
            .calendar_sync
            .clone()
            .spawn(self.engine.clone(), stopped.clone());
        let mut metrics_stopped = stopped;
        let metrics_server = tokio::spawn(
            axum::serve(self.metrics_listener, self.exporter.router())
                .with_graceful_shutdown(async move {
                    let _ = metrics_stopped.wait_for(|stop| *stop).await;
                })
                .into_future(),
        );
        // The NATS control service answers with the same application, use cases and rules as
        // the REST API. It subscribes even while NATS is down (the client re-subscribes on
        // reconnect); a failure to start it leaves the daemon running without it.
        let control = match &self.nats {
            Some(client) => control::start(client.clone(), self.app.clone())
                .await
                .map_err(|error| tracing::warn!(%error, "NATS control service not started"))
                .ok(),
            None => None,
        };
        tracing::info!(%addr, "REST API listening");
        // Told to stop: no check starts any more (one started now would be cut off), so the
        // drain and the stop below have the box to themselves.
        let draining = self.engine.clone();
        let stopping = Arc::new(std::sync::OnceLock::new());
        let stop_started = stopping.clone();
        let shutdown = async move {
            shutdown.await;
            let _ = stop_started.set(Instant::now());
            draining.drain();
            tracing::info!("stopping: checks held, draining requests");
        };
        let served = axum::serve(self.listener, http::router(self.app, self.rate_limit))
            .with_graceful_shutdown(shutdown)
            .await;
        let stopping = stopping.get().copied().unwrap_or_else(Instant::now);
        let step = |what: &str| {
            tracing::info!(
                elapsed_ms = stopping.elapsed().as_millis() as u64,
                "stopping: {what}"
            );
        };
        step("requests drained");
        // Control requests drain with the REST API, while the engine still runs.
        if let Some(control) = control {
            control.stop().await;
        }
        // Metrics stay up while the REST API drains, then stop with it.
        let _ = stop_metrics.send(true);
        let _ = refresher.await;
        let _ = calendar.await;
        if let Ok(Err(error)) = metrics_server.await {
            tracing::warn!(%error, "metrics listener failed");
        }
        // Requests are drained: stop the actors (each finishes its current message), then
        // write the check results they recorded.
        step("metrics and background passes stopped");
        self.engine.stop().await;
        step("monitor actors stopped");
        self.history_writer.close().await;
        step("check results written");
        // No check reaches the guard any more; its stored events go out with the relay's
        // last pass.
        if let Some(network_guard) = self.network_guard {
            network_guard.stop();
        }
        // Last, so the events of the final transitions still go out.
        self.relay.stop().await;
        step("events relayed");
        // Everything this node wrote under its claims is written: hand the shards over.
        if let Some(membership) = self.membership {
            membership.leave().await;
        }
        tracing::info!(
            elapsed_ms = stopping.elapsed().as_millis() as u64,
            "stopped"
        );
        Ok(served?)
    }
}

/// The store options of `config`, with the PostgreSQL password read from its file or
/// environment variable (never from the configuration itself).
pub fn store_options(config: &Config) -> Result<StoreOptions, StartupError> {
    let db = &config.database;
    let password = if let Some(path) = &db.password_file {
        Some(std::fs::read_to_string(path)?.trim().to_owned())
    } else if let Some(var) = &db.password_env {
        std::env::var(var).ok()
    } else {
        None
    };
    Ok(StoreOptions {
        url: db.url.clone(),
        password: password.map(secrecy::SecretString::from),
        max_connections: db.max_connections,
        sqlite_synchronous_full: db.sqlite_synchronous == crate::config::SqliteSynchronous::Full,
        allow_unsafe_durability: db.allow_unsafe_durability,
        default_thresholds: config.monitor.thresholds(),
    })
}

fn log_key_source(source: &KeySource) {
    match source {
        KeySource::Generated { path, new: true } => tracing::warn!(
            key_file = %path.display(),
            "no JWT key configured: generated an HS256 key; mint a token with \
             `catalogd token --tenant TENANT --scope integrations.admin`"
        ),
        KeySource::Generated { path, new: false } => tracing::info!(
            key_file = %path.display(),
            "using the generated HS256 key; mint a token with `catalogd token --tenant TENANT --scope integrations.read`"
        ),
        other => tracing::info!(source = ?other, "JWT verification key loaded"),
    }
}

/// Completes on SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    // The handlers are installed now, when this is called, not when the future is first
    // polled: the caller calls it before the daemon says it is listening, and a SIGTERM that
    // arrives right after that must drain the daemon, not kill it (the default action).
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |handler: Option<tokio::signal::unix::Signal>| async move {
            match handler {
                Some(mut handler) => {
                    handler.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(interrupt) => {},
            () = wait(terminate) => {},
        }
        tracing::info!("shutdown signal received; draining requests");
    }
}
