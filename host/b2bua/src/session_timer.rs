//! Session timers (RFC 4028): a call whose far end vanished without a BYE ends when its
//! session refreshes stop. Sluice offers `timer` to the callee with the caller's
//! `Session-Expires` (or its own), relays the refreshes (re-INVITE, UPDATE) end to end, and
//! keeps its own watch: when no refresh crossed for the interval, it ends the call with BYE on
//! both legs (RFC 4028 §10: `min(32 s, interval/3)` before it expires) and counts it. When the
//! callee wants the caller's side to refresh but the caller does not do timers, Sluice is the
//! refresher on the callee's leg (UPDATE at half the interval) and the caller's 2xx carries
//! nothing of timers. When the caller does timers and the callee does not, Sluice gives the
//! caller its interval itself (RFC 4028 §9: the UAS may), so that the caller's refreshes keep
//! coming and their absence ends the call. A request asking for less than
//! `sip.min_session_expires` gets 422.

use crate::call::LegId;
use crate::calls::{Call, CallState};
use crate::core::{ClientRole, Core};
use crate::hooks::Hooks;
use crate::refuse::Refusal;
use sluice_sip::{HeaderName, Message, Method};
use sluice_transaction::Flow;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// The option tag.
pub const TAG: &str = "timer";
/// RFC 4028 §10: the end comes this much (at most) before the session expires.
const BEFORE_EXPIRY: Duration = Duration::from_secs(32);

/// The session intervals Sluice asks for and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Asked of the callee when the caller asked for none (seconds).
    pub expires: u32,
    /// Smaller requests get 422 with this as `Min-SE` (seconds).
    pub min: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            expires: 1800,
            min: 90,
        }
    }
}

/// Who sends a session's refreshes (RFC 4028's `refresher` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// `Session-Expires: delta-seconds[;refresher=uac|uas]`.
pub fn parse(msg: &Message) -> Option<(u32, Option<Refresher>)> {
    let v = msg.header(&HeaderName::SessionExpires)?;
    let mut parts = v.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match v.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        }
    });
    Some((secs, refresher))
}

/// 422 with `Min-SE` for a request that asks for a shorter session than `min`.
pub fn too_small(msg: &Message, min: u32) -> Option<Refusal> {
    let (secs, _) = parse(msg)?;
    (secs < min).then(|| {
        Refusal::with_reason(422, "Session Interval Too Small")
            .with_header(HeaderName::MinSe, min.to_string())
    })
}

/// A call's session timer, once answered with one.
#[derive(Debug, Default)]
pub struct SessionTimers {
    /// The caller said it does timers (Supported or Require: timer).
    pub caller_supports: bool,
    /// The interval the caller asked for, if it did.
    asked: Option<u32>,
    watch: Option<Watch>,
}

#[derive(Debug)]
struct Watch {
    interval: Duration,
    /// When the call ends if nothing refreshed it.
    ends_at: Instant,
    /// Sluice refreshes the callee's leg itself: when next (`None` while a refresh is out).
    refresh_at: Option<Instant>,
    sluice_refreshes: bool,
    /// The callee does no timers: Sluice gives the caller the interval in its 2xx answers.
    for_caller: bool,
    /// The callee's Allow named UPDATE: Sluice refreshes with it, else with a re-INVITE.
    update_allowed: bool,
    /// Sluice's re-INVITE refresh in flight (its CSeq), to ACK its 2xx.
    reinvite_cseq: Option<u32>,
    /// Sluice's ACK of its last re-INVITE refresh's 2xx (its CSeq), for the retransmissions.
    last_ack: Option<(u32, Flow, bytes::Bytes)>,
}

impl SessionTimers {
    pub fn for_caller(invite: &Message) -> SessionTimers {
        SessionTimers {
            caller_supports: crate::prack::names(invite, TAG),
            asked: parse(invite).map(|(s, _)| s),
            watch: None,
        }
    }
}

/// The INVITE toward the callee offers timers, with the caller's interval or Sluice's own.
pub fn offer(invite: &mut Message, cfg: SessionConfig) {
    crate::headers::offer_option(invite, TAG);
    if invite.header(&HeaderName::SessionExpires).is_none() {
        invite
            .headers
            .push(HeaderName::SessionExpires, cfg.expires.to_string());
    }
}

/// The callee's 2xx (`answer`) set the session up; `to_caller` is the 2xx the caller gets.
pub fn answered<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    answer: &Message,
    to_caller: &mut Message,
) {
    let timers = &mut call.session_timers;
    if !timers.caller_supports {
        // Nothing of timers toward a caller that does not do them.
        strip(to_caller);
    }
    let Some((secs, refresher)) = parse(answer).filter(|(s, _)| *s > 0) else {
        if timers.caller_supports {
            // The callee does no timers; the caller does: Sluice is the caller's UAS with one.
            let secs = timers
                .asked
                .unwrap_or(core.cfg.session.expires)
                .max(core.cfg.session.min);
            give_interval(to_caller, secs, Refresher::Uac);
            let interval = Duration::from_secs(u64::from(secs));
            timers.watch = Some(Watch {
                interval,
                ends_at: sluice_transaction::after(now, interval),
                refresh_at: None,
                sluice_refreshes: false,
                for_caller: true,
                update_allowed: false,
                reinvite_cseq: None,
                last_ack: None,
            });
            arm(core, call);
        }
        return;
    };
    // The callee's leg's UAC is Sluice; a caller that does not do timers cannot refresh.
    let sluice_refreshes = refresher != Some(Refresher::Uas) && !timers.caller_supports;
    let interval = Duration::from_secs(u64::from(secs));
    timers.watch = Some(Watch {
        interval,
        ends_at: sluice_transaction::after(now, interval),
        refresh_at: sluice_refreshes
            .then(|| sluice_transaction::after(now, interval.checked_div(2).unwrap_or_default())),
        sluice_refreshes,
        for_caller: false,
        update_allowed: answer
            .headers
            .values(&HeaderName::Allow)
            .any(|m| m.eq_ignore_ascii_case("UPDATE")),
        reinvite_cseq: None,
        last_ack: None,
    });
    debug!(call = call.key, secs, sluice_refreshes, "session timer");
    arm(core, call);
}

/// A refresh (re-INVITE or UPDATE) was answered 2xx: the session goes on for another interval
/// (the answer's, when it names one).
/// `relayed`: the 2xx as it goes back to the leg that refreshed, when it is relayed.
pub fn refreshed<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    answer: &Message,
    relayed: Option<(LegId, &mut Message)>,
) {
    let Some(w) = call.session_timers.watch.as_mut() else {
        return;
    };
    match parse(answer).filter(|(s, _)| *s > 0) {
        Some((secs, _)) => w.interval = Duration::from_secs(u64::from(secs)),
        None => {
            let secs = u32::try_from(w.interval.as_secs()).unwrap_or(u32::MAX);
            let caller_supports = call.session_timers.caller_supports;
            match relayed {
                // Sluice is the caller's UAS with a timer the callee does not know.
                Some((LegId::Caller, resp)) if w.for_caller => {
                    give_interval(resp, secs, Refresher::Uac);
                }
                // The callee's refresh, answered by a caller without timers: the callee must
                // hear its interval again, or its timer stops (RFC 4028 §7.4).
                Some((LegId::Callee, resp)) if !caller_supports => {
                    give_interval(resp, secs, Refresher::Uas);
                }
                _ => {}
            }
        }
    }
    w.ends_at = sluice_transaction::after(now, w.interval);
    if w.sluice_refreshes {
        w.refresh_at = Some(sluice_transaction::after(
            now,
            w.interval.checked_div(2).unwrap_or_default(),
        ));
    }
    arm(core, call);
}

/// A leg of the call was replaced (a transfer Sluice carried out): the watch was the old
/// leg's.
pub fn leg_replaced(call: &mut Call) {
    call.session_timers.watch = None;
}

/// Sluice's re-INVITE refresh went again with credentials (`again`, a new CSeq): its 2xx is
/// ACKed with that CSeq.
pub fn reinvite_sent_again(call: &mut Call, again: &Message) {
    if let (Some(w), Some((cseq, _))) = (call.session_timers.watch.as_mut(), again.cseq()) {
        w.reinvite_cseq = Some(cseq);
    }
}

/// The answer to Sluice's own refresh: 2xx goes on; 481 or 408 (the callee lost the dialog)
/// ends the call; another failure stops Sluice's refreshes (the watch still ends the call
/// if nothing else refreshes it).
pub fn own_refresh_answered<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
    answer: &Message,
) {
    let answered_cseq = answer.cseq().map(|(n, _)| n);
    if let Some(w) = call.session_timers.watch.as_ref() {
        // A retransmitted 2xx of Sluice's re-INVITE refresh: its ACK again, nothing else.
        if let Some((cseq, hop, ack)) = &w.last_ack {
            if (200..300).contains(&status) && Some(*cseq) == answered_cseq {
                return core.emit(*hop, ack.clone());
            }
        }
    }
    if let Some(cseq) = call
        .session_timers
        .watch
        .as_mut()
        .and_then(|w| w.reinvite_cseq.take_if(|_| status >= 200))
    {
        if (200..300).contains(&status) {
            // Sluice's own re-INVITE: Sluice ACKs its 2xx.
            let dialog = call.legs.get_mut(LegId::Callee);
            dialog.learn_from_answer(status, answer);
            let ack = crate::relay::ack(dialog, cseq, None, &mut core.ids);
            let (hop, ack) = (dialog.next_hop(), bytes::Bytes::from(ack.to_bytes()));
            core.emit(hop, ack.clone());
            if let Some(w) = call.session_timers.watch.as_mut() {
                w.last_ack = Some((cseq, hop, ack));
            }
            // Its SDP answers Sluice's offer: where the callee now receives, and, toward an
            // SRTP trunk, the key it now sends with (it may change it in any answer). Nothing
            // of it goes to the caller.
            if !answer.body.is_empty() && call.media.is_some() {
                let mut heard = answer.clone();
                let _ =
                    core.anchor_sdp(call, LegId::Callee, sluice_media::Role::Answer, &mut heard);
            }
        }
    }
    match status {
        200..=299 => refreshed(core, call, now, answer, None),
        408 | 481 => end(core, call, now, "refresh-failed"),
        _ => {
            warn!(
                call = call.key,
                status, "the callee refused Sluice's session refresh"
            );
            if let Some(w) = call.session_timers.watch.as_mut() {
                w.sluice_refreshes = false;
            }
        }
    }
}

/// A timer of the call fired: Sluice's refresh is due, or the session expired.
pub fn on_timer<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    if !matches!(call.state, CallState::Established) {
        return;
    }
    let Some(w) = call.session_timers.watch.as_mut() else {
        return;
    };
    if now >= end_at(w) {
        // A refresh still in flight (a re-INVITE, an UPDATE, Sluice's own) gets until the
        // session really expires (RFC 4028 §10 counts refresh requests, not their answers).
        if call.pending > 0 && now < w.ends_at {
            core.timers.push(w.ends_at, call.key);
            return;
        }
        warn!(call = call.key, trunk = %call.trunk, "no session refresh: ending the call");
        return end(core, call, now, "session-expired");
    }
    if w.refresh_at.is_some_and(|at| now >= at) {
        w.refresh_at = None;
        let secs = w.interval.as_secs();
        send_refresh(core, call, now, secs);
    }
}

/// When the watch ends the call: `min(32 s, interval/3)` before the session expires.
fn end_at(w: &Watch) -> Instant {
    let margin = BEFORE_EXPIRY.min(w.interval.checked_div(3).unwrap_or_default());
    w.ends_at.checked_sub(margin).unwrap_or(w.ends_at)
}

fn arm<H: Hooks>(core: &mut Core<H>, call: &Call) {
    if let Some(w) = &call.session_timers.watch {
        core.timers.push(end_at(w), call.key);
        if let Some(at) = w.refresh_at {
            core.timers.push(at, call.key);
        }
    }
}

/// Sluice's refresh on the callee's leg: an UPDATE without a body (RFC 4028 §9).
/// Sluice's refresh on the callee's leg: an UPDATE without a body when the callee allows
/// UPDATE, else a re-INVITE offering the SDP Sluice last sent it (RFC 4028 §9).
fn send_refresh<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant, secs: u64) {
    let update_allowed = call
        .session_timers
        .watch
        .as_ref()
        .is_some_and(|w| w.update_allowed);
    let offer = call.sent_sdp.callee.clone();
    let dialog = call.legs.get_mut(LegId::Callee);
    let cseq = dialog.next_cseq();
    let method = if update_allowed || offer.is_none() {
        Method::Update
    } else {
        Method::Invite
    };
    let mut refresh = dialog.request(method.clone(), cseq, 70, &mut core.ids);
    refresh
        .headers
        .push(HeaderName::Contact, dialog.contact.clone());
    refresh.headers.push(HeaderName::Supported, TAG);
    refresh
        .headers
        .push(HeaderName::SessionExpires, format!("{secs};refresher=uac"));
    if method == Method::Invite {
        if let Some(sdp) = offer {
            refresh
                .headers
                .push(HeaderName::ContentType, "application/sdp");
            refresh.body = sdp;
        }
        if let Some(w) = call.session_timers.watch.as_mut() {
            w.reinvite_cseq = Some(cseq);
        }
    }
    let hop = call.legs.get(LegId::Callee).next_hop();
    call.pending = call.pending.saturating_add(1);
    debug!(call = call.key, method = %method.as_str(), "session refresh sent");
    core.send(now, refresh, hop, ClientRole::Refresh { call: call.key });
}

/// End the call on both legs, counted by `reason`.
fn end<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant, reason: &'static str) {
    call.session_timers.watch = None;
    metrics::counter!("sluice_calls_cut_total", "trunk" => call.trunk.to_string(), "reason" => reason)
        .increment(1);
    core.send_bye(call, now, LegId::Caller);
    core.send_bye(call, now, LegId::Callee);
}

/// A 2xx that gives its recipient `secs` as the session interval, `refresher` refreshing.
fn give_interval(resp: &mut Message, secs: u32, refresher: Refresher) {
    let who = match refresher {
        Refresher::Uac => "uac",
        Refresher::Uas => "uas",
    };
    resp.headers.set(
        HeaderName::SessionExpires,
        format!("{secs};refresher={who}"),
    );
    let mut required: Vec<String> = resp
        .headers
        .values(&HeaderName::Require)
        .map(str::to_string)
        .collect();
    if !required.iter().any(|t| t.eq_ignore_ascii_case(TAG)) {
        required.push(TAG.to_string());
    }
    resp.headers.set(HeaderName::Require, required.join(", "));
}

/// Remove what says "session timer" from a message for a party that does not do timers.
fn strip(msg: &mut Message) {
    msg.headers.remove(&HeaderName::SessionExpires);
    msg.headers.remove(&HeaderName::MinSe);
    let required: Vec<String> = msg
        .headers
        .values(&HeaderName::Require)
        .filter(|t| !t.eq_ignore_ascii_case(TAG))
        .map(str::to_string)
        .collect();
    msg.headers.remove(&HeaderName::Require);
    if !required.is_empty() {
        msg.headers.push(HeaderName::Require, required.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: &str) -> Message {
        sluice_sip::parse_message(
            format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{header}Content-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn session_expires_is_read_with_its_refresher() {
        assert_eq!(
            parse(&with("Session-Expires: 1800;refresher=uac\r\n")),
            Some((1800, Some(Refresher::Uac)))
        );
        assert_eq!(
            parse(&with("Session-Expires: 90 ; Refresher = UAS\r\n")),
            Some((90, Some(Refresher::Uas)))
        );
        assert_eq!(parse(&with("Session-Expires: 600\r\n")), Some((600, None)));
        assert_eq!(parse(&with("Session-Expires: soon\r\n")), None);
        assert_eq!(parse(&with("")), None);
        let r = too_small(&with("Session-Expires: 60\r\n"), 90).unwrap();
        assert_eq!(r.status, 422);
        assert_eq!(r.header, Some((HeaderName::MinSe, "90".into())));
        assert!(too_small(&with("Session-Expires: 90\r\n"), 90).is_none());
    }

    #[test]
    fn a_party_without_timers_sees_none() {
        let mut m =
            with("Session-Expires: 90;refresher=uac\r\nMin-SE: 90\r\nRequire: timer, 100rel\r\n");
        strip(&mut m);
        assert!(m.header(&HeaderName::SessionExpires).is_none());
        assert!(m.header(&HeaderName::MinSe).is_none());
        assert_eq!(m.header(&HeaderName::Require), Some("100rel"));
    }
}
