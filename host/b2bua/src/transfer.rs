//! Transfer (RFC 3515 REFER, RFC 3891 Replaces) relayed across the B2BUA with topology hiding.
//! A REFER inside a call goes to the other leg with its `Refer-To` rewritten so that no address
//! of one side reaches the other:
//!
//! - a blind transfer's target keeps its user and parameters, with Sluice's address on the far
//!   side as its host: the transferee's new INVITE comes back through Sluice and is routed like
//!   any call from that side;
//! - an attended transfer's `Replaces` names a dialog of another call through Sluice, on the
//!   referrer's side: it becomes that call's other leg (its Call-ID and tags as the far side
//!   knows them) and the target that leg's remote target, so that the transferee reaches the
//!   party directly and replaces its dialog with Sluice;
//! - a `Replaces` naming a dialog Sluice does not carry would leak the referrer's side: 403.
//!
//! `Referred-By` crosses rehosted like the identity headers; the NOTIFYs (`message/sipfrag`)
//! come back as any in-dialog request. Trunks with `transfer = "refuse"` get 403.
//!
//! With `transfer = "handle"`, a REFER from the trunk's side is carried out by Sluice, for a
//! PBX that does not take REFER: a new INVITE for the target's user, from the trunk party, is
//! routed and passed through the plugins as a call from that trunk would be (a plugin refusing
//! it answers the REFER), and offers the SDP Sluice last sent the PBX (the same media ports:
//! the trunk's side of the media does not move). Then 202, a NOTIFY `100 Trying`, and the
//! INVITE. When it is answered Sluice ACKs it, points the media at the new leg, hangs up the
//! PBX's old leg and reports `200 OK`; when it fails, the old leg stays and the NOTIFY says why.
//!
//! The trunk party stays in the call: the carrier asked for its call to go elsewhere. A
//! transferor that hangs up once told `200 OK` (RFC 5589's transferor) ends the call, with the
//! new leg; bridging the PBX's old leg to the new one instead would put both media legs on the
//! internal side, which the relay does not do. A `Replaces` in the target is not acted on.

use crate::call::Direction;
use crate::call::LegId;
use crate::calls::{Call, CallState, Calls};
use crate::config::Transfer;
use crate::core::Core;
use crate::dialog::Dialog;
use crate::headers::local_uri_host;
use crate::hooks::{run_new_call_with, HookContext, Hooks, NewCallOutcome, NumberHooks};
use crate::in_dialog;
use sluice_media::Role;
use sluice_sip::{reason_phrase, HeaderName, Message, NameAddr, Uri};
use sluice_transaction::{Flow, ServerTxId};
use std::time::Instant;
use tracing::debug;

impl<H: Hooks> crate::Engine<H> {
    /// A REFER inside call `key`, from `leg`: its Replaces may name another call's dialog,
    /// looked up among all calls first.
    pub(crate) fn on_refer(
        &mut self,
        now: Instant,
        (key, leg, tx, flow): (crate::call::CallKey, LegId, ServerTxId, Flow),
        msg: Message,
    ) {
        let trunk = self
            .calls
            .get(key)
            .map(|c| c.trunk.clone())
            .unwrap_or_default();
        let replacing = lookup(&self.calls, &msg, &trunk);
        self.with_call(now, Some(key), |core, call| {
            refer(core, call, now, (leg, tx, flow), msg, &replacing)
        });
    }
}

/// A transfer Sluice carries out: the new leg toward the PBX, until it is answered.
#[derive(Debug)]
pub struct Handling {
    /// The leg the REFER came on (the trunk's); the other one is replaced.
    referrer: LegId,
    /// The new leg until it answers (then it is the call's).
    new_leg: Option<Dialog>,
    invite_cseq: u32,
    /// Sluice's ACK of its 2xx, for the retransmissions of that 2xx.
    ack: Option<(Flow, bytes::Bytes)>,
    /// The tenant owning the target (with tenants): the call's once the new leg answers.
    tenant: Option<std::sync::Arc<str>>,
}

/// A REFER inside a call, from `leg` (`replacing`: what the engine found for its `Replaces`).
pub fn refer<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (leg, tx, flow): (LegId, ServerTxId, Flow),
    mut msg: Message,
    replacing: &Replacing,
) {
    if !in_dialog::accept(core, call, now, (leg, tx, flow), &msg) {
        return;
    }
    let policy = core
        .cfg
        .trunks
        .iter()
        .find(|t| t.name == call.trunk)
        .map(|t| t.transfer)
        .unwrap_or_default();
    if policy == Transfer::Refuse || !matches!(call.state, CallState::Established) {
        // RFC 3515: a REFER the recipient will not act on is refused; 403 names the policy.
        return core.reply(now, tx, &msg, 403, reason_phrase(403));
    }
    if policy == Transfer::Handle && leg.side(call.direction) == crate::config::Side::External {
        return handle(core, call, now, (leg, tx), &msg);
    }
    let rewritten = refer_to(&msg, call.legs.get(leg.other()), replacing);
    match rewritten {
        Ok(v) => {
            debug!(
                call = call.key,
                attended = matches!(replacing, Replacing::Mapped(_)),
                "REFER relayed"
            );
            msg.headers.set(HeaderName::ReferTo, v);
            in_dialog::relay_request(core, call, now, (leg, tx), msg);
        }
        Err(status) => core.reply(now, tx, &msg, status, reason_phrase(status)),
    }
}

/// What a REFER's `Replaces` names, mapped to the far side of the call it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    call_id: String,
    /// The far party's tag (the `to-tag` from its point of view).
    to_tag: String,
    /// Sluice's tag in that dialog.
    from_tag: String,
    /// Where the far party is reached.
    target: String,
}

/// What the engine found for a REFER's `Replaces` before the call handles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacing {
    /// A blind transfer.
    None,
    /// A dialog of a call through Sluice.
    Mapped(Mapped),
    /// Malformed, or a dialog Sluice does not carry.
    Unknown,
}

/// Carry out a REFER from the trunk's leg `leg`: see the module's documentation.
fn handle<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (leg, tx): (LegId, ServerTxId),
    refer: &Message,
) {
    // One at a time, and not while the PBX's leg has a transaction of its own in flight (a
    // re-INVITE not yet ACKed, a BYE, a refresh): its answer would meet the new leg.
    let busy = call.transfer.as_ref().is_some_and(|h| h.new_leg.is_some())
        || call.relay.as_ref().is_some_and(|r| !r.acked)
        || call.pending > 0;
    if busy {
        return core.reply(now, tx, refer, 491, reason_phrase(491));
    }
    let user = refer
        .header(&HeaderName::ReferTo)
        .and_then(NameAddr::parse)
        .and_then(|na| sluice_sip::edit::uri_number(na.uri).map(str::to_string));
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return core.reply(now, tx, refer, 400, "Bad Refer-To");
    };
    let pbx_leg = leg.other();
    let Some(offer) = call.sent_sdp.get(pbx_leg).clone() else {
        return core.reply(now, tx, refer, 488, reason_phrase(488));
    };
    let (mut new_leg, mut invite, tenant) = match new_leg(core, call, leg, &user, refer) {
        Ok(built) => built,
        Err(status) => return core.reply(now, tx, refer, status, reason_phrase(status)),
    };
    invite
        .headers
        .push(HeaderName::ContentType, "application/sdp");
    invite.body = offer;
    // The plugins see the new call as they would see one from the trunk.
    if core.hooks.active(call.generation, &call.trunk) {
        if let NewCallOutcome::Refuse { status, reason } =
            run_plugins(core, call, (leg, tenant.as_deref()), &mut invite, refer)
        {
            debug!(call = call.key, status, "transfer refused by a plugin");
            return core.reply(now, tx, refer, status, &reason);
        }
        crate::setup::follow_plugins(&mut new_leg, &invite);
    }
    core.reply(now, tx, refer, 202, "Accepted");
    notify(core, call, now, leg, "SIP/2.0 100 Trying", false);
    let invite_cseq = new_leg.local_cseq;
    let hop = new_leg.next_hop();
    debug!(call = call.key, "carrying out a transfer toward the PBX");
    call.transfer = Some(Box::new(Handling {
        referrer: leg,
        new_leg: Some(new_leg),
        invite_cseq,
        ack: None,
        tenant,
    }));
    call.pending = call.pending.saturating_add(1);
    core.send(
        now,
        invite,
        hop,
        crate::core::ClientRole::Transfer { call: call.key },
    );
}

/// The call's plugins over the INVITE of a transfer's new leg toward the PBX, as over a new
/// call from the trunk to `tenant`, `refer` standing for the message it was built from.
fn run_plugins<H: Hooks>(
    core: &mut Core<H>,
    call: &Call,
    (referrer, tenant): (LegId, Option<&str>),
    invite: &mut Message,
    refer: &Message,
) -> NewCallOutcome {
    let from = call.legs.get(referrer).flow;
    let ctx = HookContext {
        call: call.key,
        direction: Direction::Inbound,
        leg: crate::config::Side::Internal,
        trunk: &call.trunk,
        tenant,
        source: from.remote,
        transport: from.transport,
    };
    let mut original = refer.clone();
    // With tenants the target was routed as Sluice reads it and is written in its PBX's
    // format: the number hook does not rewrite it.
    let numbers = if core.cfg.tenants.is_some() {
        NumberHooks::RanBeforeRouting
    } else {
        NumberHooks::Run
    };
    let generation = call.generation;
    let pair = (invite, &mut original);
    run_new_call_with(&mut core.hooks, generation, &ctx, pair, numbers)
}

/// The new leg of a transfer Sluice carries out, its INVITE (without SDP) and the tenant it
/// goes to, routed as a call from the call's trunk to `user` would be; the status to refuse
/// the REFER with without a route (404 for a DID no tenant owns) or listener (503).
fn new_leg<H: Hooks>(
    core: &mut Core<H>,
    call: &Call,
    leg: LegId,
    user: &str,
    refer: &Message,
) -> Result<(Dialog, Message, Option<std::sync::Arc<str>>), u16> {
    let trunk = core
        .cfg
        .trunks
        .iter()
        .find(|t| t.name == call.trunk)
        .ok_or(503u16)?;
    let mut as_if = Message::request(sluice_sip::Method::Invite, format!("sip:{user}@invalid"));
    as_if
        .headers
        .push(HeaderName::From, call.legs.get(leg).remote_party.clone());
    as_if
        .headers
        .push(HeaderName::To, format!("<sip:{user}@invalid>"));
    let route = crate::route::from_trunk(&core.cfg, trunk, &as_if).map_err(|no| match no {
        crate::route::NoRoute::UnknownDid => 404u16,
        _ => 503,
    })?;
    let (peer, side) = (&route.peer, route.out_side);
    let listener = crate::route::listener_for(&core.cfg.listeners, side, peer.transport, peer.addr)
        .ok_or(503u16)?;
    let mut new_leg =
        crate::setup::callee_dialog(&as_if, peer, (listener, listener.addr), &mut core.ids);
    let invite_cseq = new_leg.local_cseq;
    let mut invite = new_leg.request(sluice_sip::Method::Invite, invite_cseq, 70, &mut core.ids);
    if let Some(numbers) = &route.numbers {
        crate::tenants::write_numbers(&mut invite, numbers);
        crate::setup::follow_plugins(&mut new_leg, &invite);
    }
    invite
        .headers
        .push(HeaderName::Contact, new_leg.contact.clone());
    crate::headers::advertise(&mut invite);
    // This leg's provisionals are not acknowledged (no PRACK on it): no 100rel offered.
    invite
        .headers
        .set(HeaderName::Supported, crate::session_timer::TAG);
    crate::headers::rewrite_identity(refer, &mut invite, &local_uri_host(listener.addr));
    crate::headers::add_agent(&mut invite, &core.cfg.user_agent);
    Ok((new_leg, invite, route.tenant))
}

/// The new leg of a transfer Sluice carries out answered (`status`, 408 when nothing came).
pub fn new_leg_answered<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
    msg: &Message,
) {
    let Some(h) = call.transfer.as_mut() else {
        return;
    };
    let Some(new_leg) = h.new_leg.as_mut() else {
        // Done already: a retransmitted 2xx gets its ACK again.
        if (200..300).contains(&status) {
            if let Some((hop, ack)) = h.ack.clone() {
                core.emit(hop, ack);
            }
        }
        return;
    };
    if status < 200 {
        new_leg.learn_from_answer(status, msg);
        return;
    }
    let referrer = h.referrer;
    let invite_cseq = h.invite_cseq;
    let reason = msg
        .reason()
        .unwrap_or_else(|| reason_phrase(status))
        .to_string();
    if status >= 300 {
        call.transfer = None;
        debug!(
            call = call.key,
            status, "the transfer's new leg failed; the call stays"
        );
        let sipfrag = format!("SIP/2.0 {status} {reason}");
        return notify(core, call, now, referrer, &sipfrag, true);
    }
    new_leg.learn_from_answer(status, msg);
    let ack = crate::relay::ack(new_leg, invite_cseq, None, &mut core.ids);
    let ack = (new_leg.next_hop(), bytes::Bytes::from(ack.to_bytes()));
    core.emit(ack.0, ack.1.clone());
    h.ack = Some(ack);
    let tenant = h.tenant.take();
    let Some(new_leg) = h.new_leg.take() else {
        return;
    };
    if !matches!(call.state, CallState::Established) {
        // The call ended meanwhile: the new leg is hung up at once.
        let mut gone = new_leg;
        call.pending = call.pending.saturating_add(1);
        return core.bye(now, call.key, &mut gone);
    }
    take_over(core, call, now, (referrer.other(), new_leg, tenant), msg);
    notify(core, call, now, referrer, "SIP/2.0 200 OK", true);
}

/// The answered new leg of a transfer (`answer` its 2xx) takes the place of the call's leg
/// `pbx_leg`: the media goes to it, the old leg ends (the call's state stays), and with tenants
/// the call is the target tenant's from here on. Its session timer, if any, was the old leg's.
fn take_over<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (pbx_leg, new_leg, tenant): (LegId, Dialog, Option<std::sync::Arc<str>>),
    answer: &Message,
) {
    let mut answer = answer.clone();
    if core
        .anchor_sdp(call, pbx_leg, Role::Answer, &mut answer)
        .is_err()
    {
        tracing::warn!(
            call = call.key,
            "the transfer's new leg answered unreadable SDP"
        );
    }
    call.pending = call.pending.saturating_add(1);
    core.bye(now, call.key, call.legs.get_mut(pbx_leg));
    let old = std::mem::replace(call.legs.get_mut(pbx_leg), new_leg);
    core.retags.push((
        call.key,
        old.local_tag,
        call.legs.get(pbx_leg).local_tag.clone(),
    ));
    crate::session_timer::leg_replaced(call);
    if tenant.is_some() {
        call.tenant = tenant;
    }
    crate::guard::note_peers(core, call);
}

/// A NOTIFY of the REFER's progress on `leg` (RFC 3515 §2.4.5): `sipfrag` is the status line.
fn notify<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    leg: LegId,
    sipfrag: &str,
    last: bool,
) {
    let dialog = call.legs.get_mut(leg);
    let cseq = dialog.next_cseq();
    let mut n = dialog.request(sluice_sip::Method::Notify, cseq, 70, &mut core.ids);
    n.headers.push(HeaderName::Contact, dialog.contact.clone());
    n.headers.push(HeaderName::Event, "refer");
    let state = if last {
        "terminated;reason=noresource"
    } else {
        "active;expires=60"
    };
    n.headers.push(HeaderName::SubscriptionState, state);
    crate::headers::add_agent(&mut n, &core.cfg.user_agent);
    n.headers
        .push(HeaderName::ContentType, "message/sipfrag;version=2.0");
    n.body = bytes::Bytes::from(format!("{sipfrag}\r\n"));
    let hop = dialog.next_hop();
    call.pending = call.pending.saturating_add(1);
    core.send(
        now,
        n,
        hop,
        crate::core::ClientRole::Teardown { call: call.key },
    );
}

/// `Replaces` of a REFER's `Refer-To`, decoded: (Call-ID, to-tag, from-tag).
fn replaces_of(refer: &Message) -> Option<Option<(String, String, String)>> {
    let refer_to = refer.header(&HeaderName::ReferTo)?;
    let na = NameAddr::parse(refer_to)?;
    let uri = Uri::parse(na.uri)?;
    let value = uri
        .headers
        .trim_start_matches('?')
        .split('&')
        .find_map(|h| {
            let (k, v) = h.split_once('=')?;
            k.eq_ignore_ascii_case("replaces").then_some(v)
        })?;
    let decoded = percent_decode(value)?;
    let mut parts = decoded.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => {
                to_tag = Some(v.trim().to_string());
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => {
                from_tag = Some(v.trim().to_string());
            }
            _ => {}
        }
    }
    Some(match (to_tag, from_tag) {
        (Some(t), Some(f)) if !call_id.is_empty() => Some((call_id, t, f)),
        _ => None,
    })
}

/// Find the dialog a REFER's `Replaces` names among the calls: its to-tag is Sluice's tag in
/// that dialog, its from-tag the referrer's.
pub fn lookup(calls: &Calls, refer: &Message, trunk: &str) -> Replacing {
    let Some(found) = replaces_of(refer) else {
        return Replacing::None;
    };
    let Some((call_id, to_tag, from_tag)) = found else {
        return Replacing::Unknown;
    };
    let Some((key, leg)) = calls.by_tag(&to_tag) else {
        return Replacing::Unknown;
    };
    let Some(call) = calls.get(key) else {
        return Replacing::Unknown;
    };
    // Another trunk's call would give this trunk the other one's address.
    if &*call.trunk != trunk {
        return Replacing::Unknown;
    }
    let named = call.legs.get(leg);
    if named.call_id != call_id || named.remote_tag.as_deref() != Some(from_tag.as_str()) {
        return Replacing::Unknown;
    }
    let other = call.legs.get(leg.other());
    let Some(far_tag) = other.remote_tag.clone() else {
        return Replacing::Unknown;
    };
    Replacing::Mapped(Mapped {
        call_id: other.call_id.clone(),
        to_tag: far_tag,
        from_tag: other.local_tag.clone(),
        target: other.remote_target.clone(),
    })
}

/// The `Refer-To` of a REFER relayed to leg `to`; `Err(status)` when it cannot cross.
pub fn refer_to(refer: &Message, to: &Dialog, replacing: &Replacing) -> Result<String, u16> {
    let value = refer.header(&HeaderName::ReferTo).ok_or(400_u16)?;
    let na = NameAddr::parse(value).ok_or(400_u16)?;
    match replacing {
        Replacing::Unknown => Err(403),
        Replacing::Mapped(m) => {
            // The target's own URI headers do not cross.
            let target = m.target.split('?').next().unwrap_or_default();
            let replaces = format!("{};to-tag={};from-tag={}", m.call_id, m.to_tag, m.from_tag);
            Ok(format!("<{target}?Replaces={}>", percent_encode(&replaces)))
        }
        Replacing::None => {
            let uri = Uri::parse(na.uri).ok_or(400_u16)?;
            if uri.scheme.eq_ignore_ascii_case("tel") {
                return Ok(format!("<{}>", na.uri));
            }
            if !uri.is_sip() {
                return Err(400);
            }
            let user = uri.user.map(|u| format!("{u}@")).unwrap_or_default();
            let host = local_uri_host(to.flow.local);
            // The target's own parameters stay (user=phone); its headers do not cross.
            Ok(format!("<{}:{user}{host}{}>", uri.scheme, uri.params))
        }
    }
}

/// Characters that stay as they are in a URI header value (RFC 3261 `hnv-unreserved` and
/// `unreserved`).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:+$".contains(&b)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i.checked_add(1)?..i.checked_add(3)?)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i = i.checked_add(3)?;
        } else {
            out.push(b);
            i = i.checked_add(1)?;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_is_decoded_and_encoded_back() {
        let m = sluice_sip::parse_message(
            b"REFER sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              Refer-To: <sip:c@10.0.0.5?Replaces=abc%40pbx%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            replaces_of(&m),
            Some(Some(("abc@pbx".into(), "t1".into(), "f1".into())))
        );
        let enc = percent_encode("x@y;to-tag=1;from-tag=2");
        assert_eq!(enc, "x%40y%3Bto-tag%3D1%3Bfrom-tag%3D2");
        assert_eq!(
            percent_decode(&enc).as_deref(),
            Some("x@y;to-tag=1;from-tag=2")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
