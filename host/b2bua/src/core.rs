//! What every call's handlers share: the engine minus its table of calls (as quinn-proto's
//! connections share an endpoint's services). The transaction layer and what Sluice sends,
//! identifiers, client transactions and their purpose, the 2xx timers, plugins and counters.
//! A handler gets `&mut Core` and `&mut Call` side by side, so that it never looks its call up
//! again.

use crate::call::{CallKey, LegId};
use crate::calls::{Call, CallState, Ending};
use crate::config::EngineConfig;
use crate::headers::{add_agent, ALLOW};
use crate::hooks::{HookContext, HookVerdict, Hooks};
use crate::ids::Ids;
use crate::media::{Anchor, MediaSides, Unanchorable};
use crate::metrics::{EngineMetrics, Way};
use crate::retransmit::CallTimers;
use crate::stats::EngineStats;
use crate::trunks::Trunks;
use bytes::Bytes;
use sluice_media::{MediaOp, Role};
use sluice_sip::{Message, Method};
use sluice_transaction::{response_to, ClientTxId, Flow, ServerTxId, TransactionLayer};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// What the engine asks of the I/O shell.
#[derive(Debug, Clone)]
pub enum Output {
    Transmit {
        flow: Flow,
        data: Bytes,
    },
    /// For the media relay; it comes before the message whose SDP names the ports.
    Media(MediaOp),
    /// A datagram of the predecessor's calls (after an upgrade), to pass to it as received.
    Forward {
        flow: Flow,
        data: Bytes,
    },
    /// Fetch the certificates at `url` for call `id` (STIR/SHAKEN) and give them to
    /// [`crate::Engine::handle_certificate`].
    FetchCertificate {
        id: u64,
        url: String,
    },
}

/// Why a client transaction was started.
#[derive(Debug)]
pub enum ClientRole {
    /// The initial INVITE toward the callee.
    Invite { call: CallKey },
    /// An in-dialog request relayed from leg `from`; its answer goes back on `server`.
    Relay {
        call: CallKey,
        from: LegId,
        server: ServerTxId,
        request: Box<Message>,
    },
    /// A request Sluice sends on its own (a CANCEL, a BYE that ends a call, a PRACK): its
    /// answer only settles it.
    Teardown { call: CallKey },
    /// Sluice's own session refresh (an UPDATE toward the callee).
    Refresh { call: CallKey },
    /// The INVITE of a transfer Sluice carries out (toward the PBX).
    Transfer { call: CallKey },
    /// A trunk agent's request: REGISTER or an OPTIONS probe.
    Agent {
        trunk: Arc<str>,
        request: AgentRequest,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRequest {
    Register,
    /// OPTIONS to the trunk's destination at this address.
    Probe(std::net::SocketAddr),
}

impl ClientRole {
    /// The call the transaction belongs to (none for a trunk agent's).
    pub fn call(&self) -> Option<CallKey> {
        match self {
            ClientRole::Invite { call }
            | ClientRole::Relay { call, .. }
            | ClientRole::Teardown { call }
            | ClientRole::Refresh { call }
            | ClientRole::Transfer { call } => Some(*call),
            ClientRole::Agent { .. } => None,
        }
    }
}

pub struct Core<H: Hooks> {
    pub cfg: EngineConfig,
    pub tx: TransactionLayer,
    pub clients: HashMap<ClientTxId, ClientRole>,
    pub timers: CallTimers,
    pub outputs: VecDeque<Output>,
    pub ids: Ids,
    pub stats: EngineStats,
    pub metrics: EngineMetrics,
    pub draining: bool,
    /// When the drain's calls will be hung up (for Retry-After).
    pub drain_until: Option<Instant>,
    pub hooks: H,
    /// Media ports per side; `None` when no media is anchored.
    pub media: Option<MediaSides>,
    /// Scratch for the relay operations of one SDP.
    pub media_ops: Vec<MediaOp>,
    /// The trunks' agents (registration, keep-alive, registrar) and call counts.
    pub trunks: Trunks,
    /// The flood guard: requests per source, bans.
    pub guard: sluice_guard::Guard,
    /// The addresses the calls in progress send to and hear from (their dialogs' next hops),
    /// by the number of calls: never counted by the flood guard (a provider's cluster node
    /// that only appears in a call's Contact).
    pub dialog_peers: HashMap<std::net::IpAddr, u32>,
    /// Log lines about strangers' calls and malformed input, at most one a second each.
    pub stranger_log: crate::guard::Throttle,
    pub ingress_log: crate::guard::Throttle,
    /// The first instant the engine saw: Sluice's registrar counts nonce ages from it.
    pub origin: Option<Instant>,
    /// Dialogs that changed their local tag while their call was borrowed (failover): the
    /// engine updates its index after the handler.
    pub retags: Vec<(CallKey, String, String)>,
    /// The process this one took over from, while it finishes its calls.
    pub predecessor: Option<crate::handover::Predecessor>,
    /// This process handed its sockets to a successor: its trunk agents are stopped.
    pub handed_over: bool,
    /// UNIX time at an instant, for PASSporTs' `iat`.
    pub wall: Option<crate::identity::WallClock>,
    /// New calls waiting for their STIR/SHAKEN certificate.
    pub verifying: crate::verify::Verifying,
}

impl<H: Hooks> Core<H> {
    pub fn emit(&mut self, flow: Flow, data: Bytes) {
        self.stats.messages_out = self.stats.messages_out.saturating_add(1);
        let peer = self.message_peer(flow.remote);
        self.metrics.message(Way::Sent, peer, &data);
        self.outputs.push_back(Output::Transmit { flow, data });
    }

    /// Whose messages `addr` sends and receives, for the message counters: a trunk (by its
    /// addresses or a gateway's registration), the PBX, or anyone else.
    pub fn message_peer(&mut self, addr: std::net::SocketAddr) -> usize {
        if let Some(slot) = self.metrics.known_peer(addr) {
            return slot;
        }
        let trunk = self
            .cfg
            .trunks
            .iter()
            .find(|t| t.sends_from(addr))
            .map(|t| t.name.clone())
            .or_else(|| {
                self.trunks
                    .agents()
                    .find(|a| {
                        a.registrar
                            .as_ref()
                            .is_some_and(|r| r.registered_from(addr))
                    })
                    .map(|a| a.config.name.clone())
            });
        let name: &str = match &trunk {
            Some(t) => t,
            None if self.cfg.is_pbx(addr.ip()) => crate::metrics::PBX_PEER,
            // Strangers are not remembered: a scan must not fill the memory.
            None => return crate::metrics::UNKNOWN_SLOT,
        };
        let slot = self.metrics.peer_slot(name);
        self.metrics.remember_peer(addr, slot);
        slot
    }

    pub fn emit_message(&mut self, flow: Flow, msg: &Message) {
        self.emit(flow, Bytes::from(msg.to_bytes()));
    }

    /// Move what the transaction layer sends to the output, in order.
    pub fn flush_transmits(&mut self) {
        while let Some(t) = self.tx.poll_transmit() {
            self.emit(t.flow, t.data);
        }
    }

    pub fn respond(&mut self, now: Instant, tx: ServerTxId, resp: &Message) {
        self.tx.respond(now, tx, resp);
        self.flush_transmits();
    }

    /// Answer a request locally, with a To tag of ours.
    pub fn reply(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Message,
        status: u16,
        reason: &str,
    ) {
        let mut resp = response_to(req, status, reason, Some(&self.ids.tag()));
        // A stranger learns nothing that fingerprints Sluice (Server, Allow).
        let known = self
            .tx
            .server_flow(tx)
            .is_none_or(|f| crate::guard::shows_agent(self, f.remote.ip(), now));
        if known {
            add_agent(&mut resp, &self.cfg.user_agent);
            if status == 405 || status == 200 && req.method() == Some(&Method::Options) {
                resp.headers.push(sluice_sip::HeaderName::Allow, ALLOW);
            }
        }
        self.respond(now, tx, &resp);
    }

    /// Rewrite the SDP of `out` (built from a message of leg `from`) for the leg it leaves on,
    /// before the plugins see it. Calls without anchored media are left alone.
    pub fn anchor_sdp(
        &mut self,
        call: &mut Call,
        from: LegId,
        role: Role,
        out: &mut Message,
    ) -> Result<(), Unanchorable> {
        let answered = matches!(call.state, CallState::Established);
        self.rewrite_sdp(call.key, &mut call.media, answered, (from, role), out)?;
        if !out.body.is_empty() {
            *call.sent_sdp.get_mut(from.other()) = Some(out.body.clone());
        }
        Ok(())
    }

    /// [`Core::anchor_sdp`] for a call that is not in the table yet (its INVITE).
    pub fn rewrite_sdp(
        &mut self,
        key: CallKey,
        media: &mut Option<Anchor>,
        answered: bool,
        (from, role): (LegId, Role),
        out: &mut Message,
    ) -> Result<(), Unanchorable> {
        let (Some(anchor), Some(sides), Some(cfg)) =
            (media.as_mut(), self.media.as_mut(), self.cfg.media.as_ref())
        else {
            return Ok(());
        };
        let mut ops = std::mem::take(&mut self.media_ops);
        let r = anchor.rewrite(sides, cfg, answered, from, role, out, &mut ops);
        self.push_media(&mut ops);
        self.media_ops = ops;
        if let Err(e) = &r {
            warn!(call = key, reason = e.reason(), "SDP not anchored: {e:?}");
            self.metrics.sdp_refused(e.reason());
        }
        r
    }

    /// The call is answered: its streams start counting silence.
    pub fn arm_media(&mut self, call: &Call) {
        let (Some(anchor), Some(cfg)) = (call.media.as_ref(), self.cfg.media.as_ref()) else {
            return;
        };
        let mut ops = std::mem::take(&mut self.media_ops);
        anchor.arm(cfg, &mut ops);
        self.push_media(&mut ops);
        self.media_ops = ops;
    }

    /// A call's media is over: close its streams, give their ports back, publish and log what
    /// they counted.
    pub fn close_media(&mut self, key: CallKey, trunk: &str, media: Option<Anchor>) {
        let (Some(anchor), Some(sides)) = (media, self.media.as_mut()) else {
            return;
        };
        let mut ops = std::mem::take(&mut self.media_ops);
        let direction = anchor.direction();
        let counted = anchor.close(sides, &mut ops);
        self.push_media(&mut ops);
        self.media_ops = ops;
        for (i, ends) in counted.iter().enumerate() {
            let [caller, callee] = ends;
            info!(
                call = key,
                stream = i,
                caller_packets = caller.packets,
                caller_lost = caller.lost,
                caller_jitter_us = caller.jitter_us,
                callee_packets = callee.packets,
                callee_lost = callee.lost,
                callee_jitter_us = callee.jitter_us,
                dropped = caller.dropped.saturating_add(callee.dropped),
                "media of the call"
            );
            self.metrics.media_ended(
                trunk,
                [
                    (LegId::Caller.side(direction), caller),
                    (LegId::Callee.side(direction), callee),
                ],
            );
        }
    }

    fn push_media(&mut self, ops: &mut Vec<MediaOp>) {
        self.outputs.extend(ops.drain(..).map(Output::Media));
    }

    /// Start a client transaction for `role`.
    pub fn send(&mut self, now: Instant, req: Message, flow: Flow, role: ClientRole) {
        let id = self.tx.send_request(now, req, flow);
        self.clients.insert(id, role);
        self.flush_transmits();
    }

    /// Run the call's plugin chain over a message about to leave on leg `to`, built from
    /// `original` (which arrived on the other leg).
    pub fn run_hooks(
        &mut self,
        call: &Call,
        to: LegId,
        out: &mut Message,
        original: &mut Message,
    ) -> HookVerdict {
        if !self.hooks.active(call.generation, &call.trunk) {
            return HookVerdict::Continue;
        }
        let source = call.legs.get(to.other()).flow;
        let ctx = HookContext {
            call: call.key,
            direction: call.direction,
            leg: to.side(call.direction),
            trunk: &call.trunk,
            tenant: call.tenant.as_deref(),
            source: source.remote,
            transport: source.transport,
        };
        if !self.hooks.wants_message(call.generation, &ctx, out) {
            return HookVerdict::Continue;
        }
        let hooks = &mut self.hooks;
        crate::hooks::with_keys_hidden(out, original, |out, original| {
            hooks.message(call.generation, &ctx, out, original)
        })
    }

    /// Send a BYE of Sluice's own on `leg`; the call is ending.
    pub fn send_bye(&mut self, call: &mut Call, now: Instant, leg: LegId) {
        if !matches!(call.state, CallState::Ending(_)) {
            call.state = Ending::settled();
        }
        call.pending = call.pending.saturating_add(1);
        self.bye(now, call.key, call.legs.get_mut(leg));
    }

    /// A BYE on `dialog` of call `key`, the call's state untouched (the caller counts it in
    /// the call's pending transactions).
    pub fn bye(&mut self, now: Instant, key: CallKey, dialog: &mut crate::dialog::Dialog) {
        let cseq = dialog.next_cseq();
        let mut bye = dialog.request(Method::Bye, cseq, 70, &mut self.ids);
        add_agent(&mut bye, &self.cfg.user_agent);
        let hop = dialog.next_hop();
        self.send(now, bye, hop, ClientRole::Teardown { call: key });
    }

    /// Count a call attempt that failed with `status` on the caller's leg.
    pub fn record_failure(&mut self, call: &mut Call, status: u16) {
        call.final_status.get_or_insert(status);
        self.stats.calls_failed = self.stats.calls_failed.saturating_add(1);
        self.metrics
            .call_failed(&call.trunk, call.direction, status);
    }
}
