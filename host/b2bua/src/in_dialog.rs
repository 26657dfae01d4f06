//! Requests inside a call's dialogs: relayed from one leg to the other (BYE, re-INVITE,
//! UPDATE, INFO, OPTIONS) with their answers relayed back, the ACK of a relayed 2xx, and the
//! BYEs Sluice sends on its own.

use crate::call::LegId;
use crate::calls::{Call, CallState, Ending};
use crate::core::{ClientRole, Core};
use crate::failover;
use crate::hooks::{HookVerdict, Hooks};
use crate::media;
use crate::refuse::map_error_status;
use crate::relay;
use crate::retransmit::{Due, InviteRelay};
use bytes::Bytes;
use sluice_media::Role;
use sluice_sip::{reason_phrase, Message, Method};
use sluice_transaction::{reply_flow, ClientTxId, Flow, ServerTxId, Transport};
use std::time::Instant;
use tracing::{debug, warn};

/// An in-dialog request that arrived on `leg` (server transaction `tx`, from `flow`).
pub fn request<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (leg, tx, flow): (LegId, ServerTxId, Flow),
    msg: Message,
) {
    let method = msg.method().cloned().unwrap_or(Method::Options);
    if !accept(core, call, now, (leg, tx, flow), &msg) {
        return;
    }
    match method {
        Method::Bye => match call.state {
            // Crossing BYEs: answer ours locally.
            CallState::Ending(_) => core.reply(now, tx, &msg, 200, "OK"),
            // A BYE on an early dialog ends the set-up, as a CANCEL would.
            CallState::Proceeding(_) => {
                core.reply(now, tx, &msg, 200, "OK");
                crate::answer::cancel(core, call, now);
            }
            CallState::Established => {
                call.state = Ending::settled();
                ack_implied(core, call, leg);
                relay_request(core, call, now, (leg, tx), msg);
            }
        },
        Method::Invite | Method::Update
            if crate::session_timer::too_small(&msg, core.cfg.session.min).is_some() =>
        {
            let min = core.cfg.session.min.to_string();
            let mut r =
                sluice_transaction::response_to(&msg, 422, "Session Interval Too Small", None);
            r.headers.push(sluice_sip::HeaderName::MinSe, min);
            core.respond(now, tx, &r);
        }
        Method::Invite => {
            let busy = call.relay.as_ref().is_some_and(|r| !r.acked);
            if busy || !matches!(call.state, CallState::Established) {
                return core.reply(now, tx, &msg, 491, reason_phrase(491));
            }
            call.legs.get_mut(leg).refresh_target(&msg);
            crate::guard::note_peers(core, call);
            relay_request(core, call, now, (leg, tx), msg);
        }
        // Reliable provisionals are each leg's own: Sluice answers the caller's PRACK.
        Method::Prack if leg == LegId::Caller => {
            crate::prack::from_caller(core, call, now, tx, &msg);
        }
        Method::Prack => core.reply(now, tx, &msg, 481, reason_phrase(481)),
        Method::Update
        | Method::Info
        | Method::Options
        | Method::Notify
        | Method::Message
        | Method::Subscribe => {
            if method == Method::Update {
                call.legs.get_mut(leg).refresh_target(&msg);
            }
            relay_request(core, call, now, (leg, tx), msg);
        }
        Method::Other(_) => core.reply(now, tx, &msg, 501, reason_phrase(501)),
        _ => core.reply(now, tx, &msg, 405, reason_phrase(405)),
    }
}

/// An in-dialog request's CSeq must grow (500 otherwise); the dialog follows its source.
pub(crate) fn accept<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (leg, tx, flow): (LegId, ServerTxId, Flow),
    msg: &Message,
) -> bool {
    let dialog = call.legs.get_mut(leg);
    let cseq = msg.cseq().map_or(0, |(n, _)| n);
    if dialog.remote_cseq.is_some_and(|prev| cseq <= prev) {
        core.reply(now, tx, msg, 500, "CSeq Out of Order");
        return false;
    }
    dialog.remote_cseq = Some(cseq);
    dialog.follow_source(flow);
    true
}

/// Relay a request of leg `from` to the other leg, unless a plugin refuses it.
pub(crate) fn relay_request<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (from, tx): (LegId, ServerTxId),
    mut msg: Message,
) {
    let to = from.other();
    let dialog = call.legs.get_mut(to);
    if dialog.remote_tag.is_none() {
        return core.reply(now, tx, &msg, 481, reason_phrase(481));
    }
    let mut req = relay::request(dialog, &msg, &mut core.ids, &core.cfg.user_agent);
    let (hop, to_cseq) = (dialog.next_hop(), dialog.local_cseq);
    let offers = matches!(msg.method(), Some(Method::Invite | Method::Update));
    if offers && core.anchor_sdp(call, from, Role::Offer, &mut req).is_err() {
        return core.reply(now, tx, &msg, 488, reason_phrase(488));
    }
    if msg.method() == Some(&Method::Prack) && !msg.body.is_empty() {
        // The answer to the offer in a reliable provisional (a delayed-offer INVITE), or a new
        // offer after an answer there.
        let role = match &call.state {
            CallState::Proceeding(p) if p.invite.body.is_empty() => Role::Answer,
            _ => Role::Offer,
        };
        if core.anchor_sdp(call, from, role, &mut req).is_err() {
            return core.reply(now, tx, &msg, 488, reason_phrase(488));
        }
    }
    if let HookVerdict::Reject { status, reason } = core.run_hooks(call, to, &mut req, &mut msg) {
        debug!(call = call.key, status, method = ?msg.method(), "refused by a plugin");
        return core.reply(now, tx, &msg, status, &reason);
    }
    if hop.transport == Transport::Udp && req.encoded_len() > core.cfg.max_udp_bytes {
        warn!(call = call.key, method = ?msg.method(), "request too large for UDP, refused with 513");
        return core.reply(now, tx, &msg, 513, "Message Too Large");
    }
    call.pending = call.pending.saturating_add(1);
    if msg.method() == Some(&Method::Invite) {
        let from_cseq = msg.cseq().map_or(0, |(n, _)| n);
        call.relay = Some(InviteRelay::new(
            from,
            from_cseq,
            to_cseq,
            now,
            &core.cfg.timers,
        ));
    }
    let role = ClientRole::Relay {
        call: call.key,
        from,
        server: tx,
        request: Box::new(msg),
    };
    core.send(now, req, hop, role);
}

/// A response to a request Sluice relayed (client transaction `tx`): relayed back the way the
/// request came. `true` when it was final (the transaction's purpose is settled).
pub fn response<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    tx: ClientTxId,
    mut msg: Message,
) -> bool {
    let status = msg.status().unwrap_or(500);
    let Some(ClientRole::Relay {
        from,
        server,
        request,
        ..
    }) = core.clients.get(&tx)
    else {
        return false;
    };
    let (from, server) = (*from, *server);
    let method = request.method().cloned().unwrap_or(Method::Options);
    if matches!(status, 401 | 407) {
        let original = request.as_ref().clone();
        if answer_challenge(core, call, now, (tx, &msg), (from, server, &original)) {
            return true;
        }
    }
    let Some(ClientRole::Relay { request, .. }) = core.clients.get(&tx) else {
        return false;
    };
    let mapped = if status >= 300 {
        map_error_status(status)
    } else {
        status
    };
    let dialog = call.legs.get(from);
    let mut resp = relay::response(dialog, request, mapped, &msg, &core.cfg.user_agent);
    let reply_to = reply_flow(request, dialog.flow);
    let role = media::response_role(request);
    let answers = matches!(method, Method::Invite | Method::Update | Method::Prack) && status < 300;
    let anchored = answers && core.anchor_sdp(call, from.other(), role, &mut resp).is_ok();
    if !anchored && call.media.is_some() {
        media::drop_sdp(&mut resp);
    }
    if matches!(method, Method::Invite | Method::Update) && (200..300).contains(&status) {
        // A session refresh crossed.
        crate::session_timer::refreshed(core, call, now, &msg, Some((from, &mut resp)));
    }
    let _ = core.run_hooks(call, from, &mut resp, &mut msg);
    let reinvite_answered = method == Method::Invite && (200..300).contains(&status);
    let data = reinvite_answered.then(|| Bytes::from(resp.to_bytes()));
    core.respond(now, server, &resp);
    match data {
        // A re-INVITE answered: the 2xx is Sluice's to retransmit until the ACK.
        Some(data) => {
            if msg.to_tag().is_some() {
                call.legs.get_mut(from.other()).refresh_target(&msg);
                crate::guard::note_peers(core, call);
            }
            if let Some(r) = call.relay.as_mut() {
                r.answered(
                    call.key,
                    now,
                    (reply_to, data),
                    &core.cfg.timers,
                    &mut core.timers,
                );
            }
        }
        // A re-INVITE refused: the dialog goes on as before.
        None if status >= 200 && method == Method::Invite => call.relay = None,
        None => {}
    }
    status >= 200
}

/// A 401/407 to a relayed request, answered by Sluice with the trunk's credentials when it
/// has them: whether it was.
fn answer_challenge<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (tx, challenge): (ClientTxId, &Message),
    to: (LegId, ServerTxId, &Message),
) -> bool {
    let Some(sent) = core.tx.client_request(tx).cloned() else {
        return false;
    };
    failover::answer_relay_challenge(core, call, now, (&sent, challenge), to)
}

/// A relayed request got no answer: Timer F or B (`status` 408) or the transport (503). The
/// request's sender gets that status.
pub fn no_response<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    tx: ClientTxId,
    status: u16,
) -> bool {
    response(
        core,
        call,
        now,
        tx,
        Message::response(status, reason_phrase(status)),
    )
}

/// An ACK for a 2xx Sluice relayed, arriving on `leg`: relayed to the other leg once; a
/// retransmitted ACK (for a retransmitted 2xx) gets Sluice's ACK again.
pub fn ack<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    leg: LegId,
    mut msg: Message,
    flow: Flow,
) {
    let cseq = msg.cseq().map_or(0, |(n, _)| n);
    call.legs.get_mut(leg).follow_source(flow);
    let Some(relay) = call.relay.as_mut() else {
        return;
    };
    if relay.from != leg || relay.from_cseq != cseq {
        return;
    }
    let to = leg.other();
    let hop = call.legs.get(to).next_hop();
    if !relay.ack_arrived() {
        if let Some(ack) = relay.our_ack.clone() {
            core.emit(hop, ack);
        }
        return;
    }
    let mut ack = relay::ack(call.legs.get(to), relay.to_cseq, Some(&msg), &mut core.ids);
    if core.anchor_sdp(call, leg, Role::Answer, &mut ack).is_err() {
        media::drop_sdp(&mut ack);
    }
    // An ACK cannot be refused: the verdict only matters for requests that get answers.
    let _ = core.run_hooks(call, to, &mut ack, &mut msg);
    let data = Bytes::from(ack.to_bytes());
    if let Some(r) = call.relay.as_mut() {
        r.our_ack = Some(data.clone());
    }
    core.emit(hop, data);
}

/// A BYE from `leg` before its ACK for Sluice's 2xx: the caller had the 2xx (its ACK was lost,
/// or it never sent one). Stop retransmitting the 2xx, and ACK the other leg's 2xx now, so
/// that the BYE relayed next finds a confirmed dialog there rather than one still waiting for
/// its ACK.
fn ack_implied<H: Hooks>(core: &mut Core<H>, call: &mut Call, leg: LegId) {
    let Some(relay) = call.relay.as_mut() else {
        return;
    };
    // Only an INVITE Sluice has answered expects an ACK (a re-INVITE still pending does not).
    if relay.from != leg || !relay.has_answered() || !relay.ack_arrived() {
        return;
    }
    let to = leg.other();
    let ack = relay::ack(call.legs.get(to), relay.to_cseq, None, &mut core.ids);
    let data = Bytes::from(ack.to_bytes());
    relay.our_ack = Some(data.clone());
    debug!(
        call = call.key,
        "BYE before the ACK: the other leg's 2xx ACKed"
    );
    core.emit(call.legs.get(to).next_hop(), data);
}

/// A 2xx that arrived on `leg` after its client transaction ended: re-ACK it.
pub fn stray_2xx<H: Hooks>(core: &mut Core<H>, call: &Call, leg: LegId) {
    let ack = call
        .relay
        .as_ref()
        .filter(|r| r.from != leg)
        .and_then(|r| r.our_ack.clone());
    if let Some(ack) = ack {
        core.emit(call.legs.get(leg).next_hop(), ack);
    }
}

/// A 2xx retransmission timer of the call fired (see [`crate::retransmit`]).
pub fn timer<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant, at: Instant) {
    let t2 = core.cfg.timers.t2;
    let Some(relay) = call.relay.as_mut() else {
        return;
    };
    match relay.on_timer(call.key, now, at, t2, &mut core.timers) {
        Due::Nothing => {}
        Due::Retransmit(flow, data) => core.emit(flow, data),
        Due::GiveUp => {
            // No ACK for our 2xx: confirm the other leg's 2xx and hang up both legs
            // (RFC 3261 §13.3.1.4).
            warn!(call = call.key, "no ACK for 2xx, ending the call");
            let to = relay.from.other();
            let ack = relay::ack(call.legs.get(to), relay.to_cseq, None, &mut core.ids);
            core.emit_message(call.legs.get(to).next_hop(), &ack);
            core.send_bye(call, now, LegId::Caller);
            core.send_bye(call, now, LegId::Callee);
        }
    }
}
