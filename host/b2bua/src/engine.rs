//! The engine: where a SIP message enters (`handle_datagram`), is routed (`on_initial_invite`,
//! `on_in_dialog`), and leaves (`poll_output`). Sans-IO: bytes and time in, bytes out.

// Being split into its concerns (the next commit series); each new module is written under the
// workspace's panic-free lints, and this allowance goes with the last of engine.rs's old code.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use crate::config::{EngineConfig, ListenerAddr, PeerConfig, Side};
use crate::headers::{copy_passthrough, format_host_port, local_uri_host, rewrite_identity};
use crate::hooks::{Attestation, Generation, HookContext, HookVerdict, Hooks, NoHooks};
use crate::metrics::EngineMetrics;
use crate::stats::EngineStats;
use bytes::Bytes;
use sluice_sip::{
    edit, parse_message, reason_phrase, validate, HeaderName, Message, Method, NameAddr, Uri,
};
use sluice_transaction::{
    response_to, ClientTxId, Flow, ServerTxId, TransactionLayer, Transport, TxEvent, TxRef,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Methods Sluice handles, as advertised in Allow.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO";
/// Extensions Sluice supports (session timers pass through end to end).
pub const SUPPORTED: &[&str] = &["timer"];

/// What the engine asks of the I/O shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Transmit { flow: Flow, data: Bytes },
}

pub type CallKey = u64;

/// One call in progress, as the admin API shows it. No numbers or Call-IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub id: CallKey,
    pub direction: Direction,
    pub trunk: String,
    pub state: &'static str,
    pub age: Duration,
    pub answered_for: Option<Duration>,
    /// The STIR/SHAKEN attestation the plugins chose (outbound calls).
    pub attestation: Option<Attestation>,
    /// The plugin generation the call runs with.
    pub generation: Generation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// PBX to trunk.
    Outbound,
    /// Trunk to PBX.
    Inbound,
}

/// One dialog of a call. Leg 0 faces the caller, leg 1 the callee.
#[derive(Debug)]
struct Leg {
    flow: Flow,
    call_id: String,
    local_tag: String,
    /// Our From (on the UAC leg) or To (on the UAS leg) value, with our tag.
    local_party: String,
    /// The peer's party value, with its tag once known.
    remote_party: String,
    remote_tag: Option<String>,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    remote_target: String,
    route_set: Vec<String>,
    contact: String,
    /// Host:port written in our Via on this leg.
    via_host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE sent to the callee, no final answer yet.
    Proceeding,
    /// 2xx relayed; the dialog is up (possibly waiting for the caller's ACK).
    Established,
    /// A BYE is in flight, or the call failed and waits for transactions to settle.
    Ending,
}

/// An INVITE (initial or re-INVITE) relayed from leg `from` to the other leg, from its 2xx until
/// the ACK is relayed.
#[derive(Debug)]
struct InviteRelay {
    /// The leg the INVITE came in on (where we are UAS).
    from: usize,
    /// CSeq number of the INVITE on leg `from` (what its ACK carries).
    from_cseq: u32,
    /// CSeq number we used on the other leg.
    to_cseq: u32,
    /// Our 2xx on leg `from`, retransmitted over UDP until the ACK arrives.
    ok: Option<Bytes>,
    ok_flow: Flow,
    interval: Duration,
    next: Option<Instant>,
    give_up: Instant,
    /// The ACK we sent on the other leg, resent when its 2xx is retransmitted.
    ack: Option<Bytes>,
    acked: bool,
}

#[derive(Debug)]
struct Call {
    key: CallKey,
    direction: Direction,
    /// The trunk's name (names survive a reload; indexes may not).
    trunk: Arc<str>,
    /// The plugin generation this call pinned when it started.
    generation: Generation,
    attestation: Option<Attestation>,
    state: CallState,
    legs: [Leg; 2],
    /// The caller's INVITE server transaction and request, until the final answer.
    uas_invite: Option<(ServerTxId, Message)>,
    uac_invite: Option<ClientTxId>,
    cancelled: bool,
    cancel_sent: bool,
    invite: Option<InviteRelay>,
    /// When the caller's INVITE arrived, and when the callee answered.
    started: Instant,
    answered_at: Option<Instant>,
    /// Whether post-dial delay was recorded (at the first ringing or answer).
    progressed: bool,
    /// Client transactions in flight for this call besides the initial INVITE (relays, BYE,
    /// CANCEL).
    pending: usize,
}

/// Why a client transaction was started.
#[derive(Debug)]
enum ClientRole {
    /// The initial INVITE toward the callee.
    Invite { call: CallKey },
    /// An in-dialog request relayed from leg `from`; answer on `server`.
    Relay {
        call: CallKey,
        from: usize,
        server: ServerTxId,
        request: Box<Message>,
    },
    /// A request of our own (CANCEL, BYE on teardown): responses only settle it.
    Own { call: CallKey },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CallTimer {
    /// Retransmit a 2xx or give up waiting for its ACK.
    Invite2xx,
}

pub struct Engine {
    cfg: EngineConfig,
    tx: TransactionLayer,
    calls: HashMap<CallKey, Call>,
    /// Our local tag on a leg -> (call, leg index).
    by_tag: HashMap<String, (CallKey, usize)>,
    /// Caller's INVITE server transaction -> call (for CANCEL).
    by_uas_invite: HashMap<ServerTxId, CallKey>,
    clients: HashMap<ClientTxId, ClientRole>,
    timers: BinaryHeap<Reverse<(Instant, CallKey, CallTimer)>>,
    outputs: VecDeque<Output>,
    rng: fastrand::Rng,
    next_call: CallKey,
    stats: EngineStats,
    metrics: EngineMetrics,
    draining: bool,
    /// The time of the input being handled.
    now: Instant,
    /// Plugin chains (none unless [`Engine::set_hooks`] installs them).
    hooks: Box<dyn Hooks>,
}

impl Engine {
    pub fn new(cfg: EngineConfig, seed: u64) -> Engine {
        let trunk_names: Vec<String> = cfg.trunks.iter().map(|t| t.name.clone()).collect();
        Engine {
            tx: TransactionLayer::new(cfg.timers),
            cfg,
            calls: HashMap::new(),
            by_tag: HashMap::new(),
            by_uas_invite: HashMap::new(),
            clients: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
            next_call: 1,
            stats: EngineStats::default(),
            metrics: EngineMetrics::new(&trunk_names),
            draining: false,
            now: Instant::now(),
            hooks: Box::new(NoHooks),
        }
    }

    /// Install the plugin chains. Calls in progress keep the generation they pinned.
    pub fn set_hooks(&mut self, hooks: Box<dyn Hooks>) {
        self.hooks = hooks;
    }

    pub fn hooks(&self) -> &dyn Hooks {
        self.hooks.as_ref()
    }

    pub fn hooks_mut(&mut self) -> &mut dyn Hooks {
        self.hooks.as_mut()
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.active_calls = self.calls.len() as u64;
        s.transactions = self.tx.stats();
        s
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Refuse new calls with 503 from now on; calls in progress continue.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Apply a new configuration. Calls in progress keep the addresses they were set up with;
    /// new calls use the new routes. Listener changes need a restart and are refused.
    pub fn reconfigure(&mut self, cfg: EngineConfig) -> Result<(), String> {
        if cfg.listeners != self.cfg.listeners {
            return Err("listener changes need a restart; the running configuration stays".into());
        }
        if cfg.outbound_trunk >= cfg.trunks.len() {
            return Err("the outbound trunk does not exist".into());
        }
        for t in &cfg.trunks {
            if !self.cfg.trunks.iter().any(|o| o.name == t.name) {
                self.metrics.add_trunk(&t.name);
            }
        }
        self.tx.set_timers(cfg.timers);
        self.cfg = cfg;
        Ok(())
    }

    /// A view of the calls in progress, for the admin API.
    pub fn calls_snapshot(&self, now: Instant) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .calls
            .values()
            .map(|c| CallInfo {
                id: c.key,
                direction: c.direction,
                trunk: c.trunk.to_string(),
                attestation: c.attestation,
                generation: c.generation,
                state: match c.state {
                    CallState::Proceeding => "proceeding",
                    CallState::Established => "established",
                    CallState::Ending => "ending",
                },
                age: now.saturating_duration_since(c.started),
                answered_for: c.answered_at.map(|a| now.saturating_duration_since(a)),
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Calls in progress per trunk name.
    pub fn calls_per_trunk(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for c in self.calls.values() {
            *m.entry(c.trunk.to_string()).or_insert(0) += 1;
        }
        m
    }

    fn emit(&mut self, flow: Flow, data: Bytes) {
        self.stats.messages_out += 1;
        EngineMetrics::message(true, &data);
        self.outputs.push_back(Output::Transmit { flow, data });
    }

    /// Publish counters kept by the transaction layer; the shell calls this after each batch.
    pub fn sync_metrics(&mut self) {
        self.metrics.sync_transactions(self.tx.stats());
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.pump();
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.tx.poll_timeout();
        let b = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.tx.handle_timeout(now);
        self.dispatch(now);
        while let Some(Reverse((at, key, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match kind {
                CallTimer::Invite2xx => self.on_2xx_timer(now, key, at),
            }
        }
        self.dispatch(now);
    }

    /// A datagram or stream frame arrived on `flow`.
    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.stats.messages_in += 1;
        EngineMetrics::message(false, data);
        let msg = match parse_message(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.parse_errors += 1;
                EngineMetrics::parse_error(e.reason);
                match e.partial {
                    Some(head) if head.is_request() => {
                        warn!(reason = e.reason, from = %flow.remote, "malformed request, answering {}", e.status);
                        self.reply_stateless(&head, flow, e.status, e.reason);
                    }
                    _ => {
                        warn!(reason = e.reason, from = %flow.remote, "malformed message dropped");
                        self.stats.dropped += 1;
                    }
                }
                return;
            }
        };
        self.handle_message(now, flow, msg);
    }

    /// A parsed message arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, mut msg: Message) {
        self.now = now;
        if let Err(rej) = validate(&msg) {
            self.stats.parse_errors += 1;
            EngineMetrics::parse_error(rej.reason);
            if msg.is_request() && msg.method() != Some(&Method::Ack) {
                warn!(reason = rej.reason, from = %flow.remote, "invalid request, answering {}", rej.status);
                self.reply_stateless(&msg, flow, rej.status, rej.reason);
            } else {
                warn!(reason = rej.reason, from = %flow.remote, "invalid message dropped");
                self.stats.dropped += 1;
            }
            return;
        }
        if msg.is_request() {
            stamp_received(&mut msg, flow);
            self.tx.on_request(now, msg, flow);
        } else {
            self.tx.on_response(now, msg, flow);
        }
        self.dispatch(now);
    }

    /// Answer a request that never reaches a transaction (it was malformed). The response copies
    /// whatever of Via, From, To, Call-ID and CSeq the request has; without a usable Via there is
    /// nowhere to send it, so it is dropped.
    fn reply_stateless(&mut self, req: &Message, flow: Flow, status: u16, reason: &str) {
        if req.top_via().is_none() {
            self.stats.dropped += 1;
            return;
        }
        let mut resp = response_to(req, status, reason, None);
        self.add_agent(&mut resp, true);
        let mut dest = flow;
        if !flow.transport.is_reliable() {
            if let Some(v) = req.top_via() {
                if v.param("rport").is_none() {
                    dest.remote.set_port(v.port.unwrap_or(5060));
                }
            }
        }
        self.emit(dest, Bytes::from(resp.to_bytes()));
    }

    /// Move transaction-layer output to the engine's queue and react to its events.
    fn dispatch(&mut self, now: Instant) {
        while let Some(ev) = self.tx.poll_event() {
            match ev {
                TxEvent::Transmit { flow, data } => {
                    self.emit(flow, data);
                }
                TxEvent::Request { tx, msg, flow } => self.on_request(now, tx, msg, flow),
                TxEvent::Ack { msg, flow } => self.on_ack(now, msg, flow),
                TxEvent::Response { tx, msg } => self.on_response(now, tx, msg),
                TxEvent::StrayResponse { msg, .. } => self.on_stray_response(msg),
                TxEvent::ClientTimeout { tx } => self.on_client_timeout(now, tx),
                TxEvent::ServerTimeout { .. } => {}
                TxEvent::Terminated { tx } => self.on_terminated(tx),
            }
        }
    }

    fn pump(&mut self) {
        // Outputs are queued eagerly by dispatch; nothing else to move.
    }

    fn respond(&mut self, now: Instant, tx: ServerTxId, resp: &Message) {
        self.tx.respond(now, tx, resp);
        self.dispatch_transmits();
    }

    fn dispatch_transmits(&mut self) {
        // Responses produce only Transmit events; keep them in order with other output.
        while let Some(ev) = self.tx.poll_event() {
            match ev {
                TxEvent::Transmit { flow, data } => {
                    self.emit(flow, data);
                }
                TxEvent::Terminated { tx } => self.on_terminated(tx),
                other => {
                    // Not produced by respond(); keep the invariant visible in debug builds.
                    debug!(?other, "unexpected event while responding");
                }
            }
        }
    }

    fn reply(&mut self, now: Instant, tx: ServerTxId, req: &Message, status: u16, reason: &str) {
        let tag = self.new_tag();
        let mut resp = response_to(req, status, reason, Some(&tag));
        self.add_agent(&mut resp, true);
        if status == 405 || status == 200 && req.method() == Some(&Method::Options) {
            resp.headers.push(HeaderName::Allow, ALLOW);
        }
        self.respond(now, tx, &resp);
    }

    fn add_agent(&self, msg: &mut Message, server: bool) {
        if !self.cfg.user_agent.is_empty() {
            let name = if server {
                HeaderName::Server
            } else {
                HeaderName::UserAgent
            };
            msg.headers.push(name, self.cfg.user_agent.clone());
        }
    }

    // ------------------------------------------------------------------ requests

    fn on_request(&mut self, now: Instant, tx: ServerTxId, msg: Message, flow: Flow) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if method == Method::Cancel {
            self.on_cancel(now, tx, &msg);
            return;
        }
        if let Some(tag) = msg.to_tag() {
            let tag = tag.to_string();
            self.on_in_dialog(now, tx, msg, flow, &tag);
            return;
        }
        // Out of dialog.
        if let Some(rej) = self.check_extensions(&msg) {
            let mut resp = response_to(&msg, 420, "Bad Extension", Some(&self.new_tag()));
            resp.headers.push(HeaderName::Unsupported, rej);
            self.respond(now, tx, &resp);
            return;
        }
        match method {
            Method::Options => {
                // Answered locally, also with Max-Forwards 0.
                let tag = self.new_tag();
                let mut resp = response_to(&msg, 200, "OK", Some(&tag));
                resp.headers.push(HeaderName::Allow, ALLOW);
                resp.headers.push(HeaderName::Accept, "application/sdp");
                resp.headers
                    .push(HeaderName::Supported, SUPPORTED.join(", "));
                self.add_agent(&mut resp, true);
                self.respond(now, tx, &resp);
            }
            Method::Invite => self.on_initial_invite(now, tx, msg, flow),
            Method::Bye | Method::Update | Method::Info | Method::Prack => {
                self.reply(now, tx, &msg, 481, reason_phrase(481));
            }
            Method::Other(_) => self.reply(now, tx, &msg, 501, reason_phrase(501)),
            _ => self.reply(now, tx, &msg, 405, reason_phrase(405)),
        }
    }

    /// Require/Proxy-Require option tags Sluice does not support, comma-joined.
    fn check_extensions(&self, msg: &Message) -> Option<String> {
        let mut unsupported: Vec<String> = Vec::new();
        for name in [HeaderName::Require, HeaderName::ProxyRequire] {
            for tag in msg.headers.values(&name) {
                if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)) {
                    unsupported.push(tag.to_string());
                }
            }
        }
        (!unsupported.is_empty()).then(|| unsupported.join(", "))
    }

    fn side_of(&self, local: SocketAddr) -> Option<Side> {
        self.cfg
            .listeners
            .iter()
            .find(|l| l.addr == local)
            .map(|l| l.side)
    }

    /// The listener to send from toward `peer`: same side, same transport, same IP family.
    fn listener_for(&self, side: Side, peer: &PeerConfig) -> Option<ListenerAddr> {
        self.cfg
            .listeners
            .iter()
            .find(|l| {
                l.side == side
                    && l.transport == peer.transport
                    && l.addr.is_ipv4() == peer.addr.is_ipv4()
            })
            .copied()
    }

    fn on_initial_invite(&mut self, now: Instant, tx: ServerTxId, mut msg: Message, flow: Flow) {
        self.stats.calls_attempted += 1;
        let Some(side) = self.side_of(flow.local) else {
            return;
        };
        // Route first, so that every outcome is counted against the trunk and direction.
        let route = match side {
            Side::Internal => {
                let t = self.cfg.outbound_trunk;
                self.cfg
                    .trunks
                    .get(t)
                    .map(|p| (Direction::Outbound, t, p.clone(), Side::External))
            }
            Side::External => self
                .cfg
                .trunks
                .iter()
                .position(|t| t.addr.ip() == flow.remote.ip())
                .map(|t| (Direction::Inbound, t, self.cfg.pbx.clone(), Side::Internal)),
        };
        let label = match (&route, side) {
            (Some((_, t, _, _)), _) => self.cfg.trunks[*t].name.clone(),
            (None, _) => "unknown".to_string(),
        };
        let direction = match side {
            Side::Internal => Direction::Outbound,
            Side::External => Direction::Inbound,
        };
        self.metrics.call_attempted(&label, direction);
        let refuse = |engine: &mut Engine,
                      msg: &Message,
                      status: u16,
                      reason: &str,
                      extra: Option<(HeaderName, &str)>| {
            engine.stats.calls_failed += 1;
            engine.metrics.call_failed(&label, direction, status);
            let tag = engine.new_tag();
            let mut r = response_to(msg, status, reason, Some(&tag));
            if let Some((name, value)) = extra {
                r.headers.push(name, value);
            }
            engine.add_agent(&mut r, true);
            engine.respond(now, tx, &r);
        };
        if msg.max_forwards() == Some(0) {
            return refuse(self, &msg, 483, reason_phrase(483), None);
        }
        if let Some(status) = self.check_media(&msg) {
            return refuse(
                self,
                &msg,
                status,
                reason_phrase(status),
                Some((HeaderName::Accept, "application/sdp")),
            );
        }
        if self.draining {
            return refuse(
                self,
                &msg,
                503,
                "Service Unavailable",
                Some((HeaderName::RetryAfter, "30")),
            );
        }
        if self.calls.len() >= self.cfg.max_calls {
            return refuse(self, &msg, 503, "Call Limit Reached", None);
        }
        let Some((direction, trunk, peer, out_side)) = route else {
            warn!(from = %flow.remote, "INVITE from an address that is no trunk");
            return refuse(self, &msg, 403, "Forbidden", None);
        };
        let Some(out_listener) = self.listener_for(out_side, &peer) else {
            return refuse(self, &msg, 503, "No Route", None);
        };
        let key = self.next_call;
        self.next_call += 1;

        // Leg 0: the caller's dialog, as UAS.
        let in_listener = ListenerAddr {
            side,
            transport: flow.transport,
            addr: flow.local,
        };
        let a_tag = self.new_tag();
        let from = msg.header(&HeaderName::From).unwrap_or("").to_string();
        let to = msg.header(&HeaderName::To).unwrap_or("").to_string();
        let from_na = NameAddr::parse(&from);
        let caller_target = msg
            .headers
            .values(&HeaderName::Contact)
            .next()
            .and_then(NameAddr::parse)
            .map(|n| n.uri.to_string())
            .unwrap_or_else(|| {
                from_na
                    .as_ref()
                    .map(|n| n.uri.to_string())
                    .unwrap_or_default()
            });
        let a_routes: Vec<String> = msg
            .headers
            .values(&HeaderName::RecordRoute)
            .map(str::to_string)
            .collect();
        let a_contact_user = uri_user(msg.request_uri().unwrap_or("")).unwrap_or("sluice");
        let a = Leg {
            flow,
            call_id: msg.call_id().unwrap_or("").to_string(),
            local_party: format!("{to};tag={a_tag}"),
            local_tag: a_tag.clone(),
            remote_party: from.clone(),
            remote_tag: msg.from_tag().map(str::to_string),
            local_cseq: self.rng.u32(1..10_000),
            remote_cseq: msg.cseq().map(|(n, _)| n),
            remote_target: caller_target,
            route_set: a_routes,
            contact: make_contact(a_contact_user, &in_listener),
            via_host: format_host_port(in_listener.addr),
        };

        // Leg 1: the callee's dialog, as UAC, with fresh Call-ID, tag and CSeq.
        let b_tag = self.new_tag();
        let b_call_id = self.new_call_id();
        let ruri_user = uri_user(msg.request_uri().unwrap_or(""))
            .or_else(|| NameAddr::parse(&to).and_then(|n| uri_user(n.uri)))
            .unwrap_or("")
            .to_string();
        let from_user = from_na
            .as_ref()
            .and_then(|n| uri_user(n.uri))
            .unwrap_or("anonymous")
            .to_string();
        let from_display = from_na
            .as_ref()
            .and_then(|n| n.display)
            .map(|d| format!("{d} "))
            .unwrap_or_default();
        let local_host = local_uri_host(out_listener.addr);
        let peer_host = peer_uri_host(&peer);
        let b_from = format!("{from_display}<sip:{from_user}@{local_host}>;tag={b_tag}");
        let b_to = format!("<sip:{ruri_user}@{peer_host}>");
        let b_ruri = format!(
            "sip:{ruri_user}@{peer_host}{}",
            transport_param(peer.transport)
        );
        let out_flow = Flow {
            transport: peer.transport,
            local: out_listener.addr,
            remote: peer.addr,
            conn: None,
        };
        let mut b = Leg {
            flow: out_flow,
            call_id: b_call_id,
            local_party: b_from,
            local_tag: b_tag.clone(),
            remote_party: b_to,
            remote_tag: None,
            local_cseq: self.rng.u32(1..10_000),
            remote_cseq: None,
            remote_target: b_ruri.clone(),
            route_set: Vec::new(),
            contact: make_contact(&from_user, &out_listener),
            via_host: format_host_port(out_listener.addr),
        };
        let max_forwards = msg.max_forwards().unwrap_or(70).saturating_sub(1);
        let mut invite = Message::request(Method::Invite, b_ruri);
        self.fill_dialog_request(&mut invite, &b, Method::Invite, b.local_cseq, max_forwards);
        invite.headers.push(HeaderName::Contact, b.contact.clone());
        copy_passthrough(&msg, &mut invite, &local_host);
        rewrite_identity(&msg, &mut invite, &local_host);
        self.add_agent(&mut invite, false);
        invite.body = msg.body.clone();

        // Plugins: numbers, then the message chain, then the attestation of an outbound call.
        let generation = self.hooks.current();
        let trunk_name: Arc<str> = Arc::from(self.cfg.trunks[trunk].name.as_str());
        let mut attestation = None;
        if self.hooks.active(generation, &trunk_name) {
            let ctx = HookContext {
                call: key,
                direction,
                leg: out_side,
                trunk: &trunk_name,
                source: flow.remote,
                transport: flow.transport,
            };
            let hooks = &mut self.hooks;
            edit::normalize_numbers(&mut invite, |kind, n| {
                hooks.number(generation, &ctx, kind, n)
            });
            if let HookVerdict::Reject { status, reason } =
                self.hooks.message(generation, &ctx, &mut invite, &mut msg)
            {
                debug!(call = key, status, "refused by a plugin");
                return refuse(self, &msg, status, &reason, None);
            }
            if direction == Direction::Outbound {
                attestation = self.hooks.attestation(generation, &ctx, &mut invite);
            }
            // The dialog follows what the plugins wrote (tags are kept by the edit rules).
            if let Some(v) = invite.header(&HeaderName::From) {
                b.local_party = v.to_string();
            }
            if let Some(v) = invite.header(&HeaderName::To) {
                b.remote_party = v.to_string();
            }
            if let Some(u) = invite.request_uri() {
                b.remote_target = u.to_string();
            }
        }
        self.hooks.pin(generation);

        debug!(call = key, ?direction, trunk = %trunk_name, "new call");
        let uac = self.tx.send_request(now, invite, out_flow);
        self.clients.insert(uac, ClientRole::Invite { call: key });
        self.by_tag.insert(a_tag, (key, 0));
        self.by_tag.insert(b_tag, (key, 1));
        self.by_uas_invite.insert(tx, key);
        self.metrics.call_started(&label, direction);
        self.calls.insert(
            key,
            Call {
                key,
                direction,
                trunk: trunk_name,
                generation,
                attestation,
                state: CallState::Proceeding,
                legs: [a, b],
                uas_invite: Some((tx, msg)),
                uac_invite: Some(uac),
                cancelled: false,
                cancel_sent: false,
                invite: None,
                started: now,
                answered_at: None,
                progressed: false,
                pending: 0,
            },
        );
        self.dispatch(now);
    }

    /// 415 for a body that is not SDP, 406 when the caller accepts no SDP.
    fn check_media(&self, msg: &Message) -> Option<u16> {
        if !msg.body.is_empty() {
            let ct = msg.header(&HeaderName::ContentType).unwrap_or("");
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !(mime.eq_ignore_ascii_case("application/sdp")
                || mime.to_ascii_lowercase().starts_with("multipart/"))
            {
                return Some(415);
            }
        }
        let accepts: Vec<&str> = msg.headers.values(&HeaderName::Accept).collect();
        if !accepts.is_empty()
            && !accepts.iter().any(|a| {
                let m = a
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                m == "application/sdp" || m == "*/*" || m == "application/*"
            })
        {
            return Some(406);
        }
        None
    }

    /// Fill Via, Max-Forwards, From, To, Call-ID, CSeq and Route for a request on `leg`.
    fn fill_dialog_request(
        &mut self,
        req: &mut Message,
        leg: &Leg,
        method: Method,
        cseq: u32,
        max_forwards: u32,
    ) {
        let branch = self.new_branch();
        req.headers.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                leg.flow.transport.via_name(),
                leg.via_host
            ),
        );
        req.headers
            .push(HeaderName::MaxForwards, max_forwards.to_string());
        req.headers.push(HeaderName::From, leg.local_party.clone());
        req.headers.push(HeaderName::To, leg.remote_party.clone());
        req.headers.push(HeaderName::CallId, leg.call_id.clone());
        req.headers
            .push(HeaderName::CSeq, format!("{cseq} {method}"));
        for r in &leg.route_set {
            req.headers.push(HeaderName::Route, r.clone());
        }
    }

    fn on_in_dialog(&mut self, now: Instant, tx: ServerTxId, msg: Message, flow: Flow, tag: &str) {
        let method = msg.method().cloned().unwrap_or(Method::Options);
        let Some(&(key, i)) = self.by_tag.get(tag) else {
            return self.reply(now, tx, &msg, 481, reason_phrase(481));
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return self.reply(now, tx, &msg, 481, reason_phrase(481));
        };
        if msg.call_id() != Some(call.legs[i].call_id.as_str()) {
            return self.reply(now, tx, &msg, 481, reason_phrase(481));
        }
        let cseq = msg.cseq().map(|(n, _)| n).unwrap_or(0);
        if let Some(prev) = call.legs[i].remote_cseq {
            if cseq <= prev && method != Method::Ack {
                return self.reply(now, tx, &msg, 500, "CSeq Out of Order");
            }
        }
        call.legs[i].remote_cseq = Some(cseq);
        // Refresh the peer's address for UDP peers behind NAT: answer where it sends from.
        if flow.transport == Transport::Udp {
            call.legs[i].flow.remote = flow.remote;
        }
        match method {
            Method::Bye => {
                if call.state == CallState::Ending {
                    // Crossing BYEs: answer ours locally.
                    return self.reply(now, tx, &msg, 200, "OK");
                }
                call.state = CallState::Ending;
                self.relay_in_dialog(now, key, i, tx, msg);
            }
            Method::Invite => {
                if call.invite.as_ref().is_some_and(|r| !r.acked)
                    || call.state != CallState::Established
                {
                    return self.reply(now, tx, &msg, 491, reason_phrase(491));
                }
                if let Some(c) = msg
                    .headers
                    .values(&HeaderName::Contact)
                    .next()
                    .and_then(NameAddr::parse)
                {
                    call.legs[i].remote_target = c.uri.to_string();
                }
                self.relay_in_dialog(now, key, i, tx, msg);
            }
            Method::Update | Method::Info | Method::Options => {
                if method == Method::Update {
                    if let Some(c) = msg
                        .headers
                        .values(&HeaderName::Contact)
                        .next()
                        .and_then(NameAddr::parse)
                    {
                        call.legs[i].remote_target = c.uri.to_string();
                    }
                }
                self.relay_in_dialog(now, key, i, tx, msg);
            }
            Method::Other(_) => self.reply(now, tx, &msg, 501, reason_phrase(501)),
            _ => self.reply(now, tx, &msg, 405, reason_phrase(405)),
        }
    }

    /// Relay an in-dialog request from leg `from` to the other leg.
    fn relay_in_dialog(
        &mut self,
        now: Instant,
        key: CallKey,
        from: usize,
        tx: ServerTxId,
        mut msg: Message,
    ) {
        let method = msg.method().cloned().unwrap_or(Method::Options);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let to = 1 - from;
        if call.legs[to].remote_tag.is_none() {
            return self.reply(now, tx, &msg, 481, reason_phrase(481));
        }
        call.legs[to].local_cseq += 1;
        let cseq = call.legs[to].local_cseq;
        let max_forwards = msg.max_forwards().unwrap_or(70).saturating_sub(1);
        let mut req = Message::request(method.clone(), call.legs[to].remote_target.clone());
        let leg = std::mem::replace(&mut call.legs[to], placeholder_leg());
        self.fill_dialog_request(&mut req, &leg, method.clone(), cseq, max_forwards);
        if matches!(method, Method::Invite | Method::Update) {
            req.headers.push(HeaderName::Contact, leg.contact.clone());
        }
        let local_host = local_uri_host(leg.flow.local);
        copy_passthrough(&msg, &mut req, &local_host);
        rewrite_identity(&msg, &mut req, &local_host);
        self.add_agent(&mut req, false);
        req.body = msg.body.clone();
        let flow = Self::request_flow(&leg);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.legs[to] = leg;
        if let HookVerdict::Reject { status, reason } = self.run_hooks(key, to, &mut req, &mut msg)
        {
            debug!(call = key, status, %method, "refused by a plugin");
            return self.reply(now, tx, &msg, status, &reason);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.pending += 1;
        if method == Method::Invite {
            call.invite = Some(InviteRelay {
                from,
                from_cseq: msg.cseq().map(|(n, _)| n).unwrap_or(0),
                to_cseq: cseq,
                ok: None,
                ok_flow: call.legs[from].flow,
                interval: self.cfg.timers.t1,
                next: None,
                give_up: now + self.cfg.timers.timeout(),
                ack: None,
                acked: false,
            });
        }
        let uac = self.tx.send_request(now, req, flow);
        self.clients.insert(
            uac,
            ClientRole::Relay {
                call: key,
                from,
                server: tx,
                request: Box::new(msg),
            },
        );
        self.dispatch(now);
    }

    /// Where an in-dialog request on `leg` goes: the first loose route, else the remote target
    /// when it is an IP address, else the address the dialog was set up with.
    fn request_flow(leg: &Leg) -> Flow {
        let mut flow = leg.flow;
        flow.conn = if leg.flow.transport.is_reliable() {
            leg.flow.conn
        } else {
            None
        };
        let target = leg
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).map(|n| n.uri.to_string()))
            .unwrap_or_else(|| leg.remote_target.clone());
        if let Some(addr) = Uri::parse(&target).and_then(|u| literal_addr(&u)) {
            if addr.is_ipv4() == flow.local.is_ipv4() {
                flow.remote = addr;
            }
        }
        flow
    }

    fn on_cancel(&mut self, now: Instant, tx: ServerTxId, msg: &Message) {
        let Some(inv) = self.tx.find_invite_for_cancel(msg) else {
            return self.reply(now, tx, msg, 481, reason_phrase(481));
        };
        self.reply(now, tx, msg, 200, "OK");
        let Some(&key) = self.by_uas_invite.get(&inv) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.state != CallState::Proceeding || call.cancelled {
            return;
        }
        call.cancelled = true;
        call.state = CallState::Ending;
        debug!(call = key, "cancelled by the caller");
        if let Some((stx, req)) = call.uas_invite.take() {
            let tag = call.legs[0].local_tag.clone();
            let resp = response_to(&req, 487, reason_phrase(487), Some(&tag));
            self.record_failure(key, 487);
            self.respond(now, stx, &resp);
        }
        self.send_cancel_if_possible(now, key);
    }

    /// CANCEL the callee's INVITE once it has answered provisionally (RFC 3261 §9.1).
    fn send_cancel_if_possible(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if !call.cancelled || call.cancel_sent {
            return;
        }
        let Some(uac) = call.uac_invite else { return };
        if !self.tx.client_proceeding(uac) {
            return;
        }
        let (Some(inv), Some(flow)) = (self.tx.client_request(uac), self.tx.client_flow(uac))
        else {
            return;
        };
        let mut cancel = Message::request(
            Method::Cancel,
            inv.request_uri().unwrap_or("sip:invalid").to_string(),
        );
        for name in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
        ] {
            if let Some(v) = inv.header(&name) {
                cancel.headers.push(name, v.to_string());
            }
        }
        if let Some((n, _)) = inv.cseq() {
            cancel.headers.push(HeaderName::CSeq, format!("{n} CANCEL"));
        }
        for r in inv.headers.get_all(&HeaderName::Route) {
            cancel.headers.push(HeaderName::Route, r.to_string());
        }
        call.cancel_sent = true;
        call.pending += 1;
        let id = self.tx.send_request(now, cancel, flow);
        self.clients.insert(id, ClientRole::Own { call: key });
    }

    fn on_ack(&mut self, now: Instant, mut msg: Message, flow: Flow) {
        let Some(tag) = msg.to_tag() else { return };
        let Some(&(key, i)) = self.by_tag.get(tag) else {
            debug!("ACK for an unknown dialog dropped");
            return;
        };
        let cseq = msg.cseq().map(|(n, _)| n).unwrap_or(0);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if flow.transport == Transport::Udp {
            call.legs[i].flow.remote = flow.remote;
        }
        let Some(relay) = call.invite.as_mut() else {
            return;
        };
        if relay.from != i || relay.from_cseq != cseq {
            return;
        }
        if relay.acked {
            // A retransmitted ACK (for our retransmitted 2xx): resend ours.
            if let Some(ack) = relay.ack.clone() {
                let flow = Self::request_flow(&call.legs[1 - i]);
                self.emit(flow, ack);
            }
            return;
        }
        relay.acked = true;
        relay.ok = None;
        relay.next = None;
        let to_cseq = relay.to_cseq;
        let to = 1 - i;
        let mut ack = Message::request(Method::Ack, call.legs[to].remote_target.clone());
        let leg = std::mem::replace(&mut call.legs[to], placeholder_leg());
        self.fill_dialog_request(&mut ack, &leg, Method::Ack, to_cseq, 70);
        if !msg.body.is_empty() {
            copy_passthrough(&msg, &mut ack, &local_uri_host(leg.flow.local));
            ack.body = msg.body.clone();
        }
        let out = Self::request_flow(&leg);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.legs[to] = leg;
        // An ACK cannot be refused: the verdict only matters for requests that get answers.
        let _ = self.run_hooks(key, to, &mut ack, &mut msg);
        let data = Bytes::from(ack.to_bytes());
        if let Some(r) = self.calls.get_mut(&key).and_then(|c| c.invite.as_mut()) {
            r.ack = Some(data.clone());
        }
        self.emit(out, data);
        let _ = now;
    }

    // ------------------------------------------------------------------ responses

    fn on_response(&mut self, now: Instant, tx: ClientTxId, mut msg: Message) {
        let status = msg.status().unwrap_or(500);
        let Some(role) = self.clients.get(&tx) else {
            return;
        };
        match role {
            ClientRole::Invite { call } => {
                let key = *call;
                self.on_invite_response(now, key, status, msg);
            }
            ClientRole::Relay { .. } => {
                if status < 200 && status != 100 {
                    self.relay_response(now, tx, status, &mut msg, false);
                } else if status >= 200 {
                    self.relay_response(now, tx, status, &mut msg, true);
                }
            }
            ClientRole::Own { call } => {
                let key = *call;
                if status >= 200 {
                    self.finish_client(key, tx, false);
                }
            }
        }
    }

    fn on_invite_response(&mut self, now: Instant, key: CallKey, status: u16, mut msg: Message) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if status == 100 {
            return;
        }
        let b = &mut call.legs[1];
        if let Some(tag) = msg.to_tag() {
            if ((200..300).contains(&status) || b.remote_tag.is_none())
                && b.remote_tag.as_deref() != Some(tag)
            {
                b.remote_tag = Some(tag.to_string());
                b.remote_party = msg.header(&HeaderName::To).unwrap_or("").to_string();
            }
            if let Some(c) = msg
                .headers
                .values(&HeaderName::Contact)
                .next()
                .and_then(NameAddr::parse)
            {
                b.remote_target = c.uri.to_string();
            }
            if status < 300 {
                let mut rr: Vec<String> = msg
                    .headers
                    .values(&HeaderName::RecordRoute)
                    .map(str::to_string)
                    .collect();
                rr.reverse();
                b.route_set = rr;
            }
        }
        if status < 200 {
            self.record_progress(key, now);
            self.send_cancel_if_possible(now, key);
            let Some(call) = self.calls.get(&key) else {
                return;
            };
            if call.cancelled {
                return;
            }
            if let Some((stx, req)) = call.uas_invite.as_ref() {
                let mut resp = self.build_relayed_response(call, 0, req, status, &msg, true);
                let stx = *stx;
                let _ = self.run_hooks(key, 0, &mut resp, &mut msg);
                self.respond(now, stx, &resp);
            }
            return;
        }
        if status < 300 {
            self.on_invite_2xx(now, key, msg);
            return;
        }
        // Final failure: relay and end the call.
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.uac_invite = None;
        if let Some((stx, req)) = call.uas_invite.take() {
            let call = &self.calls[&key];
            let mapped = map_error_status(status);
            let mut resp = self.build_relayed_response(call, 0, &req, mapped, &msg, false);
            let _ = self.run_hooks(key, 0, &mut resp, &mut msg);
            self.record_failure(key, mapped);
            debug!(call = key, status, "call failed");
            self.respond(now, stx, &resp);
        }
        self.end_call_if_idle(key);
    }

    fn on_invite_2xx(&mut self, now: Instant, key: CallKey, mut msg: Message) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.cancelled {
            // Answered while being cancelled: confirm and hang up the callee.
            let ack = self.build_ack_for_uac(key);
            if let Some((flow, data)) = ack {
                self.emit(flow, data);
            }
            self.send_bye(now, key, 1);
            return;
        }
        if call.state != CallState::Proceeding {
            // A retransmitted 2xx: answer with our ACK again if we have sent it.
            if let Some(ack) = call.invite.as_ref().and_then(|r| r.ack.clone()) {
                let flow = Self::request_flow(&call.legs[1]);
                self.emit(flow, ack);
            }
            return;
        }
        call.state = CallState::Established;
        call.uac_invite = None;
        let Some((stx, req)) = call.uas_invite.take() else {
            return;
        };
        let invite_cseq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        let b_cseq = call.legs[1].local_cseq;
        let call = &self.calls[&key];
        let ok_flow = call.legs[0].flow;
        let mut resp = self.build_relayed_response(call, 0, &req, 200, &msg, true);
        let _ = self.run_hooks(key, 0, &mut resp, &mut msg);
        let data = Bytes::from(resp.to_bytes());
        self.stats.calls_answered += 1;
        self.record_progress(key, now);
        if let Some(c) = self.calls.get_mut(&key) {
            c.answered_at = Some(now);
            let (label, d) = (self.label(&self.calls[&key]), self.calls[&key].direction);
            self.metrics.call_answered(&label, d);
        }
        debug!(call = key, "answered");
        self.respond(now, stx, &resp);
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.timeout();
        let reliable = ok_flow.transport.is_reliable();
        if let Some(call) = self.calls.get_mut(&key) {
            call.invite = Some(InviteRelay {
                from: 0,
                from_cseq: invite_cseq,
                to_cseq: b_cseq,
                ok: Some(data),
                ok_flow: reply_flow_of(&req, ok_flow),
                interval: t1,
                next: (!reliable).then_some(now + t1),
                give_up,
                ack: None,
                acked: false,
            });
        }
        if !reliable {
            self.timers
                .push(Reverse((now + t1, key, CallTimer::Invite2xx)));
        }
        self.timers
            .push(Reverse((give_up, key, CallTimer::Invite2xx)));
    }

    /// Run the call's plugin chain over a message about to leave on leg `to`, built from
    /// `original` (which arrived on the other leg).
    fn run_hooks(
        &mut self,
        key: CallKey,
        to: usize,
        out: &mut Message,
        original: &mut Message,
    ) -> HookVerdict {
        let Some(call) = self.calls.get(&key) else {
            return HookVerdict::Continue;
        };
        if !self.hooks.active(call.generation, &call.trunk) {
            return HookVerdict::Continue;
        }
        let (generation, trunk, source) =
            (call.generation, call.trunk.clone(), call.legs[1 - to].flow);
        let ctx = HookContext {
            call: key,
            direction: call.direction,
            leg: leg_side(call.direction, to),
            trunk: &trunk,
            source: source.remote,
            transport: source.transport,
        };
        self.hooks.message(generation, &ctx, out, original)
    }

    /// Build an ACK for the callee's 2xx to the initial INVITE (used when we must hang up).
    fn build_ack_for_uac(&mut self, key: CallKey) -> Option<(Flow, Bytes)> {
        let call = self.calls.get_mut(&key)?;
        let leg = std::mem::replace(&mut call.legs[1], placeholder_leg());
        let cseq = leg.local_cseq;
        let mut ack = Message::request(Method::Ack, leg.remote_target.clone());
        self.fill_dialog_request(&mut ack, &leg, Method::Ack, cseq, 70);
        let flow = Self::request_flow(&leg);
        self.calls.get_mut(&key)?.legs[1] = leg;
        Some((flow, Bytes::from(ack.to_bytes())))
    }

    /// Build the response on leg `leg` to `req`, from the response `from` of the other leg.
    fn build_relayed_response(
        &self,
        call: &Call,
        leg: usize,
        req: &Message,
        status: u16,
        from: &Message,
        with_dialog: bool,
    ) -> Message {
        let reason = if status == from.status().unwrap_or(0) {
            from.reason().unwrap_or(reason_phrase(status)).to_string()
        } else {
            reason_phrase(status).to_string()
        };
        let l = &call.legs[leg];
        let mut resp = response_to(req, status, &reason, Some(&l.local_tag));
        let method = req.method().cloned().unwrap_or(Method::Options);
        if with_dialog
            && matches!(method, Method::Invite | Method::Update)
            && status > 100
            && status < 300
        {
            resp.headers.push(HeaderName::Contact, l.contact.clone());
            for r in req.headers.get_all(&HeaderName::RecordRoute) {
                resp.headers.push(HeaderName::RecordRoute, r.to_string());
            }
        }
        let local_host = local_uri_host(l.flow.local);
        copy_passthrough(from, &mut resp, &local_host);
        rewrite_identity(from, &mut resp, &local_host);
        if status == 405 {
            if let Some(a) = from.header(&HeaderName::Allow) {
                resp.headers.set(HeaderName::Allow, a.to_string());
            }
        }
        self.add_agent(&mut resp, true);
        resp.body = from.body.clone();
        resp
    }

    fn relay_response(
        &mut self,
        now: Instant,
        tx: ClientTxId,
        status: u16,
        msg: &mut Message,
        fin: bool,
    ) {
        let Some(ClientRole::Relay {
            call: key,
            from,
            server,
            request,
        }) = self.clients.get(&tx)
        else {
            return;
        };
        let (key, from, server) = (*key, *from, *server);
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let method = request.method().cloned().unwrap_or(Method::Options);
        let mapped = if status >= 300 {
            map_error_status(status)
        } else {
            status
        };
        let mut resp = self.build_relayed_response(call, from, request, mapped, msg, true);
        let ok_flow = reply_flow_of(request, call.legs[from].flow);
        let _ = self.run_hooks(key, from, &mut resp, msg);
        if method == Method::Invite && (200..300).contains(&status) {
            // re-INVITE answered: the 2xx is ours to retransmit until the ACK.
            let data = Bytes::from(resp.to_bytes());
            let flow = ok_flow;
            if msg.to_tag().is_some() {
                if let Some(c) = msg
                    .headers
                    .values(&HeaderName::Contact)
                    .next()
                    .and_then(NameAddr::parse)
                {
                    let target = c.uri.to_string();
                    if let Some(call) = self.calls.get_mut(&key) {
                        call.legs[1 - from].remote_target = target;
                    }
                }
            }
            self.respond(now, server, &resp);
            let t1 = self.cfg.timers.t1;
            let reliable = flow.transport.is_reliable();
            if let Some(r) = self.calls.get_mut(&key).and_then(|c| c.invite.as_mut()) {
                r.ok = Some(data);
                r.ok_flow = flow;
                r.interval = t1;
                r.next = (!reliable).then_some(now + t1);
                r.give_up = now + self.cfg.timers.timeout();
                let give_up = r.give_up;
                if !reliable {
                    self.timers
                        .push(Reverse((now + t1, key, CallTimer::Invite2xx)));
                }
                self.timers
                    .push(Reverse((give_up, key, CallTimer::Invite2xx)));
            }
        } else {
            self.respond(now, server, &resp);
            if fin && method == Method::Invite {
                // re-INVITE failed: the dialog goes on as before.
                if let Some(call) = self.calls.get_mut(&key) {
                    call.invite = None;
                }
            }
        }
        if fin {
            self.finish_client(key, tx, method == Method::Bye);
        }
    }

    fn finish_client(&mut self, key: CallKey, tx: ClientTxId, was_bye: bool) {
        self.clients.remove(&tx);
        if let Some(call) = self.calls.get_mut(&key) {
            call.pending = call.pending.saturating_sub(1);
            if was_bye {
                call.state = CallState::Ending;
            }
        }
        self.end_call_if_idle(key);
    }

    fn on_stray_response(&mut self, msg: Message) {
        // A 2xx retransmitted after our client transaction ended: re-ACK it if we know the call.
        if !msg.status().is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        let Some(tag) = msg.from_tag() else { return };
        let Some(&(key, i)) = self.by_tag.get(tag) else {
            return;
        };
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if let Some(ack) = call
            .invite
            .as_ref()
            .filter(|r| r.from != i)
            .and_then(|r| r.ack.clone())
        {
            let flow = Self::request_flow(&call.legs[i]);
            self.emit(flow, ack);
        }
    }

    fn on_client_timeout(&mut self, now: Instant, tx: ClientTxId) {
        let Some(role) = self.clients.get(&tx) else {
            return;
        };
        match role {
            ClientRole::Invite { call } => {
                let key = *call;
                warn!(call = key, "callee did not answer the INVITE (Timer B)");
                if let Some(call) = self.calls.get_mut(&key) {
                    call.uac_invite = None;
                    if let Some((stx, req)) = call.uas_invite.take() {
                        let tag = call.legs[0].local_tag.clone();
                        let resp = response_to(&req, 408, reason_phrase(408), Some(&tag));
                        self.record_failure(key, 408);
                        self.respond(now, stx, &resp);
                    }
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.state = CallState::Ending;
                    }
                }
            }
            ClientRole::Relay { .. } => {
                let mut timeout = Message::response(408, reason_phrase(408));
                self.relay_response(now, tx, 408, &mut timeout, true);
            }
            ClientRole::Own { .. } => {}
        }
    }

    fn on_terminated(&mut self, tx: TxRef) {
        match tx {
            TxRef::Server(id) => {
                self.by_uas_invite.remove(&id);
            }
            TxRef::Client(id) => {
                if let Some(role) = self.clients.remove(&id) {
                    let key = match role {
                        ClientRole::Invite { call } | ClientRole::Own { call } => call,
                        ClientRole::Relay { call, .. } => call,
                    };
                    if let Some(call) = self.calls.get_mut(&key) {
                        if matches!(role, ClientRole::Invite { .. }) {
                            call.uac_invite = None;
                        } else {
                            call.pending = call.pending.saturating_sub(1);
                        }
                    }
                    self.end_call_if_idle(key);
                }
            }
        }
    }

    fn on_2xx_timer(&mut self, now: Instant, key: CallKey, at: Instant) {
        let t2 = self.cfg.timers.t2;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(r) = call.invite.as_mut() else {
            return;
        };
        if r.acked {
            return;
        }
        if now >= r.give_up && at >= r.give_up {
            // No ACK for our 2xx: confirm the far side and hang up both legs (RFC 3261 §13.3.1.4).
            warn!(call = key, "no ACK for 2xx, ending the call");
            r.ok = None;
            r.acked = true;
            let from = r.from;
            if from == 0 {
                if let Some((flow, data)) = self.build_ack_for_uac(key) {
                    self.emit(flow, data);
                }
            }
            if let Some(c) = self.calls.get_mut(&key) {
                c.state = CallState::Ending;
            }
            self.send_bye(now, key, 0);
            self.send_bye(now, key, 1);
            self.dispatch(now);
            return;
        }
        if r.next != Some(at) {
            return;
        }
        if let Some(data) = r.ok.clone() {
            r.interval = (r.interval * 2).min(t2);
            let next = now + r.interval;
            r.next = Some(next);
            let flow = r.ok_flow;
            self.emit(flow, data);
            self.timers.push(Reverse((next, key, CallTimer::Invite2xx)));
        }
    }

    /// Send a BYE of our own on leg `i`.
    fn send_bye(&mut self, now: Instant, key: CallKey, i: usize) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.state = CallState::Ending;
        call.legs[i].local_cseq += 1;
        let cseq = call.legs[i].local_cseq;
        let leg = std::mem::replace(&mut call.legs[i], placeholder_leg());
        let mut bye = Message::request(Method::Bye, leg.remote_target.clone());
        self.fill_dialog_request(&mut bye, &leg, Method::Bye, cseq, 70);
        self.add_agent(&mut bye, false);
        let flow = Self::request_flow(&leg);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.legs[i] = leg;
        call.pending += 1;
        let id = self.tx.send_request(now, bye, flow);
        self.clients.insert(id, ClientRole::Own { call: key });
    }

    /// Hang up a call from our side (drain deadline, operator request): BYE on both legs.
    pub fn hang_up(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.state == CallState::Established {
            self.send_bye(now, key, 0);
            self.send_bye(now, key, 1);
            self.dispatch(now);
        }
    }

    /// Keys of the calls in progress.
    pub fn call_keys(&self) -> Vec<CallKey> {
        self.calls.keys().copied().collect()
    }

    fn label(&self, call: &Call) -> Arc<str> {
        call.trunk.clone()
    }

    /// Count a call attempt that failed with `status` on the caller's leg.
    fn record_failure(&mut self, key: CallKey, status: u16) {
        self.stats.calls_failed += 1;
        if let Some(call) = self.calls.get(&key) {
            let (label, d) = (self.label(call), call.direction);
            self.metrics.call_failed(&label, d, status);
        }
    }

    /// Post-dial delay: from the caller's INVITE to the first ringing or answer.
    fn record_progress(&mut self, key: CallKey, now: Instant) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.progressed {
            return;
        }
        call.progressed = true;
        let delay = now.saturating_duration_since(call.started);
        let d = call.direction;
        let label = self.label(&self.calls[&key]);
        self.metrics.post_dial_delay(&label, d, delay);
    }

    fn end_call_if_idle(&mut self, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let idle = call.pending == 0
            && call.state == CallState::Ending
            && call.uas_invite.is_none()
            && call.uac_invite.is_none();
        let failed_early = call.state == CallState::Proceeding
            && call.uas_invite.is_none()
            && call.uac_invite.is_none()
            && call.pending == 0;
        if idle || failed_early {
            if let Some(call) = self.calls.remove(&key) {
                for leg in &call.legs {
                    self.by_tag.remove(&leg.local_tag);
                }
                self.hooks.release(call.generation);
                let duration = call
                    .answered_at
                    .map(|a| self.now.saturating_duration_since(a));
                let label = self.label(&call);
                self.metrics.call_ended(&label, call.direction, duration);
                debug!(call = call.key, direction = ?call.direction, trunk = %call.trunk, "call removed");
            }
        }
    }

    // ------------------------------------------------------------------ identifiers

    fn hex(&mut self, n: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        (0..n).map(|_| HEX[self.rng.usize(..16)] as char).collect()
    }

    fn new_tag(&mut self) -> String {
        self.hex(16)
    }

    fn new_branch(&mut self) -> String {
        format!("{}{}", sluice_sip::BRANCH_COOKIE, self.hex(20))
    }

    fn new_call_id(&mut self) -> String {
        self.hex(32)
    }
}

/// The side of Sluice leg `i` of a call faces: leg 0 faces the caller.
fn leg_side(direction: Direction, i: usize) -> Side {
    match (direction, i) {
        (Direction::Outbound, 0) | (Direction::Inbound, 1) => Side::Internal,
        _ => Side::External,
    }
}

/// A leg value used only while the real one is borrowed out of its call.
fn placeholder_leg() -> Leg {
    let addr = SocketAddr::from(([0, 0, 0, 0], 0));
    Leg {
        flow: Flow {
            transport: Transport::Udp,
            local: addr,
            remote: addr,
            conn: None,
        },
        call_id: String::new(),
        local_tag: String::new(),
        local_party: String::new(),
        remote_party: String::new(),
        remote_tag: None,
        local_cseq: 0,
        remote_cseq: None,
        remote_target: String::new(),
        route_set: Vec::new(),
        contact: String::new(),
        via_host: String::new(),
    }
}

/// RFC 3581: record the source address in the top Via of a request received over UDP.
fn stamp_received(msg: &mut Message, flow: Flow) {
    let Some(first) = msg.headers.values(&HeaderName::Via).next() else {
        return;
    };
    let first_owned = first.to_string();
    let first = first_owned.as_str();
    let Some(via) = sluice_sip::Via::parse(first) else {
        return;
    };
    let wants_rport = via.param("rport").is_some_and(str::is_empty);
    let ip = flow.remote.ip().to_string();
    let host_differs = via.host.trim_start_matches('[').trim_end_matches(']') != ip;
    if !wants_rport && !host_differs {
        return;
    }
    let mut stamped = String::with_capacity(first.len() + 40);
    // Rebuild the params: drop empty rport and any received, then add ours.
    let head_len = first.len() - via.params.len();
    stamped.push_str(&first[..head_len]);
    for (name, value) in sluice_sip::fields::params(via.params) {
        if name.eq_ignore_ascii_case("received")
            || name.eq_ignore_ascii_case("rport") && value.is_empty()
        {
            continue;
        }
        stamped.push(';');
        stamped.push_str(name);
        if !value.is_empty() {
            stamped.push('=');
            stamped.push_str(value);
        }
    }
    stamped.push_str(";received=");
    stamped.push_str(&ip);
    if wants_rport {
        stamped.push_str(";rport=");
        stamped.push_str(&flow.remote.port().to_string());
    }
    if let Some(old) = msg.headers.pop_first_value(&HeaderName::Via) {
        debug_assert_eq!(old, first_owned);
        msg.headers.push_front(HeaderName::Via, stamped);
    }
}

/// Where responses to `req` go when we answer it outside its transaction (2xx retransmissions).
fn reply_flow_of(req: &Message, flow: Flow) -> Flow {
    if flow.transport.is_reliable() {
        return flow;
    }
    let mut f = flow;
    if let Some(v) = req.top_via() {
        if let Some(port) = v.param("rport").and_then(|p| p.parse::<u16>().ok()) {
            f.remote.set_port(port);
        } else if v.param("rport").is_none() {
            f.remote.set_port(v.port.unwrap_or(5060));
        }
    }
    f
}

/// Error statuses that make no sense across the B2BUA are mapped: the caller cannot answer a
/// challenge meant for Sluice, nor follow a redirect into the provider's network.
fn map_error_status(status: u16) -> u16 {
    match status {
        401 | 407 => 503,
        300..=399 => 480,
        s => s,
    }
}

fn uri_user(uri: &str) -> Option<&str> {
    let u = Uri::parse(uri)?;
    if u.is_sip() {
        u.user
    } else if u.scheme.eq_ignore_ascii_case("tel") {
        Some(u.host.split(';').next().unwrap_or(u.host))
    } else {
        None
    }
}

fn literal_addr(u: &Uri<'_>) -> Option<SocketAddr> {
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

fn peer_uri_host(peer: &PeerConfig) -> String {
    if peer.addr.port() == 5060 {
        bracket(&peer.host)
    } else {
        format!("{}:{}", bracket(&peer.host), peer.addr.port())
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn transport_param(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
    }
}

fn make_contact(user: &str, l: &ListenerAddr) -> String {
    let user = if user.is_empty() { "sluice" } else { user };
    format!(
        "<sip:{user}@{}{}>",
        format_host_port(l.addr),
        transport_param(l.transport)
    )
}
