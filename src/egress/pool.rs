//! The keep-alive pool (`egress.keep_alive`): idle HTTP/1.1 connections by scheme, host name
//! and dialled address, each closed after `egress.keep_alive_idle_seconds` unused. A pooled
//! connection is only ever found after the policy allowed its address again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use url::Host;

use super::client::Origin;
use super::exchange::{Connection, Sender};

/// An idle HTTP/1.1 connection: nothing polls it while it waits, so nothing it does can
/// outlive a check; a server's close is noticed when it is next used.
pub(super) struct Idle {
    pub(super) sender: Sender,
    pub(super) connection: Connection,
    pub(super) since: Instant,
}

/// A pooled connection is found again only for the same scheme, host name (the TLS server
/// name and the `Host` a later request would send) and dialled address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PoolKey {
    https: bool,
    host: Host<String>,
    address: SocketAddr,
}

impl PoolKey {
    pub(super) fn new(origin: &Origin, address: SocketAddr) -> PoolKey {
        PoolKey {
            https: origin.https,
            host: origin.host.clone(),
            address,
        }
    }
}

/// Idle connections kept for one address at most: a check holds one connection at a time,
/// so more than a few per address only happens under bursts.
const MAX_IDLE_PER_KEY: usize = 8;

/// Idle connections by [`PoolKey`], each dropped (closed) after `idle` unused.
pub(super) struct Pool {
    idle: Duration,
    state: std::sync::Mutex<PoolState>,
}

struct PoolState {
    connections: HashMap<PoolKey, Vec<Idle>>,
    swept: Instant,
}

impl Pool {
    pub(super) fn new(idle: Duration) -> Pool {
        Pool {
            idle,
            state: std::sync::Mutex::new(PoolState {
                connections: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// The most recently used live idle connection for `key`.
    pub(super) fn take(&self, key: &PoolKey) -> Option<Idle> {
        let mut expired = Vec::new();
        let found = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.sweep(&mut state, &mut expired);
            let list = state.connections.get_mut(key)?;
            let mut found = None;
            while let Some(idle) = list.pop() {
                if idle.since.elapsed() < self.idle && !idle.sender.is_closed() {
                    found = Some(idle);
                    break;
                }
                expired.push(idle);
            }
            found
        };
        // Sockets are closed outside the lock.
        drop(expired);
        found
    }

    pub(super) fn put(&self, key: PoolKey, idle: Idle) {
        let mut expired = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut state, &mut expired);
        let list = state.connections.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(idle);
        } else {
            expired.push(idle);
        }
        drop(state);
        drop(expired);
    }

    /// Every so often, closes what has been idle too long everywhere, so that targets no
    /// longer checked do not keep sockets open.
    fn sweep(&self, state: &mut PoolState, expired: &mut Vec<Idle>) {
        let every = (self.idle / 2).max(Duration::from_secs(1));
        if state.swept.elapsed() < every {
            return;
        }
        state.swept = Instant::now();
        let bound = self.idle;
        state.connections.retain(|_, list| {
            let (keep, old): (Vec<Idle>, Vec<Idle>) = std::mem::take(list)
                .into_iter()
                .partition(|idle| idle.since.elapsed() < bound);
            expired.extend(old);
            *list = keep;
            !list.is_empty()
        });
    }
}
