//! Reliable provisional responses (RFC 3262), ended on each leg. Sluice offers `100rel` on
//! every INVITE it sends and acknowledges (PRACK) each reliable provisional of the callee at
//! once; toward a caller that supports or requires `100rel`, it sends its own provisionals
//! reliably (RSeq from a random start, retransmitted from T1 doubling until the PRACK, for
//! 64*T1 at most) and answers the caller's PRACK. RSeq and RAck are each leg's own, so any mix
//! works: both legs reliable, only one, or neither. A provisional that comes while the last
//! reliable one is unacknowledged waits for its PRACK (RFC 3262 §3); a final response ends the
//! wait.

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
    /// Provisionals to send once it is acknowledged.
    queued: VecDeque<Message>,
    /// The RSeq of the callee's last reliable provisional, acknowledged by Sluice.
    callee_rseq: Option<u32>,
}

#[derive(Debug)]
struct Unacked {
    rseq: u32,
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
}

/// A provisional for the caller (on its INVITE's server transaction `uas`): sent reliably when
/// the caller supports it (or queued behind the one awaiting PRACK), else as it is.
pub fn send_provisional<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    uas: ServerTxId,
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
        rel.queued.push_back(resp);
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
    let uas = p.uas;
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
    call.prack.unacked = None;
    core.reply(now, tx, msg, 200, "OK");
    if let Some(next) = call.prack.queued.pop_front() {
        send_provisional(core, call, now, uas, next);
    }
}

/// A provisional of the callee: PRACKed by Sluice when it is reliable. `false` when it is a
/// retransmission of one already acknowledged (not relayed again).
pub fn from_callee<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    msg: &Message,
) -> bool {
    let reliable = msg
        .headers
        .values(&HeaderName::Require)
        .any(|t| t.eq_ignore_ascii_case(TAG));
    let rseq = msg
        .header(&HeaderName::RSeq)
        .and_then(|v| v.trim().parse::<u32>().ok());
    let (true, Some(rseq)) = (reliable, rseq) else {
        return true;
    };
    if call.prack.callee_rseq.is_some_and(|last| rseq <= last) {
        return false;
    }
    call.prack.callee_rseq = Some(rseq);
    let Some((cseq, _)) = msg.cseq() else {
        return true;
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
    true
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
