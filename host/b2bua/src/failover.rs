//! What a call does when the trunk says no before the PBX hears of it:
//!
//! - a digest challenge (401/407) to a request Sluice sent the trunk is answered once with the
//!   trunk's credentials (again only when the provider says the nonce was stale): the same
//!   request with the next CSeq and the answer, invisibly to the PBX;
//! - a call whose INVITE fails with 408, 503, a transport error, or a status the trunk lists in
//!   `failover_on` moves to the trunk's next destination (priority, then weight), within the
//!   trunk's time budget, with a fresh dialog (new Call-ID and tag): the PBX sees one call.
//!
//! Each function returns `true` when it took the failure over (the caller relays nothing).
//! A destination given up that answers 2xx later gets an ACK and a BYE
//! ([`abandoned_answer`]): it must not keep a call nobody hears.

use crate::call::LegId;
use crate::calls::{Call, CallState};
use crate::config::{PeerConfig, Side};
use crate::core::{ClientRole, Core};
use crate::dialog::{make_contact, Dialog};
use crate::headers::format_host_port;
use crate::hooks::Hooks;
use crate::retransmit::CallTimers;
use crate::{route, setup};
use sluice_auth::Challenge;
use sluice_sip::{edit, HeaderName, Message, Method};
use sluice_transaction::{ClientTxId, Flow, ServerTxId};
use sluice_trunk::auth::worth_answering;
use sluice_trunk::Authenticator;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A call's remaining tries toward its trunk.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Destinations not tried yet, in order.
    pub rest: VecDeque<PeerConfig>,
    /// Statuses that move on (besides 408 and 503).
    pub failover_on: Vec<u16>,
    /// No new destination after this.
    pub deadline: Option<Instant>,
    /// The challenge the current INVITE answered, if any.
    pub challenge: Option<Challenge>,
    /// A destination silent this long (not even a provisional answer) is given up for the
    /// next; `None`: wait for Timer B.
    pub attempt_timeout: Option<Duration>,
    /// When the current destination is given up, if it stays silent.
    pub attempt_deadline: Option<Instant>,
    /// With tenants: the route's further trunks, tried once every destination of this one
    /// failed.
    pub next_trunks: Option<Box<crate::next_trunk::NextTrunks>>,
}

impl Attempts {
    /// Arm the silence timer of a new try (only when there is a next destination or trunk).
    pub fn arm(&mut self, key: u64, now: Instant, timers: &mut CallTimers) {
        self.attempt_deadline = None;
        let more_trunks = self
            .next_trunks
            .as_ref()
            .is_some_and(|n| !n.trunks.is_empty());
        if self.rest.is_empty() && !more_trunks {
            return;
        }
        if let Some(t) = self.attempt_timeout {
            let at = sluice_transaction::after(now, t);
            self.attempt_deadline = Some(at);
            timers.push(at, key);
        }
    }
}

/// The call's timer fired: a destination silent past its time is given up for the next.
pub fn on_timer<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    let CallState::Proceeding(p) = &call.state else {
        return;
    };
    let due = p.attempts.attempt_deadline.is_some_and(|d| now >= d);
    if !due || core.tx.client_proceeding(p.uac) {
        return;
    }
    warn!(call = call.key, trunk = %call.trunk, to = %call.legs.callee.flow.remote, "destination silent, trying the next");
    if let Some((old, new)) = next_destination(core, call, now, 408, None) {
        core.retags.push((call.key, old, new));
    }
}

impl Attempts {
    fn moves_on(&self, status: u16) -> bool {
        matches!(status, 408 | 503) || self.failover_on.contains(&status)
    }
}

/// Whether leg `to` of the call faces its trunk.
fn faces_trunk(call: &Call, to: LegId) -> bool {
    to.side(call.direction) == Side::External
}

/// The challenge of a 401/407 worth answering for a request that answered `previous`; logs and
/// counts the trunk's refusal otherwise.
fn answerable<H: Hooks>(
    core: &mut Core<H>,
    trunk: &str,
    resp: &Message,
    previous: Option<&Challenge>,
) -> Option<Challenge> {
    let agent = core.trunks.get_mut(trunk)?;
    if !agent.auth.has_credentials() {
        return None;
    }
    let challenge = Authenticator::challenge_of(resp).ok().map(|(c, _)| c);
    match challenge {
        Some(c) if worth_answering(previous, &c) => Some(c),
        _ => {
            refused_credentials(core, trunk);
            None
        }
    }
}

/// The trunk refused Sluice's credentials: counted, logged once per trunk.
fn refused_credentials<H: Hooks>(core: &mut Core<H>, trunk: &str) {
    if let Some(agent) = core.trunks.get_mut(trunk) {
        if !agent.auth_failure_logged {
            agent.auth_failure_logged = true;
            warn!(trunk, "the trunk refused Sluice's credentials");
        }
    }
    core.metrics.auth_failed(trunk, "request");
}

/// `req` (as sent) again with the next CSeq of `dialog`, a new branch, and the answer to the
/// challenge in `resp`.
fn with_credentials<H: Hooks>(
    core: &mut Core<H>,
    trunk: &str,
    call: &mut Call,
    to: LegId,
    (req, resp): (&Message, &Message),
) -> Option<Message> {
    let method = req.method()?.as_str().to_string();
    let uri = req.request_uri()?.to_string();
    let (name, value) = core
        .trunks
        .get_mut(trunk)?
        .auth
        .answer(resp, &method, &uri)
        .ok()?;
    let dialog = call.legs.get_mut(to);
    let cseq = dialog.next_cseq();
    let mut again = req.clone();
    let via = dialog.via(&mut core.ids);
    again.headers.remove(&HeaderName::Via);
    again.headers.push_front(HeaderName::Via, via);
    again
        .headers
        .set(HeaderName::CSeq, format!("{cseq} {method}"));
    again.headers.remove(&HeaderName::Authorization);
    again.headers.remove(&HeaderName::ProxyAuthorization);
    again.headers.push(name, value);
    Some(again)
}

/// One of Sluice's own requests on leg `to` (a BYE, a refresh, a NOTIFY), challenged by the
/// trunk: the request with credentials, when the challenge is worth answering.
pub fn own_request_with_credentials<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    to: LegId,
    (sent, resp): (&Message, &Message),
) -> Option<Message> {
    if !faces_trunk(call, to) {
        return None;
    }
    let already = sent.header(&HeaderName::Authorization).is_some()
        || sent.header(&HeaderName::ProxyAuthorization).is_some();
    let trunk = call.trunk.clone();
    let previous = already
        .then(|| core.trunks.get(&trunk))
        .flatten()
        .and_then(|a| a.auth.last_challenge().cloned());
    answerable(core, &trunk, resp, previous.as_ref())?;
    with_credentials(core, &trunk, call, to, (sent, resp))
}

/// The callee's challenge to the call's INVITE: answered once per nonce.
pub fn answer_invite_challenge<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    resp: &Message,
) -> bool {
    let status = resp.status().unwrap_or(0);
    if !matches!(status, 401 | 403 | 407) || !faces_trunk(call, LegId::Callee) {
        return false;
    }
    let trunk = call.trunk.clone();
    let CallState::Proceeding(p) = &call.state else {
        return false;
    };
    if status == 403 {
        // A refusal of the INVITE that carried Sluice's credentials: wrong credentials.
        if p.attempts.challenge.is_some() {
            refused_credentials(core, &trunk);
        }
        return false;
    }
    let previous = p.attempts.challenge.clone();
    let uac = p.uac;
    let Some(challenge) = answerable(core, &trunk, resp, previous.as_ref()) else {
        return false;
    };
    let Some(sent) = core.tx.client_request(uac).cloned() else {
        return false;
    };
    let Some(invite) = with_credentials(core, &trunk, call, LegId::Callee, (&sent, resp)) else {
        return false;
    };
    // The credentials make it larger: it may have to move to TCP, or be refused.
    let over_tcp = core
        .cfg
        .trunks
        .iter()
        .any(|t| t.name == trunk && t.large_over_tcp);
    let Some(uac) = send_invite(core, call, now, invite, over_tcp) else {
        return false;
    };
    if let CallState::Proceeding(p) = &mut call.state {
        p.uac = uac;
        p.attempts.challenge = Some(challenge);
    }
    true
}

/// A challenge to an in-dialog request Sluice relayed to the trunk (BYE, re-INVITE, UPDATE…):
/// the request again with credentials, answered on the same server transaction.
pub fn answer_relay_challenge<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (sent, resp): (&Message, &Message),
    (from, server, original): (LegId, ServerTxId, &Message),
) -> bool {
    let status = resp.status().unwrap_or(0);
    let to = from.other();
    let already = sent.header(&HeaderName::Authorization).is_some()
        || sent.header(&HeaderName::ProxyAuthorization).is_some();
    if !matches!(status, 401 | 407) || !faces_trunk(call, to) {
        return false;
    }
    let trunk = call.trunk.clone();
    let previous = already
        .then(|| core.trunks.get(&trunk))
        .flatten()
        .and_then(|a| a.auth.last_challenge().cloned());
    if answerable(core, &trunk, resp, previous.as_ref()).is_none() {
        return false;
    }
    let Some(again) = with_credentials(core, &trunk, call, to, (sent, resp)) else {
        return false;
    };
    let hop = call.legs.get(to).next_hop();
    if sent.method() == Some(&Method::Invite) {
        if let Some(r) = call.relay.as_mut() {
            r.to_cseq = again.cseq().map_or(r.to_cseq, |(n, _)| n);
        }
    }
    call.pending = call.pending.saturating_add(1);
    let role = ClientRole::Relay {
        call: call.key,
        from,
        server,
        request: Box::new(original.clone()),
    };
    core.send(now, again, hop, role);
    true
}

/// Move a failed INVITE to the trunk's next destination, with a fresh dialog. `retag` gets
/// the dialog's old and new local tags (the engine's index follows). `failed` is the INVITE of a
/// transaction that is already gone (timed out, transport error).
pub fn next_destination<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
    failed: Option<&Message>,
) -> Option<(String, String)> {
    let CallState::Proceeding(p) = &mut call.state else {
        return None;
    };
    let a = &mut p.attempts;
    if !a.moves_on(status) || a.deadline.is_some_and(|d| now >= d) {
        return None;
    }
    let Some(peer) = a.rest.pop_front() else {
        return crate::next_trunk::next_trunk(core, call, now, status);
    };
    a.challenge = None;
    let uac = p.uac;
    // The INVITE as sent: from the failed transaction's event, or the live transaction.
    let sent = match failed {
        Some(m) => m.clone(),
        None => core.tx.client_request(uac).cloned()?,
    };
    let side = LegId::Callee.side(call.direction);
    let listener = route::listener_for(&core.cfg.listeners, side, peer.transport, peer.addr)?;
    let public = core.cfg.public_address_of(&call.trunk);
    let ids = &mut core.ids;
    let dialog = &mut call.legs.callee;
    let old_tag = fresh_dialog(dialog, ids, (&peer, listener, public), &sent);
    let invite = invite_again(dialog, ids, &sent);
    let new_tag = dialog.local_tag.clone();
    // The next destination's reliable provisionals are its own (its RSeq starts anew).
    call.prack.new_attempt();
    let uac = send_invite(core, call, now, invite, peer.large_over_tcp)?;
    info!(call = call.key, trunk = %call.trunk, status, to = %peer.addr, "failed over to the next destination");
    core.metrics.failover(&call.trunk);
    if let CallState::Proceeding(p) = &mut call.state {
        p.uac = uac;
        p.attempts.arm(call.key, now, &mut core.timers);
    }
    Some((old_tag, new_tag))
}

/// Send a new attempt of the call's INVITE on its callee leg, after the UDP size check (which
/// may move it to TCP, or refuse it: `None`).
pub(crate) fn send_invite<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    mut invite: Message,
    over_tcp: bool,
) -> Option<ClientTxId> {
    let limits = (over_tcp, core.cfg.max_udp_bytes);
    let dialog = &mut call.legs.callee;
    if let Err(len) = setup::fit_for_udp(&core.cfg.listeners, limits, dialog, &mut invite) {
        warn!(call = call.key, len, "INVITE too large for UDP: not sent");
        return None;
    }
    let uac = core.tx.send_request(now, invite, dialog.flow);
    core.clients
        .insert(uac, ClientRole::Invite { call: call.key });
    core.flush_transmits();
    Some(uac)
}

/// Reset the callee's dialog for `peer` (new tag, Call-ID, CSeq; Contact and Via on
/// `listener`, shown as the trunk's public address when it has one); the old local tag.
pub(crate) fn fresh_dialog(
    dialog: &mut Dialog,
    ids: &mut crate::ids::Ids,
    (peer, listener, public): (
        &PeerConfig,
        crate::config::ListenerAddr,
        Option<(std::net::IpAddr, bool)>,
    ),
    sent: &Message,
) -> String {
    let old_tag = std::mem::replace(&mut dialog.local_tag, ids.tag());
    dialog.local_party = dialog.local_party.replace(
        &format!(";tag={old_tag}"),
        &format!(";tag={}", dialog.local_tag),
    );
    dialog.call_id = ids.call_id();
    dialog.local_cseq = ids.first_cseq();
    dialog.remote_tag = None;
    if let Some(to) = sent.header(&HeaderName::To) {
        dialog.remote_party = to.to_string();
    }
    dialog.route_set.clear();
    dialog.flow = Flow {
        transport: peer.transport,
        local: listener.addr,
        remote: peer.addr,
        conn: None,
    };
    dialog.via_host = format_host_port(listener.addr);
    let user = sent
        .header(&HeaderName::Contact)
        .and_then(|c| sluice_sip::NameAddr::parse(c).map(|n| n.uri.to_string()))
        .and_then(|u| sluice_sip::Uri::parse(&u).and_then(|u| u.user.map(str::to_string)))
        .unwrap_or_else(|| "sluice".into());
    let (scheme, tparam) = crate::dialog::uri_scheme(peer.sips, peer.transport);
    dialog.contact = if scheme == "sips" {
        crate::dialog::make_sips_contact(&user, &listener)
    } else {
        make_contact(&user, &listener)
    };
    if let Some((ip, via)) = public {
        dialog.advertise(ip, via);
    }
    if let Some(target) = sent.request_uri().and_then(edit::uri_number) {
        let host = crate::headers::peer_uri_host(&peer.host, peer.addr);
        dialog.remote_target = format!("{scheme}:{target}@{host}{tparam}");
    }
    old_tag
}

/// The INVITE `sent` again in `dialog`: its own headers and body, the dialog's identity.
pub(crate) fn invite_again(dialog: &Dialog, ids: &mut crate::ids::Ids, sent: &Message) -> Message {
    let mut invite = dialog.request(Method::Invite, dialog.local_cseq, 70, ids);
    for h in sent.headers.iter() {
        let managed = matches!(
            h.name,
            HeaderName::Via
                | HeaderName::MaxForwards
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::Route
                | HeaderName::Authorization
                | HeaderName::ProxyAuthorization
                | HeaderName::Contact
                | HeaderName::ContentLength
        );
        if !managed {
            invite.headers.push(h.name.clone(), h.value.clone());
        }
    }
    if let Some(mf) = sent.header(&HeaderName::MaxForwards) {
        invite.headers.set(HeaderName::MaxForwards, mf.to_string());
    }
    invite
        .headers
        .push(HeaderName::Contact, dialog.contact.clone());
    invite.body = sent.body.clone();
    invite
}

/// A 2xx from a destination the call has moved on from (`sent`, the INVITE it got, over
/// `flow`): confirmed with an ACK and ended with a BYE in that attempt's own dialog.
pub fn abandoned_answer<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (sent, flow): (&Message, Flow),
    msg: &Message,
) {
    let Some((cseq, _)) = sent.cseq() else {
        return;
    };
    let current = &call.legs.callee;
    let mut d = Dialog {
        flow,
        call_id: sent.call_id().unwrap_or("").to_string(),
        local_party: sent.header(&HeaderName::From).unwrap_or("").to_string(),
        local_tag: sent.from_tag().unwrap_or("").to_string(),
        remote_party: sent.header(&HeaderName::To).unwrap_or("").to_string(),
        remote_tag: None,
        local_cseq: cseq,
        remote_cseq: None,
        remote_target: sent.request_uri().unwrap_or("").to_string(),
        route_set: Vec::new(),
        contact: current.contact.clone(),
        via_host: current.via_host.clone(),
    };
    d.learn_from_answer(200, msg);
    warn!(call = call.key, to = %flow.remote, "a destination given up answered late: hung up");
    let ack = crate::relay::ack(&d, cseq, None, &mut core.ids);
    core.emit_message(d.next_hop(), &ack);
    let next = d.next_cseq();
    let bye = d.request(Method::Bye, next, 70, &mut core.ids);
    call.pending = call.pending.saturating_add(1);
    core.send(
        now,
        bye,
        d.next_hop(),
        ClientRole::Teardown { call: call.key },
    );
}
