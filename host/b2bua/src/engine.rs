//! The engine: where a SIP message enters ([`Engine::handle_datagram`]), which call it belongs
//! to (or whether it starts one), and where it leaves ([`Engine::poll_output`]). What happens
//! to a call is in [`crate::answer`] (its set-up) and [`crate::in_dialog`] (its dialogs); a new
//! call is routed by [`crate::route`], admitted by [`crate::refuse`] and built by
//! [`crate::setup`].
//!
//! # Input and output
//!
//! Sans-IO, in the style of quinn-proto: the shell feeds [`Engine::handle_datagram`] (or
//! [`Engine::handle_message`]), [`Engine::handle_timeout`] when [`Engine::poll_timeout`] is due,
//! and [`Engine::handle_transport_error`] when a connection cannot be made or written; after
//! every input it drains [`Engine::poll_output`] until `None`. Every input carries `now`; the
//! engine reads no clock.
//!
//! # A call's lifetime
//!
//! A call is created by an INVITE without a To tag that passes admission, and removed once it
//! is ending with none of its transactions left in flight ([`Call::is_over`]): after a failed
//! or cancelled set-up settles, or after the BYE of an established call is answered.

use crate::call::{CallKey, LegId};
use crate::calls::{Call, CallInfo, CallState, Calls};
use crate::config::EngineConfig;
use crate::core::{ClientRole, Core, Output};
use crate::handover::for_predecessor;
use crate::headers;
use crate::hooks::{Hooks, NoHooks};
use crate::ids::Ids;
use crate::media::MediaSides;
use crate::metrics::{EngineMetrics, Way};
use crate::refuse;
use crate::retransmit::CallTimers;
use crate::stats::EngineStats;
use crate::trunks::{TrunkStatus, Trunks};
use crate::{
    agents, answer, duration, failover, guard, in_dialog, malformed, new_call, session_timer,
};

use sluice_media::{call_of, MediaEvent};
use sluice_sip::{parse_message, reason_phrase, validate, HeaderName, Message, Method};
use sluice_transaction::{
    response_to, stamp_received, ClientTxId, Flow, ServerTxId, TransactionLayer, Transport,
    TxEvent, TxRef,
};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use tracing::{debug, warn};

/// The B2BUA, generic over its plugin chains (`NoHooks` runs none).
pub struct Engine<H: Hooks = NoHooks> {
    // Crate-visible so that a concern's own module may add its part of the API (see
    // `handover.rs`).
    pub(crate) core: Core<H>,
    pub(crate) calls: Calls,
}

impl Engine<NoHooks> {
    /// An engine without plugins. `seed` makes its identifiers reproducible.
    pub fn new(cfg: EngineConfig, seed: u64) -> Engine<NoHooks> {
        Engine::with_hooks(cfg, seed, NoHooks)
    }
}

impl<H: Hooks> Engine<H> {
    pub fn with_hooks(cfg: EngineConfig, seed: u64, hooks: H) -> Engine<H> {
        let trunk_names: Vec<String> = cfg.trunks.iter().map(|t| t.name.to_string()).collect();
        let media = cfg.media.as_ref().map(MediaSides::new);
        let trunks = Trunks::new(&cfg);
        let cfg_guard = cfg.guard.limits.unwrap_or_default();
        Engine {
            core: Core {
                tx: TransactionLayer::new(cfg.timers),
                cfg,
                clients: HashMap::new(),
                timers: CallTimers::default(),
                outputs: VecDeque::new(),
                ids: Ids::new(seed),
                stats: EngineStats::default(),
                metrics: EngineMetrics::new(&trunk_names),
                draining: false,
                drain_until: None,
                hooks,
                media,
                media_ops: Vec::new(),
                trunks,
                guard: sluice_guard::Guard::new(cfg_guard),
                dialog_peers: HashMap::new(),
                stranger_log: Default::default(),
                ingress_log: Default::default(),
                origin: None,
                retags: Vec::new(),
                predecessor: None,
                handed_over: false,
                wall: None,
                verifying: Default::default(),
            },
            calls: Calls::default(),
        }
    }

    pub fn hooks(&self) -> &H {
        &self.core.hooks
    }

    /// The plugin chains, to install a new generation (calls in progress keep theirs).
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.core.hooks
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.core.stats;
        s.active_calls = u64::try_from(self.calls.len()).unwrap_or(u64::MAX);
        s.transactions = self.core.tx.stats();
        s
    }

    pub fn active_calls(&self) -> usize {
        // Calls waiting for their STIR/SHAKEN certificate count too (a drain waits for them).
        self.calls.len().saturating_add(self.core.verifying.len())
    }

    /// Refuse new calls with 503 from now on; calls in progress continue.
    pub fn set_draining(&mut self, draining: bool) {
        self.core.draining = draining;
    }

    /// Drain: refuse new calls with 503 and a Retry-After of the time left until `until`.
    pub fn drain_until(&mut self, until: Instant) {
        metrics::gauge!("sluice_draining").set(1.0);
        self.core.draining = true;
        self.core.drain_until = Some(until);
    }

    pub fn is_draining(&self) -> bool {
        self.core.draining
    }

    pub fn config(&self) -> &EngineConfig {
        &self.core.cfg
    }

    /// Apply a new configuration. Calls in progress keep the addresses they were set up with;
    /// new calls use the new routes, and timers armed from now on the new values. Listener
    /// changes need a restart and are refused.
    pub fn reconfigure(&mut self, cfg: EngineConfig) -> Result<(), String> {
        if cfg.listeners != self.core.cfg.listeners {
            return Err("listener changes need a restart; the running configuration stays".into());
        }
        if cfg.tenants.is_none() && cfg.outbound_trunk.and_then(|i| cfg.trunks.get(i)).is_none() {
            return Err("the outbound trunk does not exist".into());
        }
        let sides = |c: &EngineConfig| c.media.map(|m| (m.internal, m.external));
        if sides(&cfg) != sides(&self.core.cfg) {
            return Err(
                "media addresses and port ranges need a restart; the running configuration stays"
                    .into(),
            );
        }
        let names: Vec<&str> = cfg.trunks.iter().map(|t| &*t.name).collect();
        self.core.metrics.set_trunks(&names);
        self.core.metrics.forget_peers();
        self.core.tx.set_timers(cfg.timers);
        self.core.trunks.reconfigure(&cfg);
        if let Some(limits) = cfg.guard.limits {
            self.core.guard.set_limits(limits);
        }
        self.core.cfg = cfg;
        Ok(())
    }

    /// The flood guard's bans in force, for the admin API.
    pub fn bans(&self, now: Instant) -> Vec<sluice_guard::Ban> {
        guard::bans(&self.core, now)
    }

    /// Lift the ban on `ip`, or every ban; how many were lifted.
    pub fn lift_bans(&mut self, ip: Option<std::net::IpAddr>, now: Instant) -> usize {
        guard::lift(&mut self.core, ip, now)
    }

    /// Number new calls from `base` on (the shell gives a time-ordered base, so that a call id
    /// is never reused by the next process).
    pub fn number_calls_from(&mut self, base: CallKey) {
        self.calls.start_keys_at(base);
    }

    /// A view of the calls in progress, for the admin API.
    pub fn calls_snapshot(&self, now: Instant) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self.calls.values().map(|c| c.info(now)).collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Every trunk's live status (registration, keep-alive, calls), for the admin API.
    pub fn trunk_status(&self, now: Instant) -> Vec<TrunkStatus> {
        self.core.trunks.report(&self.core.cfg, now)
    }

    /// Unregister from every provider (a drain or a shutdown starts).
    pub fn unregister_trunks(&mut self, now: Instant) {
        if self.core.handed_over {
            // The successor registered the same contacts.
            return;
        }
        self.core.trunks.unregister_all(now);
        agents::run(&mut self.core, now);
        self.dispatch(now);
    }

    /// Calls in progress per trunk name.
    pub fn calls_per_trunk(&self) -> HashMap<String, usize> {
        let mut m: HashMap<String, usize> = HashMap::new();
        for c in self.calls.values() {
            let n = m.entry(c.trunk.to_string()).or_default();
            *n = n.saturating_add(1);
        }
        m
    }

    /// Keys of the calls in progress.
    pub fn call_keys(&self) -> Vec<CallKey> {
        self.calls.keys().collect()
    }

    /// End a call from Sluice's side (drain deadline, operator): BYE on both legs once
    /// answered; still ringing, 503 to the caller and CANCEL to the callee.
    pub fn hang_up(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        match call.state {
            CallState::Established => {
                self.core.send_bye(call, now, LegId::Caller);
                self.core.send_bye(call, now, LegId::Callee);
            }
            // Still ringing: the caller gets 503, the callee a CANCEL.
            CallState::Proceeding(_) => {
                self.with_call(now, Some(key), |core, call| {
                    answer::abandon(core, call, now, 503);
                });
            }
            CallState::Ending(_) => {}
        }
        self.dispatch(now);
    }

    /// Free media port pairs per side `(internal, external)`; `None` without media anchoring.
    pub fn media_ports_free(&self) -> Option<(usize, usize)> {
        self.core.media.as_ref().map(MediaSides::available)
    }

    /// Publish counters kept by the transaction layer; the shell calls this after each batch.
    pub fn sync_metrics(&mut self) {
        self.core.metrics.sync_transactions(self.core.tx.stats());
        if let Some(sides) = &self.core.media {
            let (internal, external) = sides.available();
            self.core.metrics.media_ports_free(internal, external);
        }
    }

    /// The media relay reports on a stream: silence past the timeout, or ports it could not
    /// bind. Either ends the call (BYE on both legs once answered; CANCEL and 503 before).
    pub fn handle_media_event(&mut self, now: Instant, ev: MediaEvent) {
        let (stream, why) = match &ev {
            MediaEvent::Timeout { stream } => (*stream, "media timeout"),
            MediaEvent::OpenFailed { stream, .. } => (*stream, "media ports unavailable"),
        };
        let key = call_of(stream);
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if !call.media.as_ref().is_some_and(|a| a.media.has(stream)) {
            return;
        }
        warn!(call = key, trunk = %call.trunk, ?ev, "{why}: ending the call");
        if matches!(ev, MediaEvent::Timeout { .. }) {
            self.core.metrics.media_timeout(&call.trunk);
        }
        self.hang_up(now, key);
    }

    /// The next thing to send, until `None`. Call after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.core.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.core.tx.poll_timeout(),
            self.core.timers.next(),
            self.core.trunks.poll_timeout(),
            self.core.guard.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run the transaction and call timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.tx.handle_timeout(now);
        guard::sweep(&mut self.core, now);
        self.dispatch(now);
        agents::run(&mut self.core, now);
        self.dispatch(now);
        while let Some((at, key)) = self.core.timers.pop_due(now) {
            if self.verify_timed_out(now, key) {
                continue;
            }
            self.with_call(now, Some(key), |core, call| {
                failover::on_timer(core, call, now);
                in_dialog::timer(core, call, now, at);
                duration::on_timer(core, call, now);
                crate::prack::on_timer(core, call, now);
                session_timer::on_timer(core, call, now);
            });
            self.dispatch(now);
        }
    }

    /// A datagram or stream frame arrived on `flow`. Malformed input is answered 400/505 when
    /// it can be (else dropped), and counted; it never disturbs a call.
    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        if guard::refuses(&mut self.core, now, flow) {
            return;
        }
        let stats = &mut self.core.stats;
        stats.messages_in = stats.messages_in.saturating_add(1);
        let peer = self.core.message_peer(flow.remote);
        self.core.metrics.message(Way::Received, peer, data);
        match parse_message(data) {
            Ok(msg) if flow.transport == Transport::Udp && for_predecessor(&self.core, &msg) => {
                let data = bytes::Bytes::copy_from_slice(data);
                self.core.outputs.push_back(Output::Forward { flow, data });
            }
            Ok(msg) => self.handle_message(now, flow, msg),
            Err(e) => {
                let why = (e.status, e.reason);
                malformed::refuse(&mut self.core, now, e.partial.as_deref(), flow, why);
            }
        }
    }

    /// The head of a message a stream could not frame (no or a bad Content-Length, too
    /// large): a request gets `status` statelessly and is never acted on; the stream closes.
    pub fn handle_unframed(
        &mut self,
        now: Instant,
        flow: Flow,
        head: &[u8],
        why: (u16, &'static str),
    ) {
        let msg = match parse_message(head) {
            Ok(m) => Some(m),
            Err(e) => e.partial.map(|m| *m),
        };
        malformed::refuse(&mut self.core, now, msg.as_ref(), flow, why);
    }

    /// A parsed message arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, flow: Flow, mut msg: Message) {
        let max_header = self.core.cfg.max_header_bytes;
        if let Err(rej) = validate(&msg).and_then(|()| headers::within(&msg, max_header)) {
            let why = (rej.status, rej.reason);
            return malformed::refuse(&mut self.core, now, Some(&msg), flow, why);
        }
        if msg.is_request() {
            if guard::stranger_call(&mut self.core, now, &msg, flow) {
                return;
            }
            stamp_received(&mut msg, flow);
            self.core.tx.on_request(now, msg, flow);
        } else {
            self.core.tx.on_response(now, msg, flow);
        }
        self.dispatch(now);
    }

    /// The transport could not reach `remote` (a refused, timed-out or broken connection):
    /// requests waiting there fail at once instead of after Timer B or F.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        transport: Transport,
        remote: SocketAddr,
    ) {
        let failed = self.core.tx.transport_failed(transport, remote);
        if failed > 0 {
            warn!(%remote, %transport, transactions = failed, "transport error: requests failed");
        }
        self.dispatch(now);
    }

    /// React to the transaction layer's events until it has none; its transmits go out first.
    pub(crate) fn dispatch(&mut self, now: Instant) {
        loop {
            self.core.flush_transmits();
            let Some(ev) = self.core.tx.poll_event() else {
                return;
            };
            match ev {
                TxEvent::Request { tx, msg, flow } => self.on_request(now, tx, msg, flow),
                TxEvent::Ack { msg, flow } => self.on_ack(msg, flow),
                TxEvent::Response { tx, msg } => {
                    let last = msg.status().is_some_and(|s| s >= 200);
                    self.on_response(now, tx, msg);
                    if last {
                        // Retries and challenge answers were built from it just now.
                        self.core.tx.release_request(tx);
                    }
                }
                TxEvent::StrayResponse { msg, .. } => self.on_stray_response(&msg),
                TxEvent::ClientTimeout { tx, request } => {
                    self.on_client_failed(now, tx, 408, &request)
                }
                TxEvent::TransportError { tx, request } => {
                    self.on_client_failed(now, tx, 503, &request)
                }
                TxEvent::ServerTimeout { .. } => {}
                TxEvent::Terminated { tx } => self.on_terminated(now, tx),
            }
        }
    }

    // ------------------------------------------------------------------ requests

    fn on_request(&mut self, now: Instant, tx: ServerTxId, msg: Message, flow: Flow) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let core = &mut self.core;
        if method == Method::Cancel {
            let Some(invite) = core.tx.find_invite_for_cancel(&msg) else {
                return core.reply(now, tx, &msg, 481, reason_phrase(481));
            };
            core.reply(now, tx, &msg, 200, "OK");
            let Some(key) = self.calls.by_server_invite(invite) else {
                return crate::verify::cancelled(core, now, invite);
            };
            return self.with_call(now, Some(key), |core, call| answer::cancel(core, call, now));
        }
        if let Some(tag) = msg.to_tag() {
            let found = self.calls.by_tag(tag).filter(|&(key, leg)| {
                let call_id = self
                    .calls
                    .get(key)
                    .map(|c| c.legs.get(leg).call_id.as_str());
                msg.call_id().is_some() && msg.call_id() == call_id
            });
            let Some((key, leg)) = found else {
                return core.reply(now, tx, &msg, 481, reason_phrase(481));
            };
            if method == Method::Refer {
                return self.on_refer(now, (key, leg, tx, flow), msg);
            }
            return self.with_call(now, Some(key), |core, call| {
                in_dialog::request(core, call, now, (leg, tx, flow), msg)
            });
        }
        if let Some(unsupported) = refuse::unsupported_extensions(&msg) {
            let mut resp = response_to(&msg, 420, "Bad Extension", Some(&core.ids.tag()));
            resp.headers.push(HeaderName::Unsupported, unsupported);
            return core.respond(now, tx, &resp);
        }
        match method {
            Method::Options => guard::answer_options(core, now, (tx, flow), &msg),
            Method::Invite => self.on_initial_invite(now, tx, msg, flow),
            Method::Register => agents::on_register(core, now, tx, &msg, flow),
            Method::Bye | Method::Update | Method::Info | Method::Prack => {
                core.reply(now, tx, &msg, 481, reason_phrase(481));
            }
            Method::Notify
            | Method::Message
            | Method::Subscribe
            | Method::Publish
            | Method::Refer => crate::unsolicited::answer(core, now, tx, &msg),
            Method::Other(_) => core.reply(now, tx, &msg, 501, reason_phrase(501)),
            _ => core.reply(now, tx, &msg, 405, reason_phrase(405)),
        }
    }

    /// A new call: admission, route, both dialogs, the plugins, the INVITE toward the callee.
    fn on_initial_invite(&mut self, now: Instant, tx: ServerTxId, msg: Message, flow: Flow) {
        new_call::start(&mut self.core, &mut self.calls, now, (tx, msg, flow));
    }

    /// An ACK for a 2xx: the call of the dialog it names relays it.
    fn on_ack(&mut self, msg: Message, flow: Flow) {
        let Some((key, leg)) = msg.to_tag().and_then(|t| self.calls.by_tag(t)) else {
            debug!("ACK for an unknown dialog dropped");
            return;
        };
        if let Some(call) = self.calls.get_mut(key) {
            in_dialog::ack(&mut self.core, call, leg, msg, flow);
        }
    }

    // ------------------------------------------------------------------ responses

    fn on_response(&mut self, now: Instant, tx: ClientTxId, msg: Message) {
        let status = msg.status().unwrap_or(500);
        let (key, role) = match self.core.clients.get(&tx) {
            Some(ClientRole::Agent { trunk, request }) => {
                let (trunk, request) = (trunk.clone(), *request);
                return agents::on_response(&mut self.core, now, &trunk, request, &msg);
            }
            Some(role) => (role.call().unwrap_or_default(), role),
            None => return,
        };
        match role {
            ClientRole::Invite { .. } if !self.current_invite(key, tx) => {
                let sent = self.core.tx.client_request(tx).cloned();
                let flow = self.core.tx.client_flow(tx);
                if let (200..=299, Some(sent), Some(flow)) = (status, sent, flow) {
                    // Once: its retransmissions find no role.
                    self.core.clients.remove(&tx);
                    self.with_call(now, Some(key), |core, call| {
                        failover::abandoned_answer(core, call, now, (&sent, flow), &msg)
                    });
                }
            }
            ClientRole::Invite { .. } => {
                self.with_call(now, Some(key), |core, call| match status {
                    100 => {}
                    101..=199 => answer::provisional(core, call, now, status, msg),
                    200..=299 => answer::success(core, call, now, msg),
                    _ => answer::failure(core, call, now, status, msg),
                })
            }
            ClientRole::Relay { .. } if status != 100 => {
                let settled = self
                    .calls
                    .get_mut(key)
                    .is_some_and(|call| in_dialog::response(&mut self.core, call, now, tx, msg));
                if settled {
                    self.finish_client(now, key, tx);
                }
            }
            role => {
                if let Some(own) = crate::own_requests::Own::of(role) {
                    self.on_own_response(now, (key, tx, own), msg);
                }
            }
        }
    }

    /// Whether `tx` is the INVITE call `key` waits on (an earlier one, challenged or failed
    /// over, is not).
    fn current_invite(&self, key: CallKey, tx: ClientTxId) -> bool {
        match self.calls.get(key).map(|c| &c.state) {
            Some(CallState::Proceeding(p)) => p.uac == tx,
            Some(CallState::Ending(e)) => e.uac.is_none_or(|u| u == tx),
            _ => true,
        }
    }

    /// A 2xx retransmitted after its client transaction ended: re-ACK it if the call is known.
    fn on_stray_response(&mut self, msg: &Message) {
        if !msg.status().is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        let Some((key, leg)) = msg.from_tag().and_then(|t| self.calls.by_tag(t)) else {
            return;
        };
        if let Some(call) = self.calls.get(key) {
            in_dialog::stray_2xx(&mut self.core, call, leg);
        }
    }

    /// A client transaction failed without an answer: Timer B/F (`status` 408) or the
    /// transport (503).
    fn on_client_failed(&mut self, now: Instant, tx: ClientTxId, status: u16, sent: &Message) {
        let Some(role) = self.core.clients.get(&tx) else {
            return;
        };
        if let ClientRole::Agent { trunk, request } = role {
            let (trunk, request) = (trunk.clone(), *request);
            return agents::fail(&mut self.core, now, &trunk, request);
        }
        let key = role.call().unwrap_or_default();
        match role {
            ClientRole::Invite { .. } if !self.current_invite(key, tx) => {}
            ClientRole::Invite { .. } => {
                self.with_call(now, Some(key), |core, call| {
                    answer::no_answer(core, call, now, status, sent)
                });
            }
            ClientRole::Relay { .. } => {
                let settled = self.calls.get_mut(key).is_some_and(|call| {
                    in_dialog::no_response(&mut self.core, call, now, tx, status)
                });
                if settled {
                    self.finish_client(now, key, tx);
                }
            }
            ClientRole::Agent { .. } => {}
            role => {
                if let Some(own) = crate::own_requests::Own::of(role) {
                    self.on_own_failure(now, key, own, status);
                }
            }
        }
    }

    fn on_terminated(&mut self, now: Instant, tx: TxRef) {
        match tx {
            TxRef::Server(id) => self.calls.forget_server_invite(id),
            TxRef::Client(id) => {
                let Some(role) = self.core.clients.remove(&id) else {
                    return;
                };
                let key = role.call();
                self.with_call(now, key, |_, call| match (role, &mut call.state) {
                    (ClientRole::Invite { .. }, CallState::Ending(e)) if e.uac == Some(id) => {
                        e.uac = None;
                    }
                    (ClientRole::Invite { .. }, _) => {}
                    _ => call.pending = call.pending.saturating_sub(1),
                });
            }
        }
    }

    /// A relayed request or one of Sluice's own got its final answer.
    pub(crate) fn finish_client(&mut self, now: Instant, key: CallKey, tx: ClientTxId) {
        self.core.clients.remove(&tx);
        self.with_call(now, Some(key), |_, call| {
            call.pending = call.pending.saturating_sub(1);
        });
    }

    /// Run `f` on call `key` (when it exists) with the engine's core, then remove the call if
    /// that left nothing of it.
    pub(crate) fn with_call(
        &mut self,
        now: Instant,
        key: Option<CallKey>,
        f: impl FnOnce(&mut Core<H>, &mut Call),
    ) {
        let Some(key) = key else {
            return;
        };
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        f(&mut self.core, call);
        for (key, old, new) in std::mem::take(&mut self.core.retags) {
            self.calls.retag(key, &old, &new);
        }
        let Some(call) = self.calls.get_mut(key) else {
            return;
        };
        if !call.is_over() {
            return;
        }
        let Some(mut call) = self.calls.remove(key) else {
            return;
        };
        guard::forget_peers(&mut self.core, &mut call);
        self.core
            .close_media(call.key, &call.trunk, call.media.take());
        self.core.trunks.call_ended(&call.trunk);
        self.core.hooks.release(call.generation);
        let duration = call.answered_at.map(|a| now.saturating_duration_since(a));
        self.core
            .metrics
            .call_ended(&call.trunk, call.direction, duration);
        if self.core.cfg.log_calls {
            log_call_end(&call, now);
        }
    }
}

/// The line operators grep for and ship: one per call, when it ends, with both legs' SIP
/// Call-IDs (to follow it into the PBX's and the provider's logs), the final status, how long
/// it rang and lasted.
fn log_call_end(call: &Call, now: Instant) {
    let setup_ms = call
        .answered_at
        .unwrap_or(now)
        .saturating_duration_since(call.started)
        .as_millis();
    let talk_s = call
        .answered_at
        .map_or(0, |a| now.saturating_duration_since(a).as_secs());
    tracing::info!(
        call = call.key,
        trunk = %call.trunk,
        direction = ?call.direction,
        caller_call_id = %call.legs.caller.call_id,
        callee_call_id = %call.legs.callee.call_id,
        status = call.final_status.unwrap_or(0),
        setup_ms,
        talk_s,
        "call ended"
    );
}
