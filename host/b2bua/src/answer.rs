//! The set-up of a call after its INVITE left: the callee's answers (provisional, failure,
//! 2xx), an INVITE that got none (Timer B, a transport error), and the caller's CANCEL.

use crate::call::LegId;
use crate::calls::{Call, CallState, Cancel, Ending};
use crate::config::Side;
use crate::core::{ClientRole, Core};
use crate::failover;
use crate::headers::add_agent;
use crate::hooks::Hooks;
use crate::media;
use crate::refuse::map_error_status;
use crate::relay;
use crate::retransmit::InviteRelay;
use bytes::Bytes;
use sluice_sip::{reason_phrase, Message};
use sluice_transaction::{reply_flow, response_to};
use std::time::Instant;
use tracing::{debug, warn};

/// A provisional answer (101-199): relayed to the caller, unless the call is being cancelled,
/// in which case it lets the CANCEL go out.
pub fn provisional<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
    mut msg: Message,
) {
    call.legs.callee.learn_from_answer(status, &msg);
    let callee_rseq = match crate::prack::from_callee(core, call, now, &msg) {
        // A reliable provisional again: relayed already.
        crate::prack::FromCallee::Again => return,
        crate::prack::FromCallee::Relay => None,
        crate::prack::FromCallee::RelayEndToEnd(rseq) => Some(rseq),
    };
    record_progress(core, call, now);
    send_cancel_if_possible(core, call, now);
    let CallState::Proceeding(p) = &call.state else {
        return;
    };
    let mut resp = relay::response(
        &call.legs.caller,
        &p.invite,
        status,
        &msg,
        &core.cfg.user_agent,
    );
    let (uas, role) = (p.uas, media::response_role(&p.invite));
    if core
        .anchor_sdp(call, LegId::Callee, role, &mut resp)
        .is_err()
    {
        media::drop_sdp(&mut resp);
    }
    let _ = core.run_hooks(call, LegId::Caller, &mut resp, &mut msg);
    crate::prack::send_provisional(core, call, now, (uas, callee_rseq), resp);
}

/// A final failure (300-699): relayed to the caller (mapped where it makes no sense across
/// the B2BUA); the set-up is over.
pub fn failure<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
    mut msg: Message,
) {
    if failover::answer_invite_challenge(core, call, now, &msg) {
        return;
    }
    if let Some((old, new)) = failover::next_destination(core, call, now, status, None) {
        core.retags.push((call.key, old, new));
        return;
    }
    if matches!(status, 401 | 407) && LegId::Callee.side(call.direction) == Side::External {
        // The trunk's challenge Sluice could not answer (no credentials, refused twice)
        // reaches the PBX as a refusal.
        forbidden(&mut msg);
    }
    match std::mem::replace(&mut call.state, Ending::settled()) {
        CallState::Proceeding(p) => {
            let mapped = map_error_status(msg.status().unwrap_or(status));
            let mut resp = relay::response(
                &call.legs.caller,
                &p.invite,
                mapped,
                &msg,
                &core.cfg.user_agent,
            );
            if call.media.is_some() {
                media::drop_sdp(&mut resp);
            }
            let _ = core.run_hooks(call, LegId::Caller, &mut resp, &mut msg);
            crate::prack::settled(call);
            core.record_failure(call, mapped);
            debug!(call = call.key, status, "call failed");
            core.respond(now, p.uas, &resp);
        }
        // Cancelled: the callee's 487 settles its INVITE.
        CallState::Ending(_) => {}
        CallState::Established => call.state = CallState::Established,
    }
}

/// A 2xx: the call is answered (relayed as 200, retransmitted until the caller's ACK). A 2xx
/// to a cancelled INVITE is confirmed and hung up; a retransmitted 2xx gets Sluice's ACK again.
pub fn success<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant, mut msg: Message) {
    call.legs.callee.learn_from_answer(200, &msg);
    crate::guard::note_peers(core, call);
    let cseq = msg.cseq().map_or(call.legs.callee.local_cseq, |(n, _)| n);
    match &mut call.state {
        CallState::Proceeding(_) => {}
        CallState::Ending(e) if e.uac.is_some() => {
            e.uac = None;
            let ack = relay::ack(&call.legs.callee, cseq, None, &mut core.ids);
            core.emit_message(call.legs.callee.next_hop(), &ack);
            core.send_bye(call, now, LegId::Callee);
            return;
        }
        _ => {
            if let Some(ack) = call.relay.as_ref().and_then(|r| r.our_ack.clone()) {
                core.emit(call.legs.callee.next_hop(), ack);
            }
            return;
        }
    }
    let CallState::Proceeding(p) = std::mem::replace(&mut call.state, CallState::Established)
    else {
        return;
    };
    call.answered_at = Some(now);
    crate::prack::settled(call);
    let invite_cseq = p.invite.cseq().map_or(0, |(n, _)| n);
    let reply_to = reply_flow(&p.invite, call.legs.caller.flow);
    let mut resp = relay::response(
        &call.legs.caller,
        &p.invite,
        200,
        &msg,
        &core.cfg.user_agent,
    );
    let role = media::response_role(&p.invite);
    if core
        .anchor_sdp(call, LegId::Callee, role, &mut resp)
        .is_err()
    {
        media::drop_sdp(&mut resp);
    }
    if resp.body.is_empty() {
        // The answer came earlier (a reliable provisional): silence counts from now on.
        core.arm_media(call);
        if !call.prack.toward_caller() && !p.invite.body.is_empty() {
            // ...which the caller only got in an unreliable provisional (it does no 100rel):
            // the 2xx carries it (RFC 3261 §13.2.1: the answer in a reliable message).
            if let Some(early) = call.sent_sdp.caller.clone() {
                resp.headers
                    .set(sluice_sip::HeaderName::ContentType, "application/sdp");
                resp.body = early;
            }
        }
    }
    crate::session_timer::answered(core, call, now, &msg, &mut resp);
    let _ = core.run_hooks(call, LegId::Caller, &mut resp, &mut msg);
    let data = Bytes::from(resp.to_bytes());
    core.stats.calls_answered = core.stats.calls_answered.saturating_add(1);
    if !p.progressed {
        let delay = now.saturating_duration_since(call.started);
        core.metrics
            .post_dial_delay(&call.trunk, call.direction, delay);
    }
    core.metrics.call_answered(&call.trunk, call.direction);
    call.final_status = Some(200);
    crate::duration::answered(core, call, now);
    debug!(call = call.key, "answered");
    core.respond(now, p.uas, &resp);
    let mut relay = InviteRelay::new(LegId::Caller, invite_cseq, cseq, now, &core.cfg.timers);
    relay.answered(
        call.key,
        now,
        (reply_to, data),
        &core.cfg.timers,
        &mut core.timers,
    );
    call.relay = Some(relay);
}

/// A challenge that was not answered (no credentials, refused twice): the PBX gets 403.
fn forbidden(msg: &mut Message) {
    msg.start = sluice_sip::StartLine::Response {
        status: 403,
        reason: "Forbidden".into(),
    };
}

/// The INVITE toward the callee failed without an answer: Timer B (`status` 408) or the
/// transport (503). The caller gets that status.
pub fn no_answer<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
    sent: &Message,
) {
    // A callee that rang and then said nothing for Timer C is not tried elsewhere: it is
    // cancelled (RFC 3261 §16.8), and the caller told 408.
    let rang = matches!(&call.state, CallState::Proceeding(p) if p.progressed);
    if !rang {
        if let Some((old, new)) = failover::next_destination(core, call, now, status, Some(sent)) {
            core.retags.push((call.key, old, new));
            return;
        }
    } else {
        let cancel = relay::cancel(sent);
        let hop = call.legs.callee.next_hop();
        call.pending = call.pending.saturating_add(1);
        core.send(now, cancel, hop, ClientRole::Teardown { call: call.key });
    }
    warn!(
        call = call.key,
        status, "the callee's INVITE failed without an answer"
    );
    match std::mem::replace(&mut call.state, Ending::settled()) {
        CallState::Proceeding(p) => {
            let tag = &call.legs.caller.local_tag;
            let mut resp = response_to(&p.invite, status, reason_phrase(status), Some(tag));
            add_agent(&mut resp, &core.cfg.user_agent);
            crate::prack::settled(call);
            core.record_failure(call, status);
            core.respond(now, p.uas, &resp);
        }
        CallState::Ending(_) => {}
        CallState::Established => call.state = CallState::Established,
    }
}

/// The caller gave up before the answer (CANCEL, or BYE on the early dialog): 487 to its
/// INVITE, and a CANCEL toward the callee as soon as one may be sent.
pub fn cancel<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    debug!(call = call.key, "cancelled by the caller");
    abandon(core, call, now, 487);
}

/// End a call before its answer: `status` to the caller's INVITE, and a CANCEL toward the
/// callee as soon as one may be sent (the caller's CANCEL, or Sluice's own reasons).
pub fn abandon<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant, status: u16) {
    if !matches!(call.state, CallState::Proceeding(_)) {
        return;
    }
    let ending = CallState::Ending(Ending {
        uac: None,
        cancel: Cancel::Wanted,
    });
    let CallState::Proceeding(p) = std::mem::replace(&mut call.state, ending) else {
        return;
    };
    if let CallState::Ending(e) = &mut call.state {
        e.uac = Some(p.uac);
    }
    let tag = &call.legs.caller.local_tag;
    let mut resp = response_to(&p.invite, status, reason_phrase(status), Some(tag));
    add_agent(&mut resp, &core.cfg.user_agent);
    crate::prack::settled(call);
    core.record_failure(call, status);
    core.respond(now, p.uas, &resp);
    send_cancel_if_possible(core, call, now);
}

/// CANCEL the callee's INVITE once it has answered provisionally (RFC 3261 §9.1).
fn send_cancel_if_possible<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    let CallState::Ending(Ending {
        uac: Some(uac),
        cancel,
    }) = &mut call.state
    else {
        return;
    };
    if *cancel != Cancel::Wanted || !core.tx.client_proceeding(*uac) {
        return;
    }
    let (Some(invite), Some(flow)) = (core.tx.client_request(*uac), core.tx.client_flow(*uac))
    else {
        return;
    };
    let cancel_msg = relay::cancel(invite);
    *cancel = Cancel::Sent;
    core.tx.cancel_sent(now, *uac);
    call.pending = call.pending.saturating_add(1);
    core.send(
        now,
        cancel_msg,
        flow,
        ClientRole::Teardown { call: call.key },
    );
}

/// Post-dial delay: from the caller's INVITE to the first ringing (or the answer).
fn record_progress<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    if let CallState::Proceeding(p) = &mut call.state {
        if !p.progressed {
            p.progressed = true;
            let delay = now.saturating_duration_since(call.started);
            core.metrics
                .post_dial_delay(&call.trunk, call.direction, delay);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use crate::testing::*;

    #[test]
    fn the_trunks_invite_is_kept_until_its_answer_is_handled_then_released() {
        // A finished call's INVITE transaction lingers 32 s to absorb the 2xx's
        // retransmissions; the INVITE itself (most of what it held) goes once the 200 is
        // handled. While the call rings it is kept: a CANCEL, a retry or a challenge's
        // answer is built from it.
        let mut lab = Lab::new();
        let o = lab.from_pbx_text(&pbx_invite());
        let b_invite = only(&o, TRUNK)[0].clone();
        lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
        assert_eq!(lab.engine.core.tx.held_requests(), 1, "ringing: kept");
        let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", SDP));
        assert_eq!(only(&o, PBX)[0].status(), Some(200));
        assert_eq!(lab.engine.core.tx.held_requests(), 0, "answered: released");
        assert_eq!(
            lab.engine.core.tx.client_count(),
            1,
            "the transaction lingers"
        );
        // The PBX's ACK still reaches the trunk: the dialog builds it, not the INVITE.
        let a_ok = only(&o, PBX)[0].clone();
        let o = lab.from_pbx_text(&ack_from_pbx(&a_ok));
        let acks = only(&o, TRUNK);
        assert_eq!(acks.len(), 1, "{o:?}");
        assert!(acks[0].method().is_some_and(|m| m.as_str() == "ACK"));
    }
}
