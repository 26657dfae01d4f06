//! With tenants, a route names several trunks: a call that failed on every destination of
//! its trunk (with a status that moves on, within the budget) goes to the route's next trunk
//! that can take it, with the caller ID allowed there. Its INVITE is rebuilt from the one
//! made before the first trunk's plugins ran, with the numbers written for the new trunk,
//! and that trunk's plugins and signature applied: nothing of the first trunk's plugins
//! reaches the second. The PBX sees one call.

use crate::call::{Direction, LegId};
use crate::calls::{Call, CallState};
use crate::config::TenantRouting;
use crate::core::Core;
use crate::dialog::Dialog;
use crate::failover::{fresh_dialog, invite_again, send_invite};
use crate::hooks::{run_new_call, Attestation, HookContext, Hooks, NewCallOutcome};
use crate::route::{self, Numbers, Route};
use sluice_media::Role;
use sluice_routing::{CallerId, Number};
use sluice_sip::{HeaderName, Message};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// The trunks of a call's route not tried yet, and what choosing one needs.
#[derive(Debug, Clone)]
pub struct NextTrunks {
    pub trunks: VecDeque<Arc<str>>,
    /// The routing table the call started with, and its tenant there (position).
    pub routing: Arc<TenantRouting>,
    pub tenant: usize,
    /// The dialled number after the route's rewrite, and the caller's number.
    pub called: Number,
    pub calling: Option<Number>,
    pub emergency: bool,
    /// The INVITE toward the first trunk as it was before that trunk's plugins ran.
    pub pristine: Option<Message>,
}

/// Move the call to the next trunk of its route; the old and new local tags of its callee
/// dialog (the engine's index follows), or `None` when no trunk is left that takes it.
pub fn next_trunk<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    status: u16,
) -> Option<(String, String)> {
    let CallState::Proceeding(p) = &mut call.state else {
        return None;
    };
    let original = p.invite.clone();
    // Taken out while the call is rebuilt, put back for the trunks after this one.
    let mut next = p.attempts.next_trunks.take()?;
    let pristine = next.pristine.clone()?;
    let moved = loop {
        let Some(name) = next.trunks.pop_front() else {
            break None;
        };
        let Some((route, numbers)) = candidate(core, &next, &name, now) else {
            continue;
        };
        let built = rebuild(
            core,
            call,
            now,
            &route,
            (&pristine, &numbers, original.clone()),
        );
        if let Some(built) = built {
            break Some((route, built));
        }
    };
    if let CallState::Proceeding(p) = &mut call.state {
        p.attempts.next_trunks = Some(next);
    }
    let (route, (dialog, invite, attestation)) = moved?;
    let old_dialog = std::mem::replace(&mut call.legs.callee, dialog);
    let (old_tag, new_tag) = (old_dialog.local_tag, call.legs.callee.local_tag.clone());
    let old = std::mem::replace(&mut call.trunk, route.trunk.clone());
    call.attestation = attestation;
    call.prack.new_attempt();
    // The first trunk's attempt failed; the call is the next trunk's from here on.
    core.trunks.call_ended(&old);
    core.metrics.call_failed(&old, call.direction, status);
    core.metrics.call_ended(&old, call.direction, None);
    core.metrics.failover(&old);
    core.metrics.call_attempted(&route.trunk, call.direction);
    core.metrics.call_started(&route.trunk, call.direction);
    core.trunks
        .call_started(&route.trunk, Some(route.peer.addr));
    crate::guard::note_peers(core, call);
    let Some(uac) = send_invite(core, call, now, invite, route.peer.large_over_tcp) else {
        // Not sent (too large for UDP): the call fails, its index follows the new dialog.
        core.retags.push((call.key, old_tag, new_tag));
        return None;
    };
    info!(call = call.key, from = %old, to = %route.trunk, status, "failed over to the route's next trunk");
    if let CallState::Proceeding(p) = &mut call.state {
        p.uac = uac;
        p.attempts.challenge = None;
        p.attempts.rest = route.rest;
        p.attempts.failover_on = route.failover_on;
        p.attempts.attempt_timeout = route.attempt_timeout;
        p.attempts.arm(call.key, now, &mut core.timers);
    }
    Some((old_tag, new_tag))
}

/// Trunk `name` as the call's next try: its route (up, below its limit) and the numbers
/// written for it, when the caller ID is allowed there. Decided with the routing table the
/// call started with (a reload meanwhile does not change its tenant).
fn candidate<H: Hooks>(
    core: &mut Core<H>,
    next: &NextTrunks,
    name: &str,
    now: Instant,
) -> Option<(Route, Numbers)> {
    let i = core.cfg.trunks.iter().position(|t| &*t.name == name)?;
    let table = &next.routing.table;
    let tenant = table.tenants().get(next.tenant)?;
    let verdict = table.caller_id(next.tenant, name, next.calling.as_ref(), next.emergency);
    if verdict == CallerId::Refuse {
        return None;
    }
    let route = route::to_trunk(&core.cfg, &core.trunks, i, now, &mut core.ids).ok()?;
    let format = core.cfg.trunks.get(i).map(|t| t.numbers.format);
    let format = format.unwrap_or_default();
    let numbers = Numbers {
        called: next.called.written(format),
        calling: crate::tenants::presented(&verdict, tenant.numbering, format),
    };
    Some((route, numbers))
}

/// The call's new callee dialog toward `route`'s trunk and its INVITE: the pristine INVITE's
/// headers and body, the new trunk's numbers, its plugins and signature (the attestation).
/// `None` when no listener serves the trunk or its plugins refuse the call; the call is
/// untouched until the caller takes the result.
fn rebuild<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    route: &Route,
    (pristine, numbers, mut original): (&Message, &Numbers, Message),
) -> Option<(Dialog, Message, Option<Attestation>)> {
    let side = LegId::Callee.side(call.direction);
    let peer = &route.peer;
    let listener = route::listener_for(&core.cfg.listeners, side, peer.transport, peer.addr)?;
    let public = core.cfg.public_address_of(&route.trunk);
    let mut dialog = call.legs.callee.clone();
    fresh_dialog(
        &mut dialog,
        &mut core.ids,
        (peer, listener, public),
        pristine,
    );
    // The caller's party as the first trunk's INVITE had it before its plugins ran; the
    // callee's named at the new trunk, not the first.
    if let Some(from) = pristine.header(&HeaderName::From) {
        dialog.local_party = with_tag(from, &dialog.local_tag);
    }
    let called = pristine
        .request_uri()
        .and_then(sluice_sip::edit::uri_number);
    if let Some(user) = called {
        let host = crate::headers::peer_uri_host(&peer.host, peer.addr);
        let (scheme, _) = crate::dialog::uri_scheme(peer.sips, peer.transport);
        dialog.remote_party = format!("<{scheme}:{user}@{host}>");
    }
    let mut invite = invite_again(&dialog, &mut core.ids, pristine);
    // Where SRTP is involved (on this trunk or the one before), the caller's offer is anchored
    // again for this trunk: its own policy, fresh keys of Sluice's or none. Done on every try,
    // so a try refused below leaves the next one to set the state again.
    let offer_again = match call.media.as_mut() {
        Some(anchor) => anchor.switch_srtp(route.srtp.as_ref()),
        None => false,
    };
    if offer_again {
        let mut offer = original.clone();
        if core
            .anchor_sdp(call, LegId::Caller, Role::Offer, &mut offer)
            .is_err()
        {
            return None;
        }
        invite.body = offer.body;
    }
    if let Some(host) = &route.uri_host {
        crate::setup::retarget_dialog(&mut dialog, &mut invite, host);
    }
    crate::tenants::write_numbers(&mut invite, numbers);
    crate::setup::follow_plugins(&mut dialog, &invite);
    let mut attestation = run_plugins(core, call, route, (&mut invite, &mut original))?;
    if core.hooks.active(call.generation, &route.trunk) {
        crate::setup::follow_plugins(&mut dialog, &invite);
    }
    if call.direction == Direction::Outbound {
        attestation = crate::identity::sign(core, now, &route.trunk, &mut invite, attestation);
    }
    Some((dialog, invite, attestation))
}

/// The new trunk's plugins over its INVITE: `None` when one refused the call, else the
/// attestation they chose.
fn run_plugins<H: Hooks>(
    core: &mut Core<H>,
    call: &Call,
    route: &Route,
    (invite, original): (&mut Message, &mut Message),
) -> Option<Option<Attestation>> {
    if !core.hooks.active(call.generation, &route.trunk) {
        return Some(None);
    }
    let ctx = HookContext {
        call: call.key,
        direction: call.direction,
        leg: route.out_side,
        trunk: &route.trunk,
        tenant: call.tenant.as_deref(),
        source: call.legs.caller.flow.remote,
        transport: call.legs.caller.flow.transport,
    };
    match run_new_call(&mut core.hooks, call.generation, &ctx, invite, original) {
        NewCallOutcome::Refuse { .. } => None,
        NewCallOutcome::Continue { attestation } => Some(attestation),
    }
}

/// A From value with its `tag` parameter set to `tag`.
fn with_tag(value: &str, tag: &str) -> String {
    let lower = value.to_ascii_lowercase();
    // The tag parameter follows the name-addr's closing `>` (or the bare URI).
    let after = lower.rfind('>').map_or(0, |i| i);
    let Some(at) = lower.get(after..).and_then(|t| t.find(";tag=")) else {
        return format!("{value};tag={tag}");
    };
    let start = after.saturating_add(at);
    let rest = value.get(start.saturating_add(5)..).unwrap_or("");
    let end = rest.find(';').unwrap_or(rest.len());
    format!(
        "{}{tag}{}",
        value.get(..start.saturating_add(5)).unwrap_or(value),
        rest.get(end..).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::with_tag;

    #[test]
    fn the_tag_of_a_from_is_replaced_and_nothing_else() {
        assert_eq!(
            with_tag("\"A;tag=x\" <sip:1@h;tag=u>;tag=old;x=1", "new"),
            "\"A;tag=x\" <sip:1@h;tag=u>;tag=new;x=1"
        );
        assert_eq!(with_tag("<sip:1@h>", "new"), "<sip:1@h>;tag=new");
        assert_eq!(with_tag("sip:1@h;TAG=old", "new"), "sip:1@h;TAG=new");
    }
}
