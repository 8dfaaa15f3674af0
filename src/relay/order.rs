//! The relay's per-integration ordering state, with no I/O: which sequence each integration may
//! send next, which events are in flight, what the fast path may publish at once and what it
//! leaves to the sweep, which rows a sweep skips, and what a failed publish does to the rest
//! of a pass. The worker asks it before every publish and tells it every outcome; the NATS and
//! store calls stay outside, so every rule here is tested without a server.
//!
//! The guarantees (the proptest at the end walks random interleavings to check them): an
//! integration never has two events in flight, its events go out in sequence order, and none
//! is skipped: an event that is not sent stays in the outbox and the next sweep resumes its
//! integration at it.

use std::collections::{HashMap, HashSet, VecDeque};

use uuid::Uuid;

use crate::store::outbox::PendingEvent;

/// The type of the event after which an integration has none.
pub(super) const DELETED: &str = "integration.deleted";

/// Per-integration progress of one relay.
#[derive(Debug, Default)]
pub(super) struct Order {
    /// Per integration, the sequence this relay may send next: every lower one was sent by
    /// it (or was already marked when a sweep read the table). An integration that is not
    /// here (first event since start) goes through a sweep, which reads its order from the
    /// table.
    next: HashMap<Uuid, i64>,
    /// JetStream fast path: per integration with an event awaiting its ack, the events
    /// waiting behind it, so an integration never has two events in flight.
    in_flight: HashMap<Uuid, VecDeque<PendingEvent>>,
    /// An event came that the fast path could not place in order (or was dropped): sweep.
    sweep_wanted: bool,
    /// Integrations whose `deleted` event went out, forgotten at the prune run after next.
    deleted: Vec<Uuid>,
    forgetting: Vec<Uuid>,
    /// Integrations whose publish failed in the current pass: the rest of the pass leaves
    /// them alone, so none of their later events overtakes the failed one.
    blocked: HashSet<Uuid>,
}

impl Order {
    // ---- The fast path: events handed over right after their commits.

    /// The handed-over events that may go out now, in order: each is its integration's next,
    /// and `next` moves past it. An event already sent (by a sweep that read the row before
    /// its handoff came) is dropped; a gap (an earlier handoff late or lost) or an
    /// integration not seen since start asks for a sweep, which has the order in the table.
    pub(super) fn admit(&mut self, events: Vec<PendingEvent>) -> Vec<PendingEvent> {
        let mut ready = Vec::with_capacity(events.len());
        for event in events {
            match self.next.get(&event.integration_id) {
                Some(&next) if event.sequence < next => {}
                Some(&next) if event.sequence == next => {
                    self.next.insert(event.integration_id, next + 1);
                    ready.push(event);
                }
                _ => self.sweep_wanted = true,
            }
        }
        ready
    }

    /// JetStream: an admitted event to send now (`Some`), or `None` when its integration has
    /// an event in flight and this one now waits behind it.
    pub(super) fn hold(&mut self, event: PendingEvent) -> Option<PendingEvent> {
        match self.in_flight.get_mut(&event.integration_id) {
            Some(queue) => {
                queue.push_back(event);
                None
            }
            None => {
                self.in_flight.insert(event.integration_id, VecDeque::new());
                Some(event)
            }
        }
    }

    /// JetStream: the in-flight `event` was acknowledged. Returns its integration's next
    /// waiting event to send now; with `can_send` false (the publisher changed meanwhile)
    /// the waiting events are left to a sweep, which resumes at the first of them.
    pub(super) fn acked(&mut self, event: &PendingEvent, can_send: bool) -> Option<PendingEvent> {
        self.forget_if_deleted(event);
        let id = event.integration_id;
        match self.in_flight.get_mut(&id).and_then(VecDeque::pop_front) {
            Some(next) if can_send => Some(next),
            Some(next) => {
                self.next.insert(id, next.sequence);
                self.in_flight.remove(&id);
                self.sweep_wanted = true;
                None
            }
            None => {
                self.in_flight.remove(&id);
                None
            }
        }
    }

    /// JetStream: the in-flight `event` failed. It and those waiting behind it stay in the
    /// outbox; the next sweep resumes the integration at it.
    pub(super) fn failed(&mut self, event: &PendingEvent) {
        self.next.insert(event.integration_id, event.sequence);
        self.in_flight.remove(&event.integration_id);
    }

    /// Asks for a sweep (the fast path could not publish: no publisher yet).
    pub(super) fn want_sweep(&mut self) {
        self.sweep_wanted = true;
    }

    /// Whether a sweep was asked for since the last call.
    pub(super) fn take_sweep_wanted(&mut self) -> bool {
        std::mem::take(&mut self.sweep_wanted)
    }

    /// The relay stops: whatever waits for an ack is abandoned (it stays in the outbox).
    /// Forgets what it knows of the integrations `keep` refuses (their shard went to another
    /// node): when it comes back, a sweep reads their order from the table afresh, so an
    /// event this relay sent but could not mark is not skipped forever.
    pub(super) fn retain(&mut self, keep: impl Fn(Uuid) -> bool) {
        self.next.retain(|id, _| keep(*id));
        self.in_flight.retain(|id, _| keep(*id));
    }

    pub(super) fn abandon_in_flight(&mut self) {
        self.in_flight.clear();
    }

    // ---- The sweep: the durable path over the table.

    /// A pass over the table begins: no integration is blocked yet.
    pub(super) fn begin_pass(&mut self) {
        self.blocked.clear();
    }

    /// Whether a sweep leaves `event` alone: this relay sent it already (its mark may not be
    /// written yet), or the fast path has an event of its integration in flight.
    pub(super) fn sweep_skips(&self, event: &PendingEvent) -> bool {
        self.in_flight.contains_key(&event.integration_id)
            || self
                .next
                .get(&event.integration_id)
                .is_some_and(|&next| event.sequence < next)
    }

    /// The rows of a page (in `(integration, sequence)` order) that this pass publishes: not
    /// skipped ([`Order::sweep_skips`]) and not of an integration whose publish failed
    /// earlier in the pass.
    pub(super) fn sweep_page(&self, page: Vec<PendingEvent>) -> Vec<PendingEvent> {
        page.into_iter()
            .filter(|event| {
                !self.sweep_skips(event) && !self.blocked.contains(&event.integration_id)
            })
            .collect()
    }

    /// JetStream sweep: `event` was acknowledged; its integration's next event may follow
    /// in the next round.
    pub(super) fn sweep_acked(&mut self, rounds: &mut Rounds, event: &PendingEvent) {
        self.next.insert(event.integration_id, event.sequence + 1);
        self.forget_if_deleted(event);
        rounds.resume(event.integration_id);
    }

    /// JetStream sweep: `event` failed. Its integration is left alone for the rest of the
    /// pass (its later events stay in the outbox) and resumes at it in the next one; other
    /// integrations carry on.
    pub(super) fn sweep_failed(&mut self, rounds: &mut Rounds, event: &PendingEvent) {
        self.next.insert(event.integration_id, event.sequence);
        self.blocked.insert(event.integration_id);
        rounds.drop_rest(event.integration_id);
    }

    // ---- Core NATS: a batch is published, flushed, and then counts as sent, or not at all.

    /// A sweep's batch is about to be published: each integration's `next` moves past it.
    pub(super) fn claim(&mut self, events: &[PendingEvent]) {
        for event in events {
            self.next.insert(event.integration_id, event.sequence + 1);
        }
    }

    /// A batch (admitted or claimed) was flushed.
    pub(super) fn published(&mut self, events: &[PendingEvent]) {
        events
            .iter()
            .for_each(|event| self.forget_if_deleted(event));
    }

    /// A batch (admitted or claimed) failed: each integration resumes at its first event of
    /// it, from the table.
    pub(super) fn unsent(&mut self, events: &[PendingEvent]) {
        for event in events.iter().rev() {
            self.next.insert(event.integration_id, event.sequence);
        }
    }

    // ---- Forgetting deleted integrations.

    /// After `event` went out: a deleted integration has no next event, so its entry in
    /// `next` goes, but only at a later prune run: until its mark is written, the entry is
    /// what keeps a sweep from sending the `deleted` event again.
    fn forget_if_deleted(&mut self, event: &PendingEvent) {
        if event.event_type == DELETED {
            self.deleted.push(event.integration_id);
        }
    }

    /// A prune run: integrations deleted a prune interval ago or more (their marks long
    /// written) are forgotten; those deleted since wait for the next run.
    pub(super) fn forget_deleted(&mut self) {
        for id in std::mem::replace(&mut self.forgetting, std::mem::take(&mut self.deleted)) {
            self.next.remove(&id);
        }
    }
}

/// A JetStream sweep's page in rounds: each round takes the next event of up to
/// `max_in_flight` integrations, one per integration; an acknowledged integration's next
/// event joins a later round, a failed one's are dropped from the page.
#[derive(Debug, Default)]
pub(super) struct Rounds {
    /// Per integration (in page order), its events not yet sent.
    queues: VecDeque<VecDeque<PendingEvent>>,
    /// The rest of each integration of the current round, until its outcome is known.
    waiting: HashMap<Uuid, VecDeque<PendingEvent>>,
}

impl Rounds {
    /// `page` must be in `(integration, sequence)` order, as the table returns it.
    pub(super) fn new(page: Vec<PendingEvent>) -> Rounds {
        let mut queues: VecDeque<VecDeque<PendingEvent>> = VecDeque::new();
        for event in page {
            match queues.back_mut() {
                Some(queue) if queue[0].integration_id == event.integration_id => {
                    queue.push_back(event)
                }
                _ => queues.push_back(VecDeque::from([event])),
            }
        }
        Rounds {
            queues,
            waiting: HashMap::new(),
        }
    }

    /// The next round: the first event of up to `width` integrations; empty when the page is
    /// done. Every event of a round is settled ([`Order::sweep_acked`] or
    /// [`Order::sweep_failed`]) before the next round.
    pub(super) fn next_round(&mut self, width: usize) -> Vec<PendingEvent> {
        debug_assert!(self.waiting.is_empty(), "a round was left unsettled");
        let take = self.queues.len().min(width);
        let mut round = Vec::with_capacity(take);
        for mut queue in self.queues.drain(..take) {
            let event = queue.pop_front().expect("queues are never empty");
            if !queue.is_empty() {
                self.waiting.insert(event.integration_id, queue);
            }
            round.push(event);
        }
        round
    }

    fn resume(&mut self, integration_id: Uuid) {
        if let Some(queue) = self.waiting.remove(&integration_id) {
            self.queues.push_back(queue);
        }
    }

    fn drop_rest(&mut self, integration_id: Uuid) {
        self.waiting.remove(&integration_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integration `n`'s event `sequence` (`deleted` makes it the `deleted` event).
    fn event(n: u128, sequence: i64) -> PendingEvent {
        PendingEvent {
            event_id: Uuid::from_u128(n << 64 | sequence as u128),
            integration_id: Uuid::from_u128(n),
            sequence,
            event_type: "integration.updated".to_owned(),
            subject: format!("integrations.t.{n}.updated"),
            payload: String::new(),
        }
    }

    fn deleted(n: u128, sequence: i64) -> PendingEvent {
        PendingEvent {
            event_type: DELETED.to_owned(),
            ..event(n, sequence)
        }
    }

    fn keys(events: &[PendingEvent]) -> Vec<(u128, i64)> {
        events
            .iter()
            .map(|event| (event.integration_id.as_u128(), event.sequence))
            .collect()
    }

    /// An order whose integration 1 may send `next` (none: not seen since start).
    fn knowing(next: Option<i64>) -> Order {
        let mut order = Order::default();
        if let Some(next) = next {
            order.next.insert(Uuid::from_u128(1), next);
        }
        order
    }

    #[test]
    fn admit_sends_only_an_integrations_next_event() {
        // (next known, handed-over sequence, admitted, next after, sweep wanted)
        for (next, sequence, admitted, after, sweep) in [
            (Some(3), 3, true, Some(4), false),
            (Some(3), 2, false, Some(3), false), // sent already by a sweep
            (Some(3), 4, false, Some(3), true),  // a gap: 3's handoff is late or lost
            (None, 1, false, None, true),        // not seen since start
        ] {
            let mut order = knowing(next);
            let ready = order.admit(vec![event(1, sequence)]);
            let case = format!("next {next:?}, handed over {sequence}");
            assert_eq!(ready.len(), usize::from(admitted), "{case}");
            assert_eq!(
                order.next.get(&Uuid::from_u128(1)).copied(),
                after,
                "{case}"
            );
            assert_eq!(order.take_sweep_wanted(), sweep, "{case}");
            assert!(!order.take_sweep_wanted(), "taking clears it: {case}");
        }
    }

    #[test]
    fn admit_takes_consecutive_events_of_one_batch_in_order() {
        let mut order = knowing(Some(1));
        order.next.insert(Uuid::from_u128(2), 5);
        let ready = order.admit(vec![
            event(1, 1),
            event(2, 5),
            event(1, 2),
            event(1, 4),
            event(2, 6),
        ]);
        assert_eq!(keys(&ready), [(1, 1), (2, 5), (1, 2), (2, 6)]);
        assert!(order.take_sweep_wanted(), "1's event 4 comes after a gap");
    }

    #[test]
    fn jetstream_fast_path_keeps_one_event_in_flight_per_integration() {
        let mut order = knowing(Some(1));
        let ready = order.admit(vec![event(1, 1), event(1, 2), event(1, 3)]);
        let sent: Vec<_> = ready.into_iter().filter_map(|e| order.hold(e)).collect();
        assert_eq!(keys(&sent), [(1, 1)]);
        assert!(
            order.sweep_skips(&event(1, 3)),
            "in flight: the sweep waits"
        );
        let second = order.acked(&event(1, 1), true).expect("2 follows 1");
        assert_eq!(keys(&[second]), [(1, 2)]);
        let third = order.acked(&event(1, 2), true).expect("3 follows 2");
        assert_eq!(keys(&[third]), [(1, 3)]);
        assert!(order.acked(&event(1, 3), true).is_none());
        assert!(order.in_flight.is_empty());
        assert!(!order.sweep_skips(&event(1, 4)));
        assert!(order.sweep_skips(&event(1, 3)), "sent, its mark on the way");
    }

    #[test]
    fn an_ack_after_the_publisher_changed_leaves_the_rest_to_the_sweep() {
        let mut order = knowing(Some(1));
        for event in order.admit(vec![event(1, 1), event(1, 2), event(1, 3)]) {
            order.hold(event);
        }
        assert!(order.acked(&event(1, 1), false).is_none());
        assert_eq!(
            order.next[&Uuid::from_u128(1)],
            2,
            "resumes at the first waiting"
        );
        assert!(order.in_flight.is_empty());
        assert!(order.take_sweep_wanted());
        assert_eq!(
            keys(&order.sweep_page(vec![event(1, 1), event(1, 2), event(1, 3)])),
            [(1, 2), (1, 3)]
        );
    }

    #[test]
    fn a_failed_fast_publish_rewinds_its_integration_to_it() {
        let mut order = knowing(Some(1));
        for event in order.admit(vec![event(1, 1), event(1, 2)]) {
            order.hold(event);
        }
        order.failed(&event(1, 1));
        assert_eq!(order.next[&Uuid::from_u128(1)], 1);
        assert!(
            order.in_flight.is_empty(),
            "2 waited behind 1: dropped with it"
        );
        assert_eq!(
            keys(&order.sweep_page(vec![event(1, 1), event(1, 2)])),
            [(1, 1), (1, 2)]
        );
    }

    #[test]
    fn sweep_skips_what_this_relay_sent_and_what_is_in_flight() {
        let mut order = knowing(Some(3));
        order.next.insert(Uuid::from_u128(2), 1);
        order.hold(event(2, 1));
        // (event, skipped)
        for (event, skipped) in [
            (event(1, 2), true),
            (event(1, 3), false),
            (event(1, 4), false),
            (event(2, 1), true),
            (event(2, 2), true),
            (event(3, 1), false),
        ] {
            let key = keys(std::slice::from_ref(&event));
            assert_eq!(order.sweep_skips(&event), skipped, "{key:?}");
        }
    }

    #[test]
    fn rounds_send_one_event_per_integration_and_at_most_the_width() {
        let page = vec![
            event(1, 1),
            event(1, 2),
            event(2, 1),
            event(3, 1),
            event(3, 2),
            event(3, 3),
        ];
        let mut order = Order::default();
        order.begin_pass();
        let mut rounds = Rounds::new(order.sweep_page(page));
        let mut sent = Vec::new();
        loop {
            let round = rounds.next_round(2);
            if round.is_empty() {
                break;
            }
            assert!(round.len() <= 2);
            sent.push(keys(&round));
            for event in &round {
                order.sweep_acked(&mut rounds, event);
            }
        }
        assert_eq!(
            sent,
            [
                vec![(1, 1), (2, 1)],
                vec![(3, 1), (1, 2)],
                vec![(3, 2)],
                vec![(3, 3)],
            ]
        );
        assert!(order.sweep_skips(&event(3, 3)));
    }

    #[test]
    fn a_failed_sweep_publish_blocks_its_integration_for_the_rest_of_the_pass() {
        let mut order = Order::default();
        order.begin_pass();
        let mut rounds =
            Rounds::new(order.sweep_page(vec![event(1, 1), event(1, 2), event(2, 1), event(2, 2)]));
        let round = rounds.next_round(8);
        assert_eq!(keys(&round), [(1, 1), (2, 1)]);
        order.sweep_failed(&mut rounds, &round[0]);
        order.sweep_acked(&mut rounds, &round[1]);
        assert_eq!(keys(&rounds.next_round(8)), [(2, 2)]);
        order.sweep_acked(&mut rounds, &event(2, 2));
        assert!(rounds.next_round(8).is_empty());
        // A later page of the same pass: 1 stays blocked; the next pass resumes it at 1.
        assert!(order.sweep_page(vec![event(1, 3), event(3, 1)]).len() == 1);
        order.begin_pass();
        assert_eq!(
            keys(&order.sweep_page(vec![event(1, 1), event(1, 2), event(2, 2)])),
            [(1, 1), (1, 2)]
        );
    }

    #[test]
    fn a_core_batch_counts_as_sent_only_when_flushed() {
        for flushed in [true, false] {
            let mut order = knowing(Some(2));
            let page = order.sweep_page(vec![event(1, 2), event(1, 3), event(2, 1)]);
            order.claim(&page);
            let after: Vec<_> = [event(1, 3), event(2, 1)]
                .iter()
                .map(|event| order.sweep_skips(event))
                .collect();
            assert_eq!(after, [true, true], "claimed");
            if flushed {
                order.published(&page);
                assert_eq!(order.next[&Uuid::from_u128(1)], 4);
                assert_eq!(order.next[&Uuid::from_u128(2)], 2);
            } else {
                order.unsent(&page);
                assert_eq!(order.next[&Uuid::from_u128(1)], 2, "its first of the batch");
                assert_eq!(order.next[&Uuid::from_u128(2)], 1);
            }
        }
    }

    #[test]
    fn a_deleted_integration_is_forgotten_at_the_prune_run_after_next() {
        let mut order = knowing(Some(7));
        let ready = order.admit(vec![deleted(1, 7)]);
        order.published(&ready);
        order.forget_deleted();
        assert!(
            order.sweep_skips(&deleted(1, 7)),
            "its mark may still be on its way"
        );
        order.forget_deleted();
        assert!(!order.next.contains_key(&Uuid::from_u128(1)));
        // Its handoff, should it come this late, goes to a sweep, which finds it marked.
        assert!(order.admit(vec![deleted(1, 7)]).is_empty());
        assert!(order.take_sweep_wanted());
    }

    /// A relay's ordering state driven by random interleavings of commits, handoffs (some
    /// lost), acks, failures, sweeps (paged), marks and prune runs, against a model of the
    /// outbox table and of NATS. What NATS receives must be, per integration, exactly its
    /// sequences in order; and after the acks and one clean sweep, every committed event.
    mod interleavings {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Commit {
                integration: u8,
                handoff: bool,
                delete: bool,
            },
            Receive {
                count: usize,
                ok: bool,
            },
            Ack {
                pick: usize,
                ok: bool,
            },
            Sweep {
                failures: Vec<bool>,
                page: usize,
            },
            FlushMarks,
            Prune,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (0u8..3, prop::bool::weighted(0.8), prop::bool::weighted(0.05)).prop_map(
                    |(integration, handoff, delete)| Step::Commit { integration, handoff, delete }
                ),
                3 => (1usize..4, prop::bool::weighted(0.8))
                    .prop_map(|(count, ok)| Step::Receive { count, ok }),
                3 => (0usize..8, prop::bool::weighted(0.8))
                    .prop_map(|(pick, ok)| Step::Ack { pick, ok }),
                2 => (prop::collection::vec(prop::bool::weighted(0.2), 1..6), 1usize..5)
                    .prop_map(|(failures, page)| Step::Sweep { failures, page }),
                1 => Just(Step::FlushMarks),
                1 => Just(Step::Prune),
            ]
        }

        struct Model {
            jetstream: bool,
            width: usize,
            order: Order,
            /// Per integration, its committed events (sequence = index + 1).
            committed: Vec<Vec<PendingEvent>>,
            closed: Vec<bool>,
            marked: HashSet<Uuid>,
            /// Published, marks not yet written.
            marking: Vec<Uuid>,
            handoffs: VecDeque<PendingEvent>,
            /// JetStream fast path: sent, ack awaited.
            in_flight: Vec<PendingEvent>,
            publisher: bool,
            /// Per integration, the sequences NATS received, in order.
            delivered: Vec<Vec<i64>>,
        }

        impl Model {
            fn new(jetstream: bool, width: usize) -> Model {
                Model {
                    jetstream,
                    width,
                    order: Order::default(),
                    committed: vec![Vec::new(); 3],
                    closed: vec![false; 3],
                    marked: HashSet::new(),
                    marking: Vec::new(),
                    handoffs: VecDeque::new(),
                    in_flight: Vec::new(),
                    publisher: false,
                    delivered: vec![Vec::new(); 3],
                }
            }

            fn deliver(&mut self, event: &PendingEvent) {
                let index = event.integration_id.as_u128() as usize;
                let delivered = &mut self.delivered[index];
                assert_eq!(
                    delivered.len() as i64 + 1,
                    event.sequence,
                    "integration {index}: after {delivered:?} came {}",
                    event.sequence
                );
                delivered.push(event.sequence);
                self.marking.push(event.event_id);
            }

            fn check_in_flight(&self) {
                let integrations: HashSet<Uuid> =
                    self.in_flight.iter().map(|e| e.integration_id).collect();
                assert_eq!(integrations.len(), self.in_flight.len(), "two in flight");
            }

            fn apply(&mut self, step: Step) {
                match step {
                    Step::Commit {
                        integration,
                        handoff,
                        delete,
                    } => {
                        let index = integration as usize;
                        if self.closed[index] {
                            return;
                        }
                        let sequence = self.committed[index].len() as i64 + 1;
                        let event = if delete {
                            self.closed[index] = true;
                            deleted(index as u128, sequence)
                        } else {
                            event(index as u128, sequence)
                        };
                        self.committed[index].push(event.clone());
                        if handoff {
                            self.handoffs.push_back(event);
                        }
                    }
                    Step::Receive { count, ok } => {
                        let count = count.min(self.handoffs.len());
                        let events: Vec<_> = self.handoffs.drain(..count).collect();
                        if events.is_empty() {
                            return;
                        }
                        if !self.publisher {
                            self.order.want_sweep();
                            return;
                        }
                        let ready = self.order.admit(events);
                        if self.jetstream {
                            for event in ready {
                                if let Some(event) = self.order.hold(event) {
                                    self.in_flight.push(event);
                                }
                            }
                            self.check_in_flight();
                        } else if !ready.is_empty() {
                            if ok {
                                ready.iter().for_each(|event| self.deliver(event));
                                self.order.published(&ready);
                            } else {
                                self.order.unsent(&ready);
                                self.publisher = false;
                            }
                        }
                    }
                    Step::Ack { pick, ok } => {
                        if self.in_flight.is_empty() {
                            return;
                        }
                        let event = self.in_flight.remove(pick % self.in_flight.len());
                        if ok {
                            self.deliver(&event);
                            if let Some(next) = self.order.acked(&event, self.publisher) {
                                self.in_flight.push(next);
                            }
                            self.check_in_flight();
                        } else {
                            self.order.failed(&event);
                            self.publisher = false;
                        }
                    }
                    Step::Sweep { failures, page } => self.sweep(&failures, page),
                    Step::FlushMarks => self.marked.extend(self.marking.drain(..)),
                    Step::Prune => {
                        self.marked.extend(self.marking.drain(..));
                        self.order.forget_deleted();
                    }
                }
            }

            /// One pass, paged as the outbox pages: by `(integration, sequence)` after the
            /// last row read, `page` rows at a time.
            fn sweep(&mut self, failures: &[bool], page: usize) {
                self.order.take_sweep_wanted();
                self.publisher = true;
                self.order.begin_pass();
                let mut outcomes = failures.iter().cycle().map(|failed| !failed);
                let mut position = (0u128, 0i64);
                let mut failed = false;
                loop {
                    let rows: Vec<PendingEvent> = self
                        .committed
                        .iter()
                        .flatten()
                        .filter(|e| !self.marked.contains(&e.event_id))
                        .filter(|e| (e.integration_id.as_u128(), e.sequence) > position)
                        .take(page)
                        .cloned()
                        .collect();
                    let Some(last) = rows.last() else { break };
                    position = (last.integration_id.as_u128(), last.sequence);
                    let full = rows.len() >= page;
                    let rows = self.order.sweep_page(rows);
                    if self.jetstream {
                        let mut rounds = Rounds::new(rows);
                        loop {
                            let round = rounds.next_round(self.width);
                            if round.is_empty() {
                                break;
                            }
                            assert!(round.len() <= self.width);
                            let mut busy: HashSet<Uuid> =
                                self.in_flight.iter().map(|e| e.integration_id).collect();
                            for event in &round {
                                assert!(busy.insert(event.integration_id), "two in flight");
                            }
                            for event in &round {
                                if outcomes.next().unwrap() {
                                    self.deliver(event);
                                    self.order.sweep_acked(&mut rounds, event);
                                } else {
                                    self.order.sweep_failed(&mut rounds, event);
                                    failed = true;
                                }
                            }
                        }
                    } else {
                        self.order.claim(&rows);
                        if outcomes.next().unwrap() {
                            rows.iter().for_each(|event| self.deliver(event));
                            self.order.published(&rows);
                        } else {
                            self.order.unsent(&rows);
                            failed = true;
                            break;
                        }
                    }
                    if !full {
                        break;
                    }
                }
                if failed {
                    self.publisher = false;
                }
            }

            /// Every ack arrives, the marks are written and a clean sweep runs: then NATS has
            /// had every committed event.
            fn settle(&mut self) {
                while !self.in_flight.is_empty() {
                    self.apply(Step::Ack { pick: 0, ok: true });
                }
                self.apply(Step::FlushMarks);
                self.sweep(&[false], 3);
                for (index, committed) in self.committed.iter().enumerate() {
                    let all: Vec<i64> = committed.iter().map(|e| e.sequence).collect();
                    assert_eq!(self.delivered[index], all, "integration {index}");
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn never_two_in_flight_never_out_of_order_never_a_gap(
                jetstream in any::<bool>(),
                width in 1usize..4,
                steps in prop::collection::vec(step(), 0..80),
            ) {
                let mut model = Model::new(jetstream, width);
                for step in steps {
                    model.apply(step);
                }
                model.settle();
            }
        }
    }
}
