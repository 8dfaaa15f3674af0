//! The dependency graph the supervisor keeps (DESIGN §10), and the pure rule of suppression:
//! an integration's failures are of class `dependency` while any integration it depends on,
//! directly or through others, is degraded or failed; `suppressedBy` names those.
//!
//! Suppression follows the graph rather than the dependencies' own suppression, so in a chain
//! A ← B ← C with A failing, B and C are both suppressed by A (B stays active, so a rule on
//! direct dependencies alone would let C count its failures). It is computed from statuses
//! only, with a visited set, so even a cycle (validation refuses them; two concurrent updates
//! could still make one) ends, and never keeps itself alive.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::lifecycle::Status;

/// What the graph knows of one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    tenant_id: Arc<str>,
    status: Status,
    depends_on: Arc<[Uuid]>,
}

/// The integrations the supervisor's monitors depend on, their statuses and their own
/// dependencies, with the reverse edges to find who a status change affects.
///
/// Only integrations that take part in a dependency are kept (the supervisor adds a monitor
/// when it has `dependsOn` or is named by one), so a fleet without dependencies costs nothing
/// here, and every operation but [`prune`](Self::prune) and [`remote`](Self::remote) (once per
/// reconciliation) is proportional to the dependencies involved, not to the fleet.
#[derive(Debug, Default)]
pub struct DependencyGraph {
    nodes: HashMap<Uuid, Node>,
    /// Who depends directly on each integration.
    dependents: HashMap<Uuid, HashSet<Uuid>>,
    /// Dependencies named but not known, with the tenant that names them: to be loaded.
    pending: HashMap<Uuid, Arc<str>>,
}

/// Whether an integration in this status suppresses its dependents' failures.
pub fn suppresses(status: Status) -> bool {
    matches!(status, Status::Degraded | Status::Failed)
}

impl DependencyGraph {
    /// Records (or replaces) what is known of `id`. Returns whether anything changed.
    pub fn set(
        &mut self,
        id: Uuid,
        tenant_id: Arc<str>,
        status: Status,
        depends_on: Arc<[Uuid]>,
    ) -> bool {
        let node = Node {
            tenant_id,
            status,
            depends_on,
        };
        if self.nodes.get(&id) == Some(&node) {
            return false;
        }
        if let Some(old) = self.nodes.get(&id) {
            for dependency in old.depends_on.iter() {
                if let Some(set) = self.dependents.get_mut(dependency) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.dependents.remove(dependency);
                    }
                }
            }
        }
        for dependency in node.depends_on.iter() {
            self.dependents.entry(*dependency).or_default().insert(id);
            if !self.nodes.contains_key(dependency) && *dependency != id {
                self.pending.insert(*dependency, node.tenant_id.clone());
            }
        }
        self.pending.remove(&id);
        self.nodes.insert(id, node);
        true
    }

    /// Whether some known integration depends on `id`.
    pub fn has_dependents(&self, id: Uuid) -> bool {
        self.dependents.contains_key(&id)
    }

    /// A new status for a known integration. Returns whether it changed.
    pub fn set_status(&mut self, id: Uuid, status: Status) -> bool {
        match self.nodes.get_mut(&id) {
            Some(node) if node.status != status => {
                node.status = status;
                true
            }
            _ => false,
        }
    }

    /// The integration is gone (deleted), or no longer of interest.
    pub fn remove(&mut self, id: Uuid) {
        self.set(id, Arc::from(""), Status::Draft, Arc::from([]));
        self.nodes.remove(&id);
        self.pending.remove(&id);
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The degraded or failed integrations `id` depends on, directly or through others,
    /// sorted. Empty for an unknown integration.
    pub fn suppressed_by(&self, id: Uuid) -> Vec<Uuid> {
        let mut seen = HashSet::from([id]);
        let mut stack: Vec<Uuid> = self
            .nodes
            .get(&id)
            .map(|node| node.depends_on.to_vec())
            .unwrap_or_default();
        let mut suppressing = Vec::new();
        while let Some(next) = stack.pop() {
            if !seen.insert(next) {
                continue;
            }
            if let Some(node) = self.nodes.get(&next) {
                if suppresses(node.status) {
                    suppressing.push(next);
                }
                stack.extend(node.depends_on.iter().copied());
            }
        }
        suppressing.sort_unstable();
        suppressing
    }

    /// Every integration that depends on `id`, directly or through others (not `id` itself).
    pub fn affected(&self, id: Uuid) -> Vec<Uuid> {
        let mut seen = HashSet::from([id]);
        let mut stack = vec![id];
        let mut affected = Vec::new();
        while let Some(next) = stack.pop() {
            for dependent in self.dependents.get(&next).into_iter().flatten() {
                if seen.insert(*dependent) {
                    affected.push(*dependent);
                    stack.push(*dependent);
                }
            }
        }
        affected
    }

    /// Dependencies named by known integrations but not known themselves, with the tenant
    /// that names them: what to load from the store.
    pub fn unknown(&self) -> Vec<(Arc<str>, Uuid)> {
        let mut unknown: Vec<(Arc<str>, Uuid)> = self
            .pending
            .iter()
            .filter(|(id, _)| self.dependents.contains_key(id))
            .map(|(id, tenant)| (tenant.clone(), *id))
            .collect();
        unknown.sort_unstable();
        unknown
    }

    /// Known integrations for which `keep` is false and that nobody depends on any more:
    /// forgotten (the supervisor keeps its own monitors and what they depend on).
    pub fn prune(&mut self, keep: impl Fn(Uuid) -> bool) {
        let dependents = &self.dependents;
        self.pending.retain(|id, _| dependents.contains_key(id));
        loop {
            let unused: Vec<Uuid> = self
                .nodes
                .keys()
                .copied()
                .filter(|id| !keep(*id) && !self.dependents.contains_key(id))
                .collect();
            if unused.is_empty() {
                return;
            }
            for id in unused {
                self.remove(id);
            }
        }
    }

    /// Known integrations for which `local` is false (their status comes from the store),
    /// grouped by tenant.
    pub fn remote(&self, local: impl Fn(Uuid) -> bool) -> Vec<(Arc<str>, Vec<Uuid>)> {
        let mut by_tenant: HashMap<Arc<str>, Vec<Uuid>> = HashMap::new();
        for (id, node) in &self.nodes {
            if !local(*id) {
                by_tenant
                    .entry(node.tenant_id.clone())
                    .or_default()
                    .push(*id);
            }
        }
        by_tenant.into_iter().collect()
    }

    /// The tenant of a known integration.
    pub fn tenant(&self, id: Uuid) -> Option<Arc<str>> {
        self.nodes.get(&id).map(|node| node.tenant_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant() -> Arc<str> {
        Arc::from("t")
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect()
    }

    #[test]
    fn a_chain_is_suppressed_by_its_failing_root() {
        let ids = ids(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let mut graph = DependencyGraph::default();
        graph.set(a, tenant(), Status::Active, Arc::from([]));
        graph.set(b, tenant(), Status::Active, Arc::from([a]));
        graph.set(c, tenant(), Status::Active, Arc::from([b]));
        assert!(graph.suppressed_by(c).is_empty());
        assert!(graph.set_status(a, Status::Degraded));
        assert_eq!(graph.suppressed_by(b), [a]);
        assert_eq!(graph.suppressed_by(c), [a]);
        assert!(graph.suppressed_by(a).is_empty());
        let mut affected = graph.affected(a);
        affected.sort();
        assert_eq!(affected, [b, c]);
        assert!(graph.set_status(a, Status::Active));
        assert!(graph.suppressed_by(c).is_empty());
        // Paused and pending dependencies suppress nothing.
        for status in [Status::Paused, Status::PendingVerification, Status::Draft] {
            graph.set_status(a, status);
            assert!(graph.suppressed_by(b).is_empty(), "{status}");
        }
    }

    #[test]
    fn unknown_dependencies_are_listed_with_their_tenant_and_pruned_when_unused() {
        let ids = ids(2);
        let (a, b) = (ids[0], ids[1]);
        let mut graph = DependencyGraph::default();
        graph.set(b, tenant(), Status::Active, Arc::from([a]));
        assert_eq!(graph.unknown(), [(tenant(), a)]);
        graph.set(a, tenant(), Status::Failed, Arc::from([]));
        assert!(graph.unknown().is_empty());
        graph.prune(|id| id == b);
        assert!(graph.contains(a), "b still depends on a");
        graph.set(b, tenant(), Status::Active, Arc::from([]));
        graph.prune(|id| id == b);
        assert!(!graph.contains(a));
    }

    proptest! {
        /// On any graph (cycles included): suppressedBy is exactly the unhealthy integrations
        /// reachable along dependsOn, never the integration itself; and a status change
        /// affects exactly those whose reachable set contains it.
        #[test]
        fn suppression_is_reachability(
            edges in proptest::collection::vec((0usize..8, 0usize..8), 0..20),
            unhealthy in proptest::collection::vec(any::<bool>(), 8),
        ) {
            let nodes = ids(8);
            let mut graph = DependencyGraph::default();
            for (i, id) in nodes.iter().enumerate() {
                let depends_on: Vec<Uuid> = edges
                    .iter()
                    .filter(|(from, _)| *from == i)
                    .map(|(_, to)| nodes[*to])
                    .collect();
                let status = if unhealthy[i] { Status::Failed } else { Status::Active };
                graph.set(*id, tenant(), status, Arc::from(depends_on));
            }
            let reachable = |from: usize| {
                let mut seen = vec![false; 8];
                let mut stack = vec![from];
                while let Some(n) = stack.pop() {
                    for (f, t) in &edges {
                        if *f == n && !seen[*t] {
                            seen[*t] = true;
                            stack.push(*t);
                        }
                    }
                }
                seen
            };
            for (i, id) in nodes.iter().enumerate() {
                let seen = reachable(i);
                let expected: Vec<Uuid> = (0..8)
                    .filter(|j| *j != i && seen[*j] && unhealthy[*j])
                    .map(|j| nodes[j])
                    .collect();
                prop_assert_eq!(graph.suppressed_by(*id), expected);
                let mut affected = graph.affected(*id);
                affected.sort();
                let expected: Vec<Uuid> = (0..8)
                    .filter(|j| *j != i && reachable(*j)[i])
                    .map(|j| nodes[j])
                    .collect();
                prop_assert_eq!(affected, expected);
            }
        }
    }
}
