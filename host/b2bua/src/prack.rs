//! Reliable provisional responses (RFC 3262). Sluice offers `100rel` on every INVITE it sends,
//! but for a delayed offer (no SDP) from a caller without `100rel`: the callee's offer would
//! come in a reliable provisional, to be answered in a PRACK the caller cannot send.
//! Toward a caller that supports or requires `100rel`, it sends its provisionals reliably (its
//! own RSeq from a random start, retransmitted from T1 doubling until the PRACK, for 64*T1 at
//! most; one waiting behind another that is unacknowledged, RFC 3262 §3).
//!
//! - Both legs reliable: the callee's reliable provisional reaches the caller reliably, and the
//!   caller's PRACK is relayed to the callee (RAck mapped to the callee's RSeq, its SDP
//!   anchored: the answer to an offer in the provisional, as a delayed-offer INVITE brings),
//!   with its answer relayed back: end to end.
//! - Only the callee reliable: Sluice PRACKs it at once and relays the provisional plainly.
//! - Only the caller: Sluice's own reliable provisionals, its PRACK answered by Sluice.
//!
//! RSeq and RAck are each leg's own. A final response ends every wait.

use crate::call::LegId;
use crate::calls::{Call, CallState};
use crate::core::{ClientRole, Core};
use crate::hooks::Hooks;
use sluice_sip::{HeaderName, Message, Method};
use sluice_transaction::ServerTxId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// The option tag.
pub const TAG: &str = "100rel";
/// Provisionals waiting behind an unacknowledged one; beyond, the oldest waiting goes.
const MAX_QUEUED: usize = 8;

/// A call's reliable provisionals, both legs.
#[derive(Debug, Default)]
pub struct Reliability {
    /// The caller supports or requires `100rel`: Sluice's provisionals to it are reliable.
    caller: bool,
    /// The RSeq of Sluice's next reliable provisional to the caller.
    next_rseq: u32,
    /// Sluice's reliable provisional waiting for the caller's PRACK.
    unacked: Option<Unacked>,
    /// Provisionals to send once it is acknowledged (with the callee's RSeq when the caller's
    /// PRACK is to be relayed).
    queued: VecDeque<(Message, Option<u32>)>,
    /// The RSeq of the callee's last reliable provisional, acknowledged by Sluice.
    callee_rseq: Option<u32>,
}

#[derive(Debug)]
struct Unacked {
    rseq: u32,
    /// The callee's RSeq of the provisional this one relays: its PRACK is the caller's.
    callee_rseq: Option<u32>,
    resp: Message,
    interval: Duration,
    next: Instant,
    until: Instant,
}

/// Whether a request says it supports or requires an option tag.
pub fn names(msg: &Message, tag: &str) -> bool {
    [HeaderName::Supported, HeaderName::Require]
        .iter()
        .any(|h| msg.headers.values(h).any(|t| t.eq_ignore_ascii_case(tag)))
}

impl Reliability {
    /// For a call whose caller sent `invite`; `first_rseq` is random (RFC 3262 §3).
    pub fn for_caller(invite: &Message, first_rseq: u32) -> Reliability {
        Reliability {
            caller: names(invite, TAG),
            next_rseq: first_rseq,
            ..Reliability::default()
        }
    }

    /// The caller gets Sluice's provisionals reliably.
    pub fn toward_caller(&self) -> bool {
        self.caller
    }

    /// The INVITE goes to another destination (failover): its RSeq numbering is its own, and
    /// a PRACK for what the last one sent is answered by Sluice, not sent to the new one.
    pub fn new_attempt(&mut self) {
        self.callee_rseq = None;
        if let Some(u) = self.unacked.as_mut() {
            u.callee_rseq = None;
        }
        for (_, rseq) in &mut self.queued {
            *rseq = None;
        }
    }
}

/// A provisional for the caller (on its INVITE's server transaction `uas`): sent reliably when
/// the caller supports it (or queued behind the one awaiting PRACK), else as it is.
pub fn send_provisional<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (uas, callee_rseq): (ServerTxId, Option<u32>),
    mut resp: Message,
) {
    let rel = &mut call.prack;
    if !rel.caller || resp.status() == Some(100) {
        return core.respond(now, uas, &resp);
    }
    if rel.unacked.is_some() {
        if rel.queued.len() >= MAX_QUEUED {
            rel.queued.pop_front();
        }
        rel.queued.push_back((resp, callee_rseq));
        return;
    }
    let rseq = rel.next_rseq;
    rel.next_rseq = rseq.wrapping_add(1).max(1);
    resp.headers.push(HeaderName::Require, TAG);
    resp.headers.push(HeaderName::RSeq, rseq.to_string());
    let t1 = core.cfg.timers.t1;
    let next = sluice_transaction::after(now, t1);
    rel.unacked = Some(Unacked {
        rseq,
        callee_rseq,
        resp: resp.clone(),
        interval: t1,
        next,
        until: sluice_transaction::after(now, core.cfg.timers.timeout()),
    });
    core.timers.push(next, call.key);
    core.respond(now, uas, &resp);
}

/// The call's final answer went to the caller: no provisional is retransmitted or sent after.
pub fn settled(call: &mut Call) {
    call.prack.unacked = None;
    call.prack.queued.clear();
}

/// A timer of the call fired: retransmit the provisional awaiting PRACK, or give up on the
/// call after 64*T1 without one (RFC 3262 §3: 5xx to the INVITE).
pub fn on_timer<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    let Some(u) = call.prack.unacked.as_mut() else {
        return;
    };
    if now < u.next {
        return;
    }
    let CallState::Proceeding(p) = &call.state else {
        return settled(call);
    };
    if now >= u.until {
        warn!(
            call = call.key,
            "no PRACK for a reliable provisional: ending the call"
        );
        settled(call);
        return crate::answer::abandon(core, call, now, 504);
    }
    let uas = p.uas;
    u.interval = u.interval.saturating_mul(2);
    // The last wait ends at the give-up time.
    u.next = sluice_transaction::after(now, u.interval).min(u.until);
    let (next, resp) = (u.next, u.resp.clone());
    core.timers.push(next, call.key);
    core.respond(now, uas, &resp);
}

/// The caller's PRACK (server transaction `tx`): 200 when it acknowledges the provisional
/// awaiting it, then the next waiting provisional goes; 481 otherwise (RFC 3262 §3).
pub fn from_caller<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    tx: ServerTxId,
    msg: &Message,
) {
    let rack = msg.header(&HeaderName::RAck).and_then(parse_rack);
    let CallState::Proceeding(p) = &call.state else {
        // After the final answer: nothing waits (a late PRACK still gets its 200).
        let known = rack.is_some_and(|(rseq, _)| rseq < call.prack.next_rseq);
        let status = if known { 200 } else { 481 };
        return core.reply(now, tx, msg, status, sluice_sip::reason_phrase(status));
    };
    let invite_cseq = p.invite.cseq().map_or(0, |(n, _)| n);
    let (uas, uac) = (p.uas, p.uac);
    let matches = match (&call.prack.unacked, rack) {
        (Some(u), Some((rseq, cseq))) => u.rseq == rseq && cseq == invite_cseq,
        _ => false,
    };
    if !matches {
        debug!(
            call = call.key,
            "PRACK for no provisional awaiting one: 481"
        );
        return core.reply(now, tx, msg, 481, sluice_sip::reason_phrase(481));
    }
    let relayed = call.prack.unacked.take().and_then(|u| u.callee_rseq);
    match relayed {
        // End to end: the callee gets the caller's PRACK (and its SDP), the caller its answer.
        Some(callee_rseq) => {
            let callee_cseq = core
                .tx
                .client_request(uac)
                .and_then(Message::cseq)
                .map_or(0, |(n, _)| n);
            let mut prack = msg.clone();
            prack.headers.set(
                HeaderName::RAck,
                format!("{callee_rseq} {callee_cseq} INVITE"),
            );
            crate::in_dialog::relay_request(core, call, now, (LegId::Caller, tx), prack);
        }
        None => core.reply(now, tx, msg, 200, "OK"),
    }
    if let Some((next, rseq)) = call.prack.queued.pop_front() {
        send_provisional(core, call, now, (uas, rseq), next);
    }
}

/// What to do with a provisional of the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromCallee {
    /// Relay it (unreliable, or PRACKed by Sluice already).
    Relay,
    /// Relay it; the caller's PRACK goes to the callee for this RSeq (both legs reliable).
    RelayEndToEnd(u32),
    /// A retransmission of one already relayed: nothing.
    Again,
}

/// A provisional of the callee: reliable, it is PRACKed by Sluice, or left for the caller's
/// PRACK when the caller does 100rel too.
pub fn from_callee<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    msg: &Message,
) -> FromCallee {
    let reliable = msg
        .headers
        .values(&HeaderName::Require)
        .any(|t| t.eq_ignore_ascii_case(TAG));
    let rseq = msg
        .header(&HeaderName::RSeq)
        .and_then(|v| v.trim().parse::<u32>().ok());
    let (true, Some(rseq)) = (reliable, rseq) else {
        return FromCallee::Relay;
    };
    if call.prack.callee_rseq.is_some_and(|last| rseq <= last) {
        return FromCallee::Again;
    }
    call.prack.callee_rseq = Some(rseq);
    if call.prack.caller {
        return FromCallee::RelayEndToEnd(rseq);
    }
    let Some((cseq, _)) = msg.cseq() else {
        return FromCallee::Relay;
    };
    let dialog = &mut call.legs.callee;
    let prack_cseq = dialog.next_cseq();
    let mut prack = dialog.request(Method::Prack, prack_cseq, 70, &mut core.ids);
    prack
        .headers
        .push(HeaderName::RAck, format!("{rseq} {cseq} INVITE"));
    let hop = dialog.next_hop();
    call.pending = call.pending.saturating_add(1);
    core.send(now, prack, hop, ClientRole::Teardown { call: call.key });
    FromCallee::Relay
}

/// `RAck: rseq cseq method` → (rseq, cseq) of an INVITE.
fn parse_rack(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split_ascii_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let cseq = parts.next()?.parse().ok()?;
    parts
        .next()
        .filter(|m| m.eq_ignore_ascii_case("INVITE"))
        .map(|_| (rseq, cseq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rack_is_read_strictly() {
        assert_eq!(parse_rack("776656 1 INVITE"), Some((776656, 1)));
        assert_eq!(parse_rack(" 5  2 invite "), Some((5, 2)));
        assert_eq!(parse_rack("5 2 UPDATE"), None);
        assert_eq!(parse_rack("x 2 INVITE"), None);
        assert_eq!(parse_rack("5"), None);
    }
}
