//! With tenants, a route names several trunks: a call that failed on every destination of
//! its trunk (with a status that moves on, within the budget) goes to the route's next trunk
//! that can take it, with the caller ID allowed there. Its INVITE is rebuilt from the one
//! made before the first trunk's plugins ran, with the numbers written for the new trunk,
//! and that trunk's plugins and signature applied: nothing of the first trunk's plugins
//! reaches the second. The PBX sees one call.

use crate::call::{Direction, LegId};
use crate::calls::{Call, CallState};
use crate::core::Core;
use crate::dialog::Dialog;
use crate::failover::{fresh_dialog, invite_again, send_invite};
use crate::hooks::{run_new_call, Attestation, HookContext, Hooks, NewCallOutcome};
use crate::route::{self, Numbers, Route};
use sluice_routing::{CallerId, Number};
use sluice_sip::Message;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// The trunks of a call's route not tried yet, and what choosing one needs.
#[derive(Debug, Clone)]
pub struct NextTrunks {
    pub trunks: VecDeque<Arc<str>>,
    /// The tenant (position in the routing table).
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
    let next = p.attempts.next_trunks.as_mut()?;
    let tenants = core.cfg.tenants.clone()?;
    let pristine = next.pristine.clone()?;
    let (route, numbers) = loop {
        let name = next.trunks.pop_front()?;
        let Some(i) = core.cfg.trunks.iter().position(|t| t.name == name) else {
            continue;
        };
        let caller_id =
            tenants
                .table
                .caller_id(next.tenant, &name, next.calling.as_ref(), next.emergency);
        let presented = match &caller_id {
            CallerId::Refuse => continue,
            CallerId::Keep => next.calling.as_ref(),
            CallerId::Replace(n) => Some(n),
        };
        let Ok(route) = route::to_trunk(&core.cfg, &core.trunks, i, now, &mut core.ids) else {
            continue;
        };
        let format = core.cfg.trunks.get(i).map(|t| t.numbers.format);
        let format = format.unwrap_or_default();
        let numbers = Numbers {
            called: next.called.written(format),
            calling: presented.map(|n| n.written(format)),
        };
        break (route, numbers);
    };
    let (dialog, invite, attestation) =
        rebuild(core, call, now, &route, (&pristine, &numbers, original))?;
    let old_dialog = std::mem::replace(&mut call.legs.callee, dialog);
    let (old_tag, new_tag) = (old_dialog.local_tag, call.legs.callee.local_tag.clone());
    let old = std::mem::replace(&mut call.trunk, route.trunk.clone());
    call.attestation = attestation;
    call.prack.new_attempt();
    core.trunks.call_ended(&old);
    core.metrics.call_ended(&old, call.direction, None);
    core.metrics.call_started(&route.trunk, call.direction);
    core.trunks
        .call_started(&route.trunk, Some(route.peer.addr));
    let uac = send_invite(core, call, now, invite, route.peer.large_over_tcp)?;
    info!(call = call.key, from = %old, to = %route.trunk, status, "failed over to the route's next trunk");
    core.metrics.failover(&old);
    if let CallState::Proceeding(p) = &mut call.state {
        p.uac = uac;
        p.attempts.challenge = None;
        p.attempts.rest = route.rest;
        p.attempts.failover_on = route.failover_on;
        p.attempts.attempt_timeout = route.attempt_timeout;
        p.attempts.arm(call.key, now, &mut core.timers);
    }
    crate::guard::note_peers(core, call);
    Some((old_tag, new_tag))
}

/// The call's new callee dialog toward `route`'s trunk and its INVITE: the pristine INVITE's
/// headers and body, the new trunk's numbers, its plugins and signature (the attestation).
/// `None` when no listener serves the trunk or its plugins refuse the call; the call is
/// untouched until the caller takes the result.
fn rebuild<H: Hooks>(
    core: &mut Core<H>,
    call: &Call,
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
    let mut invite = invite_again(&dialog, &mut core.ids, pristine);
    crate::tenants::write_numbers(&mut invite, numbers);
    crate::setup::follow_plugins(&mut dialog, &invite);
    let mut attestation = None;
    if core.hooks.active(call.generation, &route.trunk) {
        let ctx = HookContext {
            call: call.key,
            direction: call.direction,
            leg: route.out_side,
            trunk: &route.trunk,
            source: call.legs.caller.flow.remote,
            transport: call.legs.caller.flow.transport,
        };
        let outcome = run_new_call(
            &mut core.hooks,
            call.generation,
            &ctx,
            &mut invite,
            &mut original,
        );
        match outcome {
            NewCallOutcome::Refuse { .. } => return None,
            NewCallOutcome::Continue { attestation: a } => attestation = a,
        }
        crate::setup::follow_plugins(&mut dialog, &invite);
    }
    if call.direction == Direction::Outbound {
        attestation = crate::identity::sign(core, now, &route.trunk, &mut invite, attestation);
    }
    Some((dialog, invite, attestation))
}
