//! Several `catalogd serve` children on one database, run as a cluster (DESIGN §9): named
//! nodes started from one command per node id, killed (SIGKILL), paused (SIGSTOP) and resumed,
//! stopped gracefully (SIGTERM); what each node's `/readyz` says of the cluster; and a fleet
//! target that answers every integration on a path of its own, fails the paths a test picks
//! and records each request with its path and arrival time.

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::any;
use axum::Router;

use crate::target::{serve, Server};
use crate::Daemon;

/// How long a node may take to log both listeners.
const START_WITHIN: Duration = Duration::from_secs(60);

/// A node of the cluster: its daemon, and whether it is paused (SIGSTOP) right now.
pub struct Node {
    pub daemon: Daemon,
    pub paused: bool,
}

/// The nodes of one cluster by node id, each started by `command(node_id)` (which sets the
/// node id and anything else per node).
pub struct Cluster {
    command: Box<dyn Fn(&str) -> Command + Send + Sync>,
    nodes: BTreeMap<String, Node>,
    /// The log lines of nodes that are gone, by node id, for diagnostics.
    gone: Vec<(String, String)>,
}

/// What one node's `/readyz` says of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub node_id: String,
    pub nodes: u64,
    pub shards_owned: u64,
    pub shards_total: u64,
}

impl Cluster {
    pub fn new(command: impl Fn(&str) -> Command + Send + Sync + 'static) -> Cluster {
        Cluster {
            command: Box::new(command),
            nodes: BTreeMap::new(),
            gone: Vec::new(),
        }
    }

    /// Starts node `id` and waits for its listeners (blocking: call it from
    /// `tokio::task::block_in_place` in an async test).
    pub fn start(&mut self, id: &str) -> anyhow::Result<&Daemon> {
        if self.nodes.contains_key(id) {
            bail!("node {id} runs already");
        }
        let daemon = Daemon::start((self.command)(id), START_WITHIN)
            .with_context(|| format!("starting node {id}"))?;
        let node = self.nodes.entry(id.to_owned()).or_insert(Node {
            daemon,
            paused: false,
        });
        Ok(&node.daemon)
    }

    /// The ids of the nodes that run (paused ones included).
    pub fn ids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// The daemon of node `id`; panics if it does not run.
    pub fn daemon(&self, id: &str) -> &Daemon {
        &self.node(id).daemon
    }

    fn node(&self, id: &str) -> &Node {
        self.nodes
            .get(id)
            .unwrap_or_else(|| panic!("node {id} does not run"))
    }

    /// The daemons that answer now: running, not paused.
    pub fn live(&self) -> impl Iterator<Item = (&str, &Daemon)> {
        self.nodes
            .iter()
            .filter(|(_, node)| !node.paused)
            .map(|(id, node)| (id.as_str(), &node.daemon))
    }

    /// SIGKILL: no shutdown hook runs, as in a crash. Returns when the process is gone.
    pub fn kill(&mut self, id: &str) {
        let mut node = self
            .nodes
            .remove(id)
            .unwrap_or_else(|| panic!("node {id} does not run"));
        node.daemon.kill();
        self.keep_log(id, &mut node.daemon);
    }

    fn keep_log(&mut self, id: &str, daemon: &mut Daemon) {
        for line in daemon.rest_of_log() {
            self.gone.push((id.to_owned(), line));
        }
    }

    /// Every node's log lines containing `needle` (those of nodes gone included), prefixed
    /// with the node id: what the test prints when it fails.
    pub fn log_lines(&mut self, needle: &str) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.gone);
        for (id, node) in &mut self.nodes {
            lines.extend(
                node.daemon
                    .rest_of_log()
                    .into_iter()
                    .map(|line| (id.clone(), line)),
            );
        }
        lines
            .into_iter()
            .filter(|(_, line)| line.contains(needle))
            .map(|(id, line)| format!("{id}: {line}"))
            .collect()
    }

    /// SIGSTOP: the process stands still (a long stall), its leases run out.
    pub fn pause(&mut self, id: &str) -> anyhow::Result<()> {
        signal(self.node(id).daemon.pid(), "STOP")?;
        self.nodes.get_mut(id).unwrap().paused = true;
        Ok(())
    }

    /// SIGCONT: the paused process runs on, unaware of the time it lost.
    pub fn resume(&mut self, id: &str) -> anyhow::Result<()> {
        signal(self.node(id).daemon.pid(), "CONT")?;
        self.nodes.get_mut(id).unwrap().paused = false;
        Ok(())
    }

    /// SIGTERM, then waits for the exit (blocking) and returns its status; the node is gone
    /// from the cluster either way.
    pub fn terminate(&mut self, id: &str) -> anyhow::Result<ExitStatus> {
        let mut node = self
            .nodes
            .remove(id)
            .unwrap_or_else(|| panic!("node {id} does not run"));
        let status = node.daemon.terminate();
        self.keep_log(id, &mut node.daemon);
        status
    }

    /// Each live node's view of the cluster, from its `/readyz` (`None` for a node that did
    /// not answer with one).
    pub async fn views(&self, client: &reqwest::Client) -> Vec<(String, Option<View>)> {
        let mut views = Vec::new();
        for (id, daemon) in self.live() {
            let view = daemon.readyz(client).await.ok().and_then(|ready| {
                // DESIGN §9 names the object `cluster`; it sits with the other checks.
                let cluster = match &ready["cluster"] {
                    serde_json::Value::Null => &ready["checks"]["cluster"],
                    top => top,
                };
                Some(View {
                    node_id: cluster["nodeId"].as_str()?.to_owned(),
                    nodes: cluster["nodes"].as_u64()?,
                    shards_owned: cluster["shardsOwned"].as_u64()?,
                    shards_total: cluster["shardsTotal"].as_u64()?,
                })
            });
            views.push((id.to_owned(), view));
        }
        views
    }

    /// The live nodes' views if they agree on a settled cluster: `expected` live nodes, each
    /// seeing `expected` nodes, each owning `total / expected` shards or one more, every shard
    /// owned once.
    pub async fn balanced(&self, client: &reqwest::Client, expected: u64) -> Option<Vec<View>> {
        let views: Vec<View> = self
            .views(client)
            .await
            .into_iter()
            .map(|(_, view)| view)
            .collect::<Option<_>>()?;
        let total = views.first()?.shards_total;
        let even = total / expected.max(1);
        let settled = views.len() as u64 == expected
            && views.iter().all(|v| {
                v.nodes == expected
                    && v.shards_total == total
                    && (even..=even + 1).contains(&v.shards_owned)
            })
            && views.iter().map(|v| v.shards_owned).sum::<u64>() == total;
        settled.then_some(views)
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// A request the fleet target received: its path and when it arrived.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub at: Instant,
}

#[derive(Default)]
struct Fleet {
    failing: Mutex<HashSet<String>>,
    hits: Mutex<Vec<Hit>>,
}

/// An HTTP target for a fleet: each integration checks a path of its own, answered 200 unless
/// the test made that path fail (500); every request is recorded with its path and time, so
/// a test can tell when, and how often, each integration was checked.
pub struct FleetTarget {
    pub url: String,
    fleet: Arc<Fleet>,
    _server: Server,
}

impl FleetTarget {
    pub async fn start() -> FleetTarget {
        let fleet = Arc::new(Fleet::default());
        let router = Router::new()
            .fallback(any(
                |State(fleet): State<Arc<Fleet>>, uri: Uri| async move {
                    let path = uri.path().to_owned();
                    let failing = fleet.failing.lock().unwrap().contains(&path);
                    fleet.hits.lock().unwrap().push(Hit {
                        path,
                        at: Instant::now(),
                    });
                    if failing {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ))
            .with_state(fleet.clone());
        let server = serve(router).await;
        FleetTarget {
            url: server.url(),
            fleet,
            _server: server,
        }
    }

    /// Makes `path` answer 500 (`true`) or 200 (`false`).
    pub fn fail(&self, path: &str, failing: bool) {
        let mut set = self.fleet.failing.lock().unwrap();
        if failing {
            set.insert(path.to_owned());
        } else {
            set.remove(path);
        }
    }

    /// Every path answers 200 again.
    pub fn heal_all(&self) {
        self.fleet.failing.lock().unwrap().clear();
    }

    /// The number of requests received so far.
    pub fn len(&self) -> usize {
        self.fleet.hits.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests received from the `from`-th on, in arrival order.
    pub fn hits_from(&self, from: usize) -> Vec<Hit> {
        let hits = self.fleet.hits.lock().unwrap();
        hits[from.min(hits.len())..].to_vec()
    }

    /// Every request received so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits_from(0)
    }
}
