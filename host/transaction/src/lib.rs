//! SIP transactions (RFC 3261 §17, with the Accepted states of RFC 6026) as a sans-IO state
//! machine. Feed it parsed messages and the time; it returns bytes to transmit
//! ([`TransactionLayer::poll_transmit`]) and events for the transaction user, the B2BUA
//! ([`TransactionLayer::poll_event`]).
//!
//! - INVITE and non-INVITE client and server transactions, timers A–K (and L, M).
//! - Retransmissions over UDP only; none over TCP.
//! - 100 Trying sent at once for INVITE.
//! - ACK for non-2xx final responses generated hop by hop.
//! - Merged requests (RFC 3261 §8.2.2.2) answered 482.

// The workspace lints forbid panicking slicing and arithmetic in code that handles input; tests
// index into data they built themselves.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )
)]

mod flow;
mod keys;
mod messages;
mod timers;
mod via;
mod vocabulary;

pub use flow::{ConnId, Flow, Transport};
pub use messages::response_to;
pub use timers::{after, TimerConfig, TimerKind};
pub use via::{reply_flow, stamp_received};
pub use vocabulary::{ClientTxId, ServerTxId, Transmit, TxEvent, TxRef, TxStats};

use bytes::Bytes;
use keys::{client_key, merge_key, server_key};
use messages::ack_for;
use sluice_sip::{Message, Method};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long an INVITE that got a provisional waits for the next answer (RFC 3261 §16.6's
/// Timer C, "greater than 3 minutes"): a callee that rings is not given up at 64*T1.
pub const TIMER_C: Duration = Duration::from_secs(181);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SState {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Debug, Default)]
struct Deadlines {
    retransmit: Option<Instant>,
    timeout: Option<Instant>,
    linger: Option<Instant>,
}

impl Deadlines {
    fn get(&self, k: TimerKind) -> Option<Instant> {
        match k {
            TimerKind::Retransmit => self.retransmit,
            TimerKind::Timeout => self.timeout,
            TimerKind::Linger => self.linger,
        }
    }
    fn clear(&mut self) {
        *self = Deadlines::default();
    }
}

#[derive(Debug)]
struct ServerTx {
    invite: bool,
    state: SState,
    /// Where responses go (RFC 3261 §18.2.2, RFC 3581).
    reply: Flow,
    last_response: Option<Bytes>,
    interval: Duration,
    key: String,
    merge_key: Option<String>,
    deadlines: Deadlines,
}

#[derive(Debug)]
struct ClientTx {
    invite: bool,
    state: CState,
    flow: Flow,
    /// The request as sent, until the UA core has handled the final answer
    /// ([`TransactionLayer::release_request`]).
    request: Option<Message>,
    data: Bytes,
    ack: Option<Bytes>,
    interval: Duration,
    key: String,
    deadlines: Deadlines,
}

impl ClientTx {
    /// A final response came: the request is never sent again, so its bytes go (an INVITE's
    /// lingered 32 s after its call, about a kilobyte each). `request` stays until the UA
    /// core has handled that answer: it builds retries and challenge answers from it.
    fn forget_sent_bytes(&mut self) {
        self.data = Bytes::new();
    }
}

#[derive(Debug)]
pub struct TransactionLayer {
    timers: TimerConfig,
    server: HashMap<ServerTxId, ServerTx>,
    client: HashMap<ClientTxId, ClientTx>,
    server_index: HashMap<String, ServerTxId>,
    client_index: HashMap<String, ClientTxId>,
    merge_index: HashMap<String, ServerTxId>,
    heap: BinaryHeap<Reverse<(Instant, TxRef, TimerKind)>>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    stats: TxStats,
    scratch: Vec<u8>,
}

impl TransactionLayer {
    pub fn new(timers: TimerConfig) -> Self {
        TransactionLayer {
            timers,
            server: HashMap::new(),
            client: HashMap::new(),
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            merge_index: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TxStats::default(),
            scratch: Vec::with_capacity(2048),
        }
    }

    pub fn timers(&self) -> &TimerConfig {
        &self.timers
    }

    /// New timer values (a reload): every timer armed from now on uses them; timers already
    /// armed fire when they were due.
    pub fn set_timers(&mut self, timers: TimerConfig) {
        self.timers = timers;
    }

    pub fn stats(&self) -> TxStats {
        self.stats
    }

    pub fn server_count(&self) -> usize {
        self.server.len()
    }

    pub fn client_count(&self) -> usize {
        self.client.len()
    }

    /// The next datagram or stream write to send, in the order they were produced. Call after
    /// every input (request, response, timeout, respond, send_request) until `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the transaction user. Call after every input until `None`; the
    /// transmits an input produced come first (poll them before the events) so that a 100
    /// Trying leaves before what the user sends in reaction to the request.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn serialise(&mut self, msg: &Message) -> Bytes {
        self.scratch.clear();
        msg.write_to(&mut self.scratch);
        Bytes::copy_from_slice(&self.scratch)
    }

    fn arm(&mut self, tx: TxRef, kind: TimerKind, at: Instant) {
        let d = match tx {
            TxRef::Server(id) => self.server.get_mut(&id).map(|t| &mut t.deadlines),
            TxRef::Client(id) => self.client.get_mut(&id).map(|t| &mut t.deadlines),
        };
        if let Some(d) = d {
            match kind {
                TimerKind::Retransmit => d.retransmit = Some(at),
                TimerKind::Timeout => d.timeout = Some(at),
                TimerKind::Linger => d.linger = Some(at),
            }
            self.heap.push(Reverse((at, tx, kind)));
        }
    }

    fn disarm(&mut self, tx: TxRef, kind: TimerKind) {
        let d = match tx {
            TxRef::Server(id) => self.server.get_mut(&id).map(|t| &mut t.deadlines),
            TxRef::Client(id) => self.client.get_mut(&id).map(|t| &mut t.deadlines),
        };
        if let Some(d) = d {
            match kind {
                TimerKind::Retransmit => d.retransmit = None,
                TimerKind::Timeout => d.timeout = None,
                TimerKind::Linger => d.linger = None,
            }
        }
    }

    /// Linger for `d`, or end now when `d` is zero (reliable transports).
    fn linger_or_end(&mut self, now: Instant, tx: TxRef, d: Duration) {
        if d.is_zero() {
            self.remove(tx);
        } else {
            self.arm(tx, TimerKind::Linger, after(now, d));
        }
    }

    fn remove(&mut self, tx: TxRef) {
        match tx {
            TxRef::Server(id) => {
                if let Some(t) = self.server.remove(&id) {
                    self.server_index.remove(&t.key);
                    if let Some(m) = t.merge_key {
                        if self.merge_index.get(&m) == Some(&id) {
                            self.merge_index.remove(&m);
                        }
                    }
                    self.events.push_back(TxEvent::Terminated { tx });
                }
            }
            TxRef::Client(id) => {
                if let Some(t) = self.client.remove(&id) {
                    self.client_index.remove(&t.key);
                    self.events.push_back(TxEvent::Terminated { tx });
                }
            }
        }
    }

    /// End a client transaction that failed without a final response: the failure event
    /// (carrying the request as sent), then `Terminated`.
    fn fail_client(&mut self, id: ClientTxId, event: fn(ClientTxId, Box<Message>) -> TxEvent) {
        if let Some(t) = self.client.remove(&id) {
            self.client_index.remove(&t.key);
            // Only waiting transactions fail, and they still hold their request.
            let request = t.request.unwrap_or_default();
            self.events.push_back(event(id, Box::new(request)));
            self.events.push_back(TxEvent::Terminated {
                tx: TxRef::Client(id),
            });
        }
    }

    // ---------------------------------------------------------------- server side

    /// A request arrived (already validated). Retransmissions are absorbed here.
    pub fn on_request(&mut self, now: Instant, msg: Message, flow: Flow) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let key = server_key(&msg, &method);
        if let Some(&id) = self.server_index.get(&key) {
            self.on_known_request(now, id, &method);
            return;
        }
        if method == Method::Ack {
            self.events.push_back(TxEvent::Ack { msg, flow });
            return;
        }
        let reply = reply_flow(&msg, flow);
        let invite = method == Method::Invite;
        // Merged request: same From tag, Call-ID and CSeq as a running transaction, but another
        // branch (it forked upstream and reached us twice).
        let merge_key = if msg.to_tag().is_none() {
            merge_key(&msg)
        } else {
            None
        };
        let merged = merge_key
            .as_ref()
            .is_some_and(|k| self.merge_index.contains_key(k));
        let id = ServerTxId(self.id());
        let tx = ServerTx {
            invite,
            state: if invite {
                SState::Proceeding
            } else {
                SState::Trying
            },
            reply,
            last_response: None,
            interval: self.timers.t1,
            key: key.clone(),
            merge_key: if merged { None } else { merge_key.clone() },
            deadlines: Deadlines::default(),
        };
        self.server.insert(id, tx);
        self.server_index.insert(key, id);
        if merged {
            self.stats.merged_requests = self.stats.merged_requests.saturating_add(1);
            let resp = response_to(&msg, 482, "Loop Detected", None);
            self.respond(now, id, &resp);
            return;
        }
        if let Some(k) = merge_key {
            self.merge_index.insert(k, id);
        }
        if invite {
            let trying = response_to(&msg, 100, "Trying", None);
            self.respond(now, id, &trying);
        }
        self.events
            .push_back(TxEvent::Request { tx: id, msg, flow });
    }

    /// A request of a running server transaction: the ACK of a non-2xx final answer, or a
    /// retransmission (the last response is sent again).
    fn on_known_request(&mut self, now: Instant, id: ServerTxId, method: &Method) {
        self.stats.retransmissions_absorbed = self.stats.retransmissions_absorbed.saturating_add(1);
        let Some(tx) = self.server.get_mut(&id) else {
            return;
        };
        if *method == Method::Ack {
            if tx.invite && tx.state == SState::Completed {
                // Confirmed: stop retransmitting; Timer I absorbs further ACKs.
                tx.state = SState::Confirmed;
                tx.deadlines.retransmit = None;
                tx.deadlines.timeout = None;
                let d = if tx.reply.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    self.timers.t4
                };
                self.linger_or_end(now, TxRef::Server(id), d);
            }
            return;
        }
        if let Some(resp) = tx.last_response.clone() {
            if matches!(
                tx.state,
                SState::Proceeding | SState::Completed | SState::Trying
            ) {
                self.stats.response_retransmissions_sent =
                    self.stats.response_retransmissions_sent.saturating_add(1);
                let reply = tx.reply;
                self.transmits.push_back(Transmit {
                    flow: reply,
                    data: resp,
                });
            }
        }
    }

    /// The server transaction an incoming CANCEL refers to (RFC 3261 §9.2).
    pub fn find_invite_for_cancel(&self, cancel: &Message) -> Option<ServerTxId> {
        let key = server_key(cancel, &Method::Invite);
        self.server_index.get(&key).copied()
    }

    /// Whether a server transaction still accepts a final response.
    pub fn server_open(&self, id: ServerTxId) -> bool {
        self.server
            .get(&id)
            .is_some_and(|t| matches!(t.state, SState::Trying | SState::Proceeding))
    }

    /// Send a response on a server transaction.
    pub fn respond(&mut self, now: Instant, id: ServerTxId, resp: &Message) {
        let Some(status) = resp.status() else { return };
        let data = self.serialise(resp);
        let Some(tx) = self.server.get_mut(&id) else {
            return;
        };
        if !matches!(tx.state, SState::Trying | SState::Proceeding) {
            return;
        }
        let reply = tx.reply;
        let reliable = reply.transport.is_reliable();
        tx.last_response = Some(data.clone());
        self.transmits.push_back(Transmit { flow: reply, data });
        let r = TxRef::Server(id);
        if status < 200 {
            if !tx.invite {
                tx.state = SState::Proceeding;
            }
            return;
        }
        if tx.invite {
            if status < 300 {
                // RFC 6026 Accepted: absorb INVITE retransmissions; the UA core retransmits 2xx.
                tx.state = SState::Accepted;
                tx.last_response = None;
                let d = self.timers.timeout();
                self.arm(r, TimerKind::Linger, after(now, d));
            } else {
                tx.state = SState::Completed;
                let t1 = self.timers.t1;
                if !reliable {
                    self.arm(r, TimerKind::Retransmit, after(now, t1));
                }
                let d = self.timers.timeout();
                self.arm(r, TimerKind::Timeout, after(now, d));
            }
        } else {
            tx.state = SState::Completed;
            let d = if reliable {
                Duration::ZERO
            } else {
                self.timers.timeout()
            };
            self.linger_or_end(now, r, d);
        }
    }

    // ---------------------------------------------------------------- client side

    /// Start a client transaction. The request must carry its top Via with a fresh branch.
    pub fn send_request(&mut self, now: Instant, request: Message, flow: Flow) -> ClientTxId {
        let id = ClientTxId(self.id());
        let method = request.method().cloned().unwrap_or(Method::Options);
        let branch = request
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let key = client_key(&branch, &method);
        let data = self.serialise(&request);
        let invite = method == Method::Invite;
        let reliable = flow.transport.is_reliable();
        self.client.insert(
            id,
            ClientTx {
                invite,
                state: CState::Calling,
                flow,
                request: Some(request),
                data: data.clone(),
                ack: None,
                interval: self.timers.t1,
                key: key.clone(),
                deadlines: Deadlines::default(),
            },
        );
        self.client_index.insert(key, id);
        self.transmits.push_back(Transmit { flow, data });
        let r = TxRef::Client(id);
        if !reliable {
            let t1 = self.timers.t1;
            self.arm(r, TimerKind::Retransmit, after(now, t1));
        }
        let d = self.timers.timeout();
        self.arm(r, TimerKind::Timeout, after(now, d));
        id
    }

    /// The request a client transaction sent (to build a CANCEL, a retry or a challenge's
    /// answer), until [`release_request`](Self::release_request).
    pub fn client_request(&self, id: ClientTxId) -> Option<&Message> {
        self.client.get(&id).and_then(|t| t.request.as_ref())
    }

    /// Client transactions still holding their request: those waiting for a final answer,
    /// and those whose final answer the UA core has not released.
    pub fn held_requests(&self) -> usize {
        self.client.values().filter(|t| t.request.is_some()).count()
    }

    /// The UA core has handled the final answer of client transaction `id` and needs its
    /// request no more: the transaction lingers without it (for an INVITE 32 s after its
    /// call, the parsed INVITE is most of what it held). Nothing happens before a final
    /// answer.
    pub fn release_request(&mut self, id: ClientTxId) {
        if let Some(t) = self.client.get_mut(&id) {
            if matches!(t.state, CState::Completed | CState::Accepted) {
                t.request = None;
            }
        }
    }

    /// Where a server transaction's responses go (whom it answers).
    pub fn server_flow(&self, id: ServerTxId) -> Option<Flow> {
        self.server.get(&id).map(|t| t.reply)
    }

    /// The flow a client transaction uses.
    pub fn client_flow(&self, id: ClientTxId) -> Option<Flow> {
        self.client.get(&id).map(|t| t.flow)
    }

    /// Whether a client INVITE got a provisional response (a CANCEL may be sent, §9.1).
    pub fn client_proceeding(&self, id: ClientTxId) -> bool {
        self.client
            .get(&id)
            .is_some_and(|t| t.state == CState::Proceeding)
    }

    /// The transport could not deliver to `remote` over `transport` (a connection refused,
    /// timed out or broken): every client transaction still waiting for a final response
    /// there fails at once with [`TxEvent::TransportError`]. Returns how many failed.
    pub fn transport_failed(&mut self, transport: Transport, remote: SocketAddr) -> usize {
        let mut failed: Vec<ClientTxId> = self
            .client
            .iter()
            .filter(|(_, t)| {
                t.flow.transport == transport
                    && t.flow.remote == remote
                    && matches!(t.state, CState::Calling | CState::Proceeding)
            })
            .map(|(id, _)| *id)
            .collect();
        failed.sort();
        for &id in &failed {
            self.stats.transport_errors = self.stats.transport_errors.saturating_add(1);
            self.fail_client(id, |tx, request| TxEvent::TransportError { tx, request });
        }
        failed.len()
    }

    /// A CANCEL of INVITE `id` was sent: its final response is waited for 64*T1 more at most
    /// (RFC 3261 §9.1), whatever Timer C said.
    pub fn cancel_sent(&mut self, now: Instant, id: ClientTxId) {
        let d = self.timers.timeout();
        if self.client.get(&id).is_some_and(|t| t.invite) {
            self.arm(TxRef::Client(id), TimerKind::Timeout, after(now, d));
        }
    }

    /// A response arrived (already validated).
    pub fn on_response(&mut self, now: Instant, msg: Message, flow: Flow) {
        let (Some(status), Some((_, method))) = (msg.status(), msg.cseq()) else {
            return;
        };
        let branch = msg
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let key = client_key(&branch, &method);
        let Some(&id) = self.client_index.get(&key) else {
            self.events.push_back(TxEvent::StrayResponse { msg, flow });
            return;
        };
        if self.client.get(&id).is_some_and(|tx| tx.invite) {
            self.on_invite_response(now, id, status, msg);
        } else {
            self.on_non_invite_response(now, id, status, msg);
        }
    }

    /// A response of a client INVITE transaction (RFC 3261 §17.1.1).
    fn on_invite_response(&mut self, now: Instant, id: ClientTxId, status: u16, msg: Message) {
        let r = TxRef::Client(id);
        let timeout = self.timers.timeout();
        let Some(tx) = self.client.get_mut(&id) else {
            return;
        };
        let reliable = tx.flow.transport.is_reliable();
        match (tx.state, status) {
            (CState::Calling | CState::Proceeding, 100..=199) => {
                tx.state = CState::Proceeding;
                tx.deadlines.retransmit = None;
                self.events.push_back(TxEvent::Response { tx: id, msg });
                // Timer B ends with the Calling state (RFC 3261 §17.1.1.2): a callee that
                // rings is waited for; each provisional but 100 restarts Timer C instead
                // (§16.7).
                if status > 100 {
                    self.arm(r, TimerKind::Timeout, after(now, TIMER_C.max(timeout)));
                }
            }
            (CState::Calling | CState::Proceeding, 200..=299) => {
                tx.state = CState::Accepted;
                tx.deadlines.clear();
                tx.forget_sent_bytes();
                self.events.push_back(TxEvent::Response { tx: id, msg });
                self.arm(r, TimerKind::Linger, after(now, timeout));
            }
            (CState::Accepted, 200..=299) => {
                self.events.push_back(TxEvent::Response { tx: id, msg });
            }
            (CState::Calling | CState::Proceeding, _) => {
                tx.state = CState::Completed;
                tx.deadlines.clear();
                tx.forget_sent_bytes();
                // A waiting transaction still holds its request.
                if let Some(request) = &tx.request {
                    let ack = ack_for(request, &msg);
                    self.scratch.clear();
                    ack.write_to(&mut self.scratch);
                    let ack = Bytes::copy_from_slice(&self.scratch);
                    tx.ack = Some(ack.clone());
                    let flow = tx.flow;
                    self.transmits.push_back(Transmit { flow, data: ack });
                }
                self.events.push_back(TxEvent::Response { tx: id, msg });
                let d = if reliable {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32)
                };
                self.linger_or_end(now, r, d);
            }
            (CState::Completed, 300..=699) => {
                if let Some(ack) = tx.ack.clone() {
                    self.stats.retransmissions_absorbed =
                        self.stats.retransmissions_absorbed.saturating_add(1);
                    let flow = tx.flow;
                    self.transmits.push_back(Transmit { flow, data: ack });
                }
            }
            _ => {
                self.stats.retransmissions_absorbed =
                    self.stats.retransmissions_absorbed.saturating_add(1);
            }
        }
    }

    /// A response of a client non-INVITE transaction (RFC 3261 §17.1.2).
    fn on_non_invite_response(&mut self, now: Instant, id: ClientTxId, status: u16, msg: Message) {
        let r = TxRef::Client(id);
        let t2 = self.timers.t2;
        let t4 = self.timers.t4;
        let Some(tx) = self.client.get_mut(&id) else {
            return;
        };
        let reliable = tx.flow.transport.is_reliable();
        match (tx.state, status) {
            (CState::Calling | CState::Proceeding, 100..=199) => {
                tx.state = CState::Proceeding;
                if !reliable {
                    // In Proceeding, Timer E fires every T2.
                    tx.interval = t2;
                }
                self.events.push_back(TxEvent::Response { tx: id, msg });
            }
            (CState::Calling | CState::Proceeding, _) => {
                tx.state = CState::Completed;
                tx.deadlines.clear();
                tx.forget_sent_bytes();
                self.events.push_back(TxEvent::Response { tx: id, msg });
                let d = if reliable { Duration::ZERO } else { t4 };
                self.linger_or_end(now, r, d);
            }
            _ => {
                self.stats.retransmissions_absorbed =
                    self.stats.retransmissions_absorbed.saturating_add(1);
            }
        }
    }

    // ---------------------------------------------------------------- timers

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, tx, kind))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let current = match tx {
                TxRef::Server(id) => self.server.get(&id).and_then(|t| t.deadlines.get(kind)),
                TxRef::Client(id) => self.client.get(&id).and_then(|t| t.deadlines.get(kind)),
            };
            if current != Some(at) {
                continue; // stale entry
            }
            self.disarm(tx, kind);
            self.fire(now, tx, kind);
        }
    }

    fn fire(&mut self, now: Instant, tx: TxRef, kind: TimerKind) {
        let t2 = self.timers.t2;
        match (tx, kind) {
            (TxRef::Client(id), TimerKind::Retransmit) => {
                let Some(t) = self.client.get_mut(&id) else {
                    return;
                };
                if !matches!(t.state, CState::Calling | CState::Proceeding) {
                    return;
                }
                // Timer A doubles without bound; Timer E doubles up to T2.
                t.interval = if t.invite {
                    t.interval.saturating_mul(2)
                } else {
                    (t.interval.saturating_mul(2)).min(t2)
                };
                let next = t.interval;
                let (flow, data) = (t.flow, t.data.clone());
                self.stats.request_retransmissions_sent =
                    self.stats.request_retransmissions_sent.saturating_add(1);
                self.transmits.push_back(Transmit { flow, data });
                self.arm(tx, TimerKind::Retransmit, after(now, next));
            }
            (TxRef::Client(id), TimerKind::Timeout) => {
                self.stats.client_timeouts = self.stats.client_timeouts.saturating_add(1);
                self.fail_client(id, |tx, request| TxEvent::ClientTimeout { tx, request });
            }
            (TxRef::Server(id), TimerKind::Retransmit) => {
                // Timer G: retransmit the final response, doubling up to T2.
                let Some(t) = self.server.get_mut(&id) else {
                    return;
                };
                if t.state != SState::Completed {
                    return;
                }
                t.interval = (t.interval.saturating_mul(2)).min(t2);
                let next = t.interval;
                if let Some(data) = t.last_response.clone() {
                    let flow = t.reply;
                    self.stats.response_retransmissions_sent =
                        self.stats.response_retransmissions_sent.saturating_add(1);
                    self.transmits.push_back(Transmit { flow, data });
                }
                self.arm(tx, TimerKind::Retransmit, after(now, next));
            }
            (TxRef::Server(id), TimerKind::Timeout) => {
                // Timer H: the ACK never came.
                self.stats.server_timeouts = self.stats.server_timeouts.saturating_add(1);
                self.events.push_back(TxEvent::ServerTimeout { tx: id });
                self.remove(tx);
            }
            (_, TimerKind::Linger) => self.remove(tx),
        }
    }
}

#[cfg(test)]
mod tests;
