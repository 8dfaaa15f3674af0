//! The lease protocol of one node on PostgreSQL (DESIGN §9): heartbeat, renew what it holds,
//! compute the balanced assignment over the live nodes ([`super::assign`]), hand over what
//! it should no longer hold (stop those monitors, write their results, release the leases),
//! take what is free and its own (bumping each shard's epoch), and leave gracefully.
//!
//! Renewals (heartbeat and leases) run in a task of their own every `renew_interval`, so
//! that a handover never delays them. One tick runs every `cluster.renew_interval`, at once when another node says the cluster
//! changed (PostgreSQL `NOTIFY` on `catalogd_cluster`: a join, a leave, a release), and right
//! when a lease of another node is due to expire (so a dead node's shards are taken at its
//! expiry, not up to one interval later). Changes committed on one node reach the owning
//! node's monitor through `NOTIFY` on `catalogd_changes` ([`ChangeNotice`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use catalogd_actors::{CheckOutcome, CheckReport, FailureClass};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::ownership::Ownership;
use super::{assign, Claim};
use crate::config::ClusterConfig;
use crate::store::leases::{LeaseStore, CHANGES_CHANNEL, CLUSTER_CHANNEL};
use crate::store::StoreError;

/// The cluster settings a node runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    pub node_id: String,
    pub shards: u32,
    pub lease_ttl: Duration,
    pub renew_interval: Duration,
}

impl ClusterOptions {
    /// From `[cluster]`; without a `node_id`, the host name and a random suffix.
    pub fn from_config(config: &ClusterConfig) -> ClusterOptions {
        let node_id = config.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|host| {
                    host.trim()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                        .take(64)
                        .collect::<String>()
                })
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| "catalogd".to_owned());
            let suffix = Uuid::new_v4().simple().to_string();
            format!("{host}-{}", &suffix[..6])
        });
        ClusterOptions {
            node_id,
            shards: config.shards,
            lease_ttl: config.lease_ttl,
            renew_interval: config.renew_interval(),
        }
    }
}

/// What the membership task drives when this node's shards change; the daemon implements it
/// over its engine, history writer and relay.
#[async_trait]
pub trait Monitors: Send + Sync + 'static {
    /// Stops the monitors of the integrations in `shards` and waits until they have exited.
    async fn release(&self, shards: HashSet<u32>);
    /// Writes every check result recorded so far.
    async fn flush(&self);
    /// This node took shards: start their monitors, publish their events.
    fn acquired(&self);
    /// Another node committed a change to an integration this node may monitor.
    fn notified(&self, notice: ChangeNotice);
}

/// A committed change, sent by the node that committed it to the node that monitors the
/// integration (JSON on the `catalogd_changes` channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotice {
    pub from: String,
    pub integration_id: Uuid,
    #[serde(flatten)]
    pub change: NoticeKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum NoticeKind {
    #[serde(rename_all = "camelCase")]
    Changed {
        check_now: bool,
    },
    Deleted,
    /// A manual test's result, for the owning actor to apply.
    #[serde(rename_all = "camelCase")]
    Deliver {
        outcome: String,
        started_at: DateTime<Utc>,
        latency_us: u64,
        lateness_us: u64,
    },
}

impl NoticeKind {
    pub fn deliver(report: &CheckReport) -> NoticeKind {
        let outcome = match report.outcome {
            CheckOutcome::Success => "success",
            CheckOutcome::Skipped => "skipped",
            CheckOutcome::Failure(class) => class.as_str(),
        };
        NoticeKind::Deliver {
            outcome: outcome.to_owned(),
            started_at: report.started_at,
            latency_us: u64::try_from(report.latency.as_micros()).unwrap_or(u64::MAX),
            lateness_us: u64::try_from(report.lateness.as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// The report a `Deliver` carries; `None` for anything else or an unknown outcome.
    pub fn report(&self) -> Option<CheckReport> {
        let NoticeKind::Deliver {
            outcome,
            started_at,
            latency_us,
            lateness_us,
        } = self
        else {
            return None;
        };
        let outcome = match outcome.as_str() {
            "success" => CheckOutcome::Success,
            "skipped" => CheckOutcome::Skipped,
            class => CheckOutcome::Failure(
                FailureClass::ALL
                    .into_iter()
                    .find(|known| known.as_str() == class)?,
            ),
        };
        Some(CheckReport {
            outcome,
            started_at: *started_at,
            latency: Duration::from_micros(*latency_us),
            lateness: Duration::from_micros(*lateness_us),
        })
    }
}

/// A node that joined the cluster, before its task runs.
pub struct Membership {
    ownership: Arc<Ownership>,
    leases: LeaseStore,
    options: ClusterOptions,
    lost: mpsc::UnboundedReceiver<Claim>,
    /// Stops the renewals (and, once spawned, the membership task); dropping it stops them.
    stop: watch::Sender<bool>,
    /// Renewals start at the join, not when the monitors are up: a node whose start-up
    /// takes longer than a TTL must not look dead to the others meanwhile (they would hand
    /// its shards back and forth).
    renewer: JoinHandle<()>,
}

/// The running membership task.
pub struct MembershipHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    listener: JoinHandle<()>,
    leases: LeaseStore,
    node_id: String,
    notices: mpsc::UnboundedSender<ChangeNotice>,
}

impl Membership {
    /// Joins the cluster: fixes (or checks) the shard count, registers this node, tells the
    /// others, and takes its share of the shards nobody holds. The monitors start after this,
    /// with what it holds.
    pub async fn join(
        leases: LeaseStore,
        options: ClusterOptions,
    ) -> Result<Membership, StoreError> {
        leases.init(options.shards).await?;
        let (ownership, lost) = Ownership::leased(&options.node_id, options.shards);
        let (stop, stopped) = watch::channel(false);
        let renewer = tokio::spawn(renew_every(
            leases.clone(),
            ownership.clone(),
            options.clone(),
            stopped,
        ));
        let mut membership = Membership {
            ownership,
            leases,
            options,
            lost,
            stop,
            renewer,
        };
        membership.tick(None).await?;
        membership
            .leases
            .notify(CLUSTER_CHANNEL, &membership.options.node_id)
            .await?;
        tracing::info!(
            node_id = %membership.options.node_id,
            nodes = membership.ownership.counters().nodes.load(Ordering::Relaxed),
            shards_owned = membership.ownership.owned(),
            shards = membership.options.shards,
            "joined the cluster"
        );
        Ok(membership)
    }

    pub fn ownership(&self) -> Arc<Ownership> {
        self.ownership.clone()
    }

    /// Runs the protocol until [`MembershipHandle::leave`].
    pub fn spawn(mut self, monitors: Arc<dyn Monitors>) -> MembershipHandle {
        let stop = self.stop.clone();
        let mut stopped = stop.subscribe();
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            self.leases.clone(),
            self.options.node_id.clone(),
            wake.clone(),
            monitors.clone(),
        ));
        let (notices, pending) = mpsc::unbounded_channel();
        let leases = self.leases.clone();
        let node_id = self.options.node_id.clone();
        let sender = tokio::spawn(send_notices(leases.clone(), pending));
        let task = tokio::spawn(async move {
            let mut announced = false;
            let mut next = Instant::now();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep_until(next) => {}
                    () = wake.notified() => {}
                    Some(claim) = self.lost.recv() => {
                        let mut claims = vec![claim];
                        while let Ok(claim) = self.lost.try_recv() {
                            claims.push(claim);
                        }
                        self.lose(&claims, monitors.as_ref()).await;
                    }
                }
                if *stopped.borrow() {
                    break;
                }
                if !announced {
                    announced = self.announce().await;
                }
                self.expire(monitors.as_ref()).await;
                next = match self.tick(Some(monitors.as_ref())).await {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::warn!(%error, "cluster: lease renewal failed; retrying");
                        Instant::now() + self.options.renew_interval.min(Duration::from_secs(1))
                    }
                };
            }
            drop(sender);
            let _ = (&mut self.renewer).await;
        });
        MembershipHandle {
            stop,
            task,
            listener,
            leases,
            node_id,
            notices,
        }
    }

    /// Tells the other nodes that this one's monitors run: from now on they hand it its
    /// share. Whether that worked (else it is tried again at the next tick).
    async fn announce(&self) -> bool {
        let node = &self.options.node_id;
        let announced = async {
            self.leases.ready(node).await?;
            self.leases.notify(CLUSTER_CHANNEL, node).await
        };
        match announced.await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cluster: could not announce this node as ready; retrying");
                false
            }
        }
    }

    /// Gives up the shards whose claims ran out by the local clock (renewals failing, or the
    /// process was stopped): their monitors stop before anything else happens.
    async fn expire(&mut self, monitors: &dyn Monitors) {
        let now = Instant::now();
        let expired: Vec<Claim> = self
            .ownership
            .recorded()
            .into_iter()
            .filter(|(_, until)| until.is_some_and(|until| until <= now))
            .map(|(claim, _)| claim)
            .collect();
        if !expired.is_empty() {
            tracing::warn!(
                shards = expired.len(),
                "cluster: leases ran out before they were renewed; stopping their monitors"
            );
            self.lose(&expired, monitors).await;
        }
    }

    /// Forgets `claims` (lost, not released) and stops their monitors.
    async fn lose(&mut self, claims: &[Claim], monitors: &dyn Monitors) {
        let mut shards = HashSet::new();
        for claim in claims {
            if self.ownership.holds_recorded(*claim) && self.ownership.forget(claim.shard).is_some()
            {
                shards.insert(claim.shard);
            }
        }
        if shards.is_empty() {
            return;
        }
        self.ownership
            .counters()
            .losses
            .fetch_add(shards.len() as u64, Ordering::Relaxed);
        monitors.release(shards).await;
    }

    /// One round of the protocol; returns when the next one is due.
    async fn tick(&mut self, monitors: Option<&dyn Monitors>) -> Result<Instant, StoreError> {
        let node = self.options.node_id.clone();
        let ttl = self.options.lease_ttl;
        let nodes = self.leases.heartbeat(&node, ttl).await?;
        self.ownership
            .counters()
            .nodes
            .store(nodes.len() as u64, Ordering::Relaxed);
        // Renewals run in a task of their own ([`renew_every`]), so that a slow handover
        // here never lets this node's leases run out.
        // Where every shard should be.
        let rows = self.leases.shards().await?;
        let current: Vec<Option<String>> = rows
            .iter()
            .map(|row| row.owner.clone().filter(|_| row.live))
            .collect();
        let desired = assign(&nodes, &current);
        let held: HashSet<u32> = self
            .ownership
            .recorded()
            .into_iter()
            .map(|(claim, _)| claim.shard)
            .collect();
        let mut release = Vec::new();
        let mut acquire = Vec::new();
        let mut next = Instant::now() + self.options.renew_interval;
        for (row, want) in rows.iter().zip(&desired) {
            let mine = want.as_deref() == Some(node.as_str());
            let owner = current[row.shard as usize].as_deref();
            match owner {
                Some(owner) if owner == node && held.contains(&row.shard) && !mine => {
                    release.push(row.shard)
                }
                // Free, or held by an earlier run of this node (its writes are fenced off
                // by the new epoch).
                None if mine => acquire.push(row.shard),
                Some(owner) if owner == node && mine && !held.contains(&row.shard) => {
                    acquire.push(row.shard)
                }
                // Another node's lease: take another look when it is due to expire.
                Some(owner) if owner != node => {
                    next = next.min(Instant::now() + row.remaining + Duration::from_millis(20));
                }
                _ => {}
            }
        }
        if !release.is_empty() || !acquire.is_empty() {
            tracing::info!(
                ?nodes,
                held = held.len(),
                release = release.len(),
                acquire = acquire.len(),
                "cluster: rebalancing"
            );
        }
        if !release.is_empty() {
            self.hand_over(&release, monitors).await?;
        }
        if !acquire.is_empty() {
            let sent = Instant::now();
            let taken = self.leases.acquire(&node, &acquire, ttl).await?;
            let mut takeovers = 0;
            for taken in &taken {
                self.ownership.hold(taken.claim, sent + ttl);
                if taken.previous_owner.as_deref().is_some_and(|p| p != node) {
                    takeovers += 1;
                }
            }
            self.ownership
                .counters()
                .takeovers
                .fetch_add(takeovers, Ordering::Relaxed);
            if !taken.is_empty() {
                tracing::info!(
                    shards = taken.len(),
                    takeovers,
                    owned = self.ownership.owned(),
                    "cluster: shards taken"
                );
                if let Some(monitors) = monitors {
                    monitors.acquired();
                }
            }
        }
        Ok(next)
    }

    /// Hands `shards` over to their next owners: stops their monitors, writes what they
    /// recorded (still under this node's claims), then releases the leases and tells the
    /// other nodes, which take them at once.
    async fn hand_over(
        &mut self,
        shards: &[u32],
        monitors: Option<&dyn Monitors>,
    ) -> Result<(), StoreError> {
        for shard in shards {
            self.ownership.forget(*shard);
        }
        if let Some(monitors) = monitors {
            monitors.release(shards.iter().copied().collect()).await;
            monitors.flush().await;
        }
        self.leases.release(&self.options.node_id, shards).await?;
        self.leases
            .notify(CLUSTER_CHANNEL, &self.options.node_id)
            .await?;
        tracing::info!(
            shards = shards.len(),
            owned = self.ownership.owned(),
            "cluster: shards handed over"
        );
        Ok(())
    }
}

/// Sends [`ChangeNotice`]s to the other nodes, in order. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    from: String,
    notices: mpsc::UnboundedSender<ChangeNotice>,
}

impl Notifier {
    /// Tells the node that monitors `integration_id` about a change committed here.
    pub fn notify(&self, integration_id: Uuid, change: NoticeKind) {
        let _ = self.notices.send(ChangeNotice {
            from: self.from.clone(),
            integration_id,
            change,
        });
    }
}

impl MembershipHandle {
    pub fn notifier(&self) -> Notifier {
        Notifier {
            from: self.node_id.clone(),
            notices: self.notices.clone(),
        }
    }

    /// Leaves the cluster, once this node's monitors have stopped and their results and
    /// events are written: releases every shard and deletes its node row, and tells the
    /// other nodes, which take the shards at once instead of after a TTL.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.listener.abort();
        let left = async {
            self.leases.leave(&self.node_id).await?;
            self.leases.notify(CLUSTER_CHANNEL, &self.node_id).await
        };
        match left.await {
            Ok(()) => tracing::info!(node_id = %self.node_id, "left the cluster; shards released"),
            Err(error) => {
                tracing::warn!(%error, "cluster: could not release the shards; they are taken when their leases expire")
            }
        }
    }
}

/// Renews this node's heartbeat and every lease it holds every `renew_interval`, apart from
/// the membership task (whose handovers wait for monitors to stop and results to be
/// written): what the database will not renew is reported lost.
async fn renew_every(
    leases: LeaseStore,
    ownership: Arc<Ownership>,
    options: ClusterOptions,
    mut stopped: watch::Receiver<bool>,
) {
    /// Rows of nodes long gone (killed, or restarted under a new id) are deleted this often
    /// (in renewals): a restart with a generated node id leaves one behind each time.
    const FORGET_EVERY: u32 = 100;
    let node = options.node_id.as_str();
    let ttl = options.lease_ttl;
    let mut round = 0u32;
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(options.renew_interval) => {}
        }
        if *stopped.borrow() {
            return;
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(FORGET_EVERY) {
            if let Err(error) = leases.forget_dead_nodes().await {
                tracing::debug!(%error, "cluster: could not delete long-dead node rows");
            }
        }
        let sent = Instant::now();
        if let Err(error) = leases.heartbeat(node, ttl).await {
            tracing::warn!(%error, "cluster: heartbeat failed; retrying");
        }
        let recorded: Vec<Claim> = ownership
            .recorded()
            .into_iter()
            .map(|(claim, _)| claim)
            .collect();
        match leases.renew(node, &recorded, ttl).await {
            Ok(renewed) => {
                for claim in &renewed {
                    ownership.extend(*claim, sent + ttl);
                }
                let lost: Vec<Claim> = recorded
                    .into_iter()
                    .filter(|claim| !renewed.contains(claim))
                    .collect();
                if !lost.is_empty() {
                    tracing::warn!(
                        shards = lost.len(),
                        "cluster: leases not renewed (expired or taken over)"
                    );
                    ownership.report_lost(&lost);
                }
            }
            Err(error) => tracing::warn!(%error, "cluster: lease renewal failed; retrying"),
        }
    }
}

/// Sends change notices in the order they were made.
async fn send_notices(leases: LeaseStore, mut pending: mpsc::UnboundedReceiver<ChangeNotice>) {
    while let Some(notice) = pending.recv().await {
        let payload = match serde_json::to_string(&notice) {
            Ok(payload) => payload,
            Err(_) => continue,
        };
        if let Err(error) = leases.notify(CHANGES_CHANNEL, &payload).await {
            // The owner's reconciliation finds the change within `monitor.reconcile_interval`.
            tracing::warn!(%error, "cluster: could not notify the owning node of a change");
        }
    }
}

/// Listens on both channels: cluster changes wake the membership task, change notices go to
/// the monitors.
async fn listen(
    leases: LeaseStore,
    node_id: String,
    wake: Arc<Notify>,
    monitors: Arc<dyn Monitors>,
) {
    let mut listener = loop {
        match leases.listen().await {
            Ok(listener) => break listener,
            Err(error) => {
                tracing::warn!(%error, "cluster: cannot listen for notifications; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        match listener.recv().await {
            Ok(notification) if notification.channel() == CLUSTER_CHANNEL => {
                if notification.payload() != node_id {
                    wake.notify_one();
                }
            }
            Ok(notification) => {
                match serde_json::from_str::<ChangeNotice>(notification.payload()) {
                    Ok(notice) if notice.from != node_id => monitors.notified(notice),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "cluster: ignoring a malformed change notice")
                    }
                }
            }
            Err(error) => {
                // The next `recv` reconnects; what was sent meanwhile is repaired by the next
                // tick and by reconciliation.
                tracing::warn!(%error, "cluster: notification connection lost; reconnecting");
                wake.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_report_survives_the_notice() {
        for outcome in [
            CheckOutcome::Success,
            CheckOutcome::Skipped,
            CheckOutcome::Failure(FailureClass::Timeout),
        ] {
            let report = CheckReport {
                outcome,
                started_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
                latency: Duration::from_micros(1234),
                lateness: Duration::from_micros(56),
            };
            let notice = ChangeNotice {
                from: "a".into(),
                integration_id: Uuid::nil(),
                change: NoticeKind::deliver(&report),
            };
            let json = serde_json::to_string(&notice).unwrap();
            let back: ChangeNotice = serde_json::from_str(&json).unwrap();
            assert_eq!(back.change.report(), Some(report), "{json}");
        }
    }
}
