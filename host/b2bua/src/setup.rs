//! A new call: the caller's dialog (Sluice as UAS), the callee's dialog (Sluice as UAC, with a
//! fresh Call-ID, tags and CSeq) and the INVITE toward the callee. Nothing of the caller's
//! topology is written on the callee's side: its From host, Via, Contact, Record-Route and
//! Call-ID stay behind.

use crate::config::{ListenerAddr, PeerConfig, Side};
use crate::dialog::{make_contact, transport_param, Dialog};
use crate::headers::{
    add_agent, copy_passthrough, format_host_port, local_uri_host, peer_uri_host, rewrite_identity,
};
use crate::ids::Ids;
use sluice_sip::{edit, HeaderName, Message, Method, NameAddr};
use sluice_transaction::{Flow, Transport};

/// The two dialogs of a new call and the INVITE toward the callee.
#[derive(Debug)]
pub struct NewCall {
    pub caller: Dialog,
    pub callee: Dialog,
    pub invite: Message,
}

/// Build a call for the caller's INVITE `msg`, received on `flow` by listener `inbound`, to be
/// sent to `peer` from listener `outbound`.
pub fn new_call(
    msg: &Message,
    flow: Flow,
    inbound: ListenerAddr,
    peer: &PeerConfig,
    outbound: ListenerAddr,
    ids: &mut Ids,
    (agent, public): (&str, Option<(std::net::IpAddr, bool)>),
) -> NewCall {
    // Where the callee's side sees Sluice (From, identity): its public address toward a trunk
    // that has one.
    let shown = match public {
        Some((ip, _)) if outbound.side == Side::External => {
            std::net::SocketAddr::new(ip, outbound.addr.port())
        }
        _ => outbound.addr,
    };
    let mut caller = caller_dialog(msg, flow, inbound, ids);
    let mut callee = callee_dialog(msg, peer, (outbound, shown), ids);
    // The trunk's leg shows Sluice's public address when the trunk has one.
    if let Some((ip, via)) = public {
        if inbound.side == Side::External {
            caller.advertise(ip, via);
        }
        if outbound.side == Side::External {
            callee.advertise(ip, via);
        }
    }
    let max_forwards = msg.max_forwards().unwrap_or(70).saturating_sub(1);
    let mut invite = callee.request(Method::Invite, callee.local_cseq, max_forwards, ids);
    invite
        .headers
        .push(HeaderName::Contact, callee.contact.clone());
    copy_passthrough(msg, &mut invite);
    crate::headers::advertise(&mut invite);
    // Without an offer in the INVITE, the callee's first reliable provisional carries one,
    // answered in the PRACK (RFC 3262 §5): a caller that takes no PRACK has no answer to give
    // there, so the callee is not offered 100rel.
    if msg.body.is_empty() && !crate::prack::names(msg, crate::prack::TAG) {
        crate::headers::withdraw_option(&mut invite, crate::prack::TAG);
    }
    rewrite_identity(msg, &mut invite, &local_uri_host(shown));
    if !peer.forward_history {
        invite.headers.remove(&HeaderName::Diversion);
        invite.headers.remove(&HeaderName::HistoryInfo);
    }
    add_agent(&mut invite, agent);
    invite.body = msg.body.clone();
    NewCall {
        caller,
        callee,
        invite,
    }
}

/// The caller's dialog: its Call-ID and tag, our new To tag, its Contact as the target and its
/// Record-Route as the route set.
fn caller_dialog(msg: &Message, flow: Flow, inbound: ListenerAddr, ids: &mut Ids) -> Dialog {
    let from = msg.header(&HeaderName::From).unwrap_or("");
    let to = msg.header(&HeaderName::To).unwrap_or("");
    let target = msg
        .contact_uri()
        .or_else(|| NameAddr::parse(from).map(|n| n.uri))
        .unwrap_or_default();
    let user = msg
        .request_uri()
        .and_then(edit::uri_number)
        .unwrap_or("sluice");
    let tag = ids.tag();
    Dialog {
        flow,
        call_id: msg.call_id().unwrap_or("").to_string(),
        local_party: format!("{to};tag={tag}"),
        local_tag: tag,
        remote_party: from.to_string(),
        remote_tag: msg.from_tag().map(str::to_string),
        local_cseq: ids.first_cseq(),
        remote_cseq: msg.cseq().map(|(n, _)| n),
        remote_target: target.to_string(),
        route_set: msg
            .headers
            .values(&HeaderName::RecordRoute)
            .map(str::to_string)
            .collect(),
        contact: if msg
            .request_uri()
            .and_then(sluice_sip::Uri::parse)
            .is_some_and(|u| u.scheme.eq_ignore_ascii_case("sips"))
        {
            crate::dialog::make_sips_contact(user, &inbound)
        } else {
            make_contact(user, &inbound)
        },
        via_host: format_host_port(inbound.addr),
    }
}

/// The callee's dialog: the caller's display name and number on our host, the called number on
/// the peer's host, a fresh Call-ID, tag and CSeq.
pub(crate) fn callee_dialog(
    msg: &Message,
    peer: &PeerConfig,
    (outbound, shown): (ListenerAddr, std::net::SocketAddr),
    ids: &mut Ids,
) -> Dialog {
    let from = msg.header(&HeaderName::From).and_then(NameAddr::parse);
    let called = msg
        .request_uri()
        .and_then(edit::uri_number)
        .or_else(|| {
            let to = NameAddr::parse(msg.header(&HeaderName::To)?)?;
            edit::uri_number(to.uri)
        })
        .unwrap_or("");
    let calling = from
        .as_ref()
        .and_then(|n| edit::uri_number(n.uri))
        .unwrap_or("anonymous");
    let display = from
        .as_ref()
        .and_then(|n| n.display)
        .map(|d| format!("{d} "))
        .unwrap_or_default();
    let local_host = local_uri_host(shown);
    let peer_host = peer_uri_host(&peer.host, peer.addr);
    let (scheme, tparam) = crate::dialog::uri_scheme(peer.sips, peer.transport);
    let tag = ids.tag();
    Dialog {
        flow: Flow {
            transport: peer.transport,
            local: outbound.addr,
            remote: peer.addr,
            conn: None,
        },
        call_id: ids.call_id(),
        local_party: format!("{display}<sip:{calling}@{local_host}>;tag={tag}"),
        local_tag: tag,
        remote_party: format!("<{scheme}:{called}@{peer_host}>"),
        remote_tag: None,
        local_cseq: ids.first_cseq(),
        remote_cseq: None,
        remote_target: format!("{scheme}:{called}@{peer_host}{tparam}"),
        route_set: Vec::new(),
        contact: if scheme == "sips" {
            crate::dialog::make_sips_contact(calling, &outbound)
        } else {
            make_contact(calling, &outbound)
        },
        via_host: format_host_port(outbound.addr),
    }
}

/// Send the call to `host` (a gateway's registered Contact) rather than the peer's host: the
/// Request-URI and the dialog's target name it, the called number kept.
pub fn retarget(call: &mut NewCall, host: &str) {
    retarget_dialog(&mut call.callee, &mut call.invite, host);
}

/// [`retarget`] for a callee `dialog` and its `invite`.
pub fn retarget_dialog(dialog: &mut Dialog, invite: &mut Message, host: &str) {
    let number = invite
        .request_uri()
        .and_then(edit::uri_number)
        .unwrap_or("")
        .to_string();
    let sips = sluice_sip::Uri::parse(&dialog.remote_target)
        .is_some_and(|u| u.scheme.eq_ignore_ascii_case("sips"));
    let (scheme, tparam) = crate::dialog::uri_scheme(sips, dialog.flow.transport);
    let uri = format!("{scheme}:{number}@{host}{tparam}");
    dialog.remote_target = uri.clone();
    if let sluice_sip::StartLine::Request { uri: u, .. } = &mut invite.start {
        *u = uri;
    }
}

/// RFC 3261 §18.1.1: a request larger than 1,300 bytes, with no path MTU known, goes over a
/// congestion-controlled transport.
pub const UDP_COMFORTABLE: usize = 1300;

/// No giant datagrams: an INVITE about to leave over UDP on `dialog` that is larger than
/// [`UDP_COMFORTABLE`] moves to TCP when the peer takes it (`over_tcp`) and this side listens
/// on TCP at the same address; one still over `max_udp` is refused (`Err`, its length).
pub fn fit_for_udp(
    listeners: &[ListenerAddr],
    (over_tcp, max_udp): (bool, usize),
    dialog: &mut Dialog,
    invite: &mut Message,
) -> Result<(), usize> {
    if dialog.flow.transport != Transport::Udp {
        return Ok(());
    }
    let len = invite.encoded_len();
    let local = dialog.flow.local;
    if len > UDP_COMFORTABLE && over_tcp && crate::route::tcp_beside(listeners, local) {
        switch_to_tcp(dialog, invite);
        return Ok(());
    }
    if len > max_udp {
        return Err(len);
    }
    Ok(())
}

/// Move an INVITE and its dialog from UDP to TCP, from the TCP listener on the same address
/// (so Via and Contact keep their host and port).
fn switch_to_tcp(dialog: &mut Dialog, invite: &mut Message) {
    dialog.flow.transport = Transport::Tcp;
    dialog.flow.conn = None;
    if let Some(via) = invite.header(&HeaderName::Via) {
        let via = via.replacen("SIP/2.0/UDP ", "SIP/2.0/TCP ", 1);
        invite.headers.set(HeaderName::Via, via);
    }
    if let Some(open) = dialog.contact.strip_suffix('>') {
        dialog.contact = format!("{open}{}>", transport_param(Transport::Tcp));
        invite
            .headers
            .set(HeaderName::Contact, dialog.contact.clone());
    }
}

/// The callee's dialog follows what the plugins wrote into its INVITE (the edit rules keep the
/// tags).
pub fn follow_plugins(callee: &mut Dialog, invite: &Message) {
    // Into the strings the leg already holds (written when the INVITE was built): no new
    // allocation once they are long enough.
    let follow = |s: &mut String, v: &str| {
        s.clear();
        s.push_str(v);
    };
    if let Some(v) = invite.header(&HeaderName::From) {
        follow(&mut callee.local_party, v);
    }
    if let Some(v) = invite.header(&HeaderName::To) {
        follow(&mut callee.remote_party, v);
    }
    if let Some(u) = invite.request_uri() {
        follow(&mut callee.remote_target, u);
    }
}
