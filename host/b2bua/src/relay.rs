//! A message of one leg rebuilt for the other: Sluice's own identifiers and addresses, and
//! only the headers that may cross (see [`crate::headers`]).

use crate::dialog::Dialog;
use crate::headers::{add_agent, advertise, copy_passthrough, local_uri_host, rewrite_identity};
use crate::ids::Ids;
use sluice_sip::{reason_phrase, HeaderName, Message, Method};
use sluice_transaction::response_to;

/// The response Sluice sends on a leg to `req` (which arrived on that leg's `dialog`), built
/// from `from`, the other leg's response, with `status` (mapped or not).
pub fn response(
    dialog: &Dialog,
    req: &Message,
    status: u16,
    from: &Message,
    agent: &str,
) -> Message {
    let reason = match from.reason() {
        Some(r) if from.status() == Some(status) => r,
        _ => reason_phrase(status),
    };
    let mut resp = response_to(req, status, reason, Some(&dialog.local_tag));
    let method = req.method();
    let dialog_usage = matches!(
        method,
        Some(Method::Subscribe | Method::Notify | Method::Refer)
    ) && (200..300).contains(&status);
    if dialog_usage {
        // RFC 6665 and RFC 3515: these 2xx carry a Contact (Sluice's, on this leg).
        resp.headers
            .push(HeaderName::Contact, dialog.contact.clone());
    }
    if matches!(method, Some(Method::Invite | Method::Update)) && (101..300).contains(&status) {
        // A dialog-creating or target-refreshing answer: our Contact, the caller's route set.
        resp.headers
            .push(HeaderName::Contact, dialog.contact.clone());
        for r in req.headers.get_all(&HeaderName::RecordRoute) {
            resp.headers.push(HeaderName::RecordRoute, r);
        }
    }
    let local_host = local_uri_host(dialog.flow.local);
    copy_passthrough(from, &mut resp);
    if matches!(method, Some(Method::Invite | Method::Update)) && (200..300).contains(&status) {
        advertise(&mut resp);
    }
    rewrite_identity(from, &mut resp, &local_host);
    if status == 405 {
        if let Some(a) = from.header(&HeaderName::Allow) {
            resp.headers.set(HeaderName::Allow, a.to_string());
        }
    }
    add_agent(&mut resp, agent);
    resp.body = from.body.clone();
    resp
}

/// An in-dialog request of the other leg (BYE, re-INVITE, UPDATE, INFO, OPTIONS) rebuilt on
/// `to`, with the next CSeq of that dialog.
pub fn request(to: &mut Dialog, msg: &Message, ids: &mut Ids, agent: &str) -> Message {
    let method = msg.method().cloned().unwrap_or(Method::Options);
    let cseq = to.next_cseq();
    let max_forwards = msg.max_forwards().unwrap_or(70).saturating_sub(1);
    let mut req = to.request(method.clone(), cseq, max_forwards, ids);
    if matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    ) {
        req.headers.push(HeaderName::Contact, to.contact.clone());
    }
    let local_host = local_uri_host(to.flow.local);
    copy_passthrough(msg, &mut req);
    if matches!(method, Method::Invite | Method::Update) {
        advertise(&mut req);
    }
    if method == Method::Prack {
        // Mapped to this leg's RSeq already (see `crate::prack`).
        if let Some(rack) = msg.header(&HeaderName::RAck) {
            req.headers.push(HeaderName::RAck, rack.to_string());
        }
    }
    if method == Method::Refer {
        // Rewritten for this leg already (see `crate::transfer`).
        if let Some(to) = msg.header(&HeaderName::ReferTo) {
            req.headers.push(HeaderName::ReferTo, to.to_string());
        }
    }
    rewrite_identity(msg, &mut req, &local_host);
    add_agent(&mut req, agent);
    req.body = msg.body.clone();
    req
}

/// Sluice's ACK for a 2xx received on `to` to the INVITE sent with `cseq`; it carries the body
/// of the caller's ACK when there is one (an offer in the ACK).
pub fn ack(to: &Dialog, cseq: u32, from: Option<&Message>, ids: &mut Ids) -> Message {
    let mut ack = to.request(Method::Ack, cseq, 70, ids);
    if let Some(from) = from.filter(|m| !m.body.is_empty()) {
        copy_passthrough(from, &mut ack);
        ack.body = from.body.clone();
    }
    ack
}

/// The CANCEL of an INVITE Sluice sent (RFC 3261 §9.1): its Request-URI, top Via, From, To,
/// Call-ID, CSeq number and Route.
pub fn cancel(invite: &Message) -> Message {
    let uri = invite.request_uri().unwrap_or("sip:invalid").to_string();
    let mut cancel = Message::request(Method::Cancel, uri);
    for name in [
        HeaderName::Via,
        HeaderName::MaxForwards,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
    ] {
        if let Some(v) = invite.header(&name) {
            cancel.headers.push(name, v.to_string());
        }
    }
    if let Some((n, _)) = invite.cseq() {
        cancel.headers.push(HeaderName::CSeq, format!("{n} CANCEL"));
    }
    for r in invite.headers.get_all(&HeaderName::Route) {
        cancel.headers.push(HeaderName::Route, r);
    }
    cancel
}
