//! A new call: admitted or refused (draining, limits, routing), both dialogs built, its SDP
//! anchored, the plugins run, the INVITE sent toward the callee, and the call entered in the
//! table. The engine calls [`start`] for an INVITE outside any dialog.

use crate::call::{Direction, LegId, Legs};
use crate::calls::{Call, CallState, Calls, Proceeding};
use crate::config::{ListenerAddr, Side};
use crate::core::{ClientRole, Core};
use crate::failover::Attempts;
use crate::headers::add_agent;
use crate::hooks::{run_new_call_with, HookContext, Hooks, NewCallOutcome, NumberHooks};
use crate::media::Anchor;
use crate::refuse::{self, Load, Refusal};
use crate::route::{self, NoRoute, Route};
use crate::setup::{self, NewCall};
use crate::verify::Begun;
use sluice_media::Role;
use sluice_sip::Message;
use sluice_stir::verify::Outcome;
use sluice_transaction::{response_to, Flow, ServerTxId};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// Admit, route, build and send a new call for the caller's INVITE.
pub fn start<H: Hooks>(
    core: &mut Core<H>,
    calls: &mut Calls,
    now: Instant,
    (tx, msg, flow): (ServerTxId, Message, Flow),
) {
    let active = calls.len().saturating_add(core.verifying.len());
    let key = calls.new_key();
    let Some(admitted) = admit(core, (key, active), now, (tx, &msg, flow)) else {
        return;
    };
    match crate::verify::begin(core, now, key, (tx, msg, flow), admitted) {
        Begun::Ready(input, admitted, outcome) => {
            proceed(core, calls, now, key, (input, admitted), outcome);
        }
        Begun::Parked => {}
    }
}

/// Go on with an admitted call `key`, once its STIR/SHAKEN `outcome` is known (`None`: not
/// verified): refused for it, or built, sent and entered in the table.
pub(crate) fn proceed<H: Hooks>(
    core: &mut Core<H>,
    calls: &mut Calls,
    now: Instant,
    key: u64,
    ((tx, msg, flow), admitted): ((ServerTxId, Message, Flow), Admitted),
    outcome: Option<Outcome>,
) {
    let mut verstat = None;
    if let Some(outcome) = &outcome {
        let trunk = &admitted.route.trunk;
        let verification = core
            .cfg
            .trunks
            .iter()
            .find(|t| &t.name == trunk)
            .and_then(|t| t.verification.as_ref());
        match crate::verify::settle(trunk, verification, outcome) {
            Ok(v) => verstat = Some(v),
            Err((status, reason)) => {
                return refuse(core, now, (tx, &msg), &admitted, status, reason)
            }
        }
    }
    let Some(prepared) = prepare(core, key, now, (tx, msg, flow), admitted, verstat) else {
        return;
    };
    let mut call = launch(core, now, tx, prepared);
    crate::guard::note_peers(core, &mut call);
    calls.insert(call, tx);
}

/// Refuse an admitted call with `status`.
pub(crate) fn refuse<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    (tx, msg): (ServerTxId, &Message),
    admitted: &Admitted,
    status: u16,
    reason: &'static str,
) {
    let r = Refusal::with_reason(status, reason);
    refuse_new_call(
        core,
        now,
        (tx, msg),
        (&admitted.label, admitted.direction),
        r,
    );
}

/// A new call that passed admission.
pub(crate) struct Admitted {
    /// The side it arrived on.
    side: Side,
    pub(crate) direction: Direction,
    /// The trunk its metrics count against.
    label: Arc<str>,
    pub(crate) route: Route,
    /// The listener it leaves from.
    outbound: ListenerAddr,
}

/// A call built and cleared by the plugins, not sent yet.
struct Prepared {
    key: u64,
    admitted: Admitted,
    caller_invite: Message,
    new_call: NewCall,
    media: Option<Anchor>,
    generation: u64,
    attestation: Option<crate::hooks::Attestation>,
    /// The INVITE before the plugins ran, when the route has further trunks.
    pristine: Option<Message>,
}

/// Count a new call's attempt against its trunk (or `unknown`) and direction, and decide
/// whether it is admitted and where it goes; a refused call is answered here.
fn admit<H: Hooks>(
    core: &mut Core<H>,
    (key, active_calls): (u64, usize),
    now: Instant,
    (tx, msg, flow): (ServerTxId, &Message, Flow),
) -> Option<Admitted> {
    core.stats.calls_attempted = core.stats.calls_attempted.saturating_add(1);
    let side = route::side_of(&core.cfg.listeners, flow.local)?;
    let direction = match side {
        Side::Internal => Direction::Outbound,
        Side::External => Direction::Inbound,
    };
    core.origin.get_or_insert(now);
    let hooked = match crate::tenants::provider_numbers(core, key, now, (side, flow, msg)) {
        Ok(h) => h,
        Err(status) => {
            let label = Arc::from("unknown");
            let r = Refusal::with_reason(status, "Plugin Failure");
            refuse_new_call(core, now, (tx, msg), (&label, direction), r);
            return None;
        }
    };
    let route = route::route_new_call(
        &core.cfg,
        &core.trunks,
        (side, flow.remote, hooked.as_ref().unwrap_or(msg)),
        now,
        &mut core.ids,
    );
    let label: Arc<str> = match (&route, side) {
        (Ok(r), _) => r.trunk.clone(),
        (Err(_), Side::Internal) => core
            .cfg
            .outbound_trunk
            .and_then(|i| core.cfg.trunks.get(i))
            .map_or_else(|| Arc::from("unknown"), |t| t.name.clone()),
        (Err(NoRoute::UnknownDid), Side::External) => {
            // The trunk it came from: the unknown DID is counted against it.
            let trunk = core.trunks.by_source(&core.cfg, flow.remote, now);
            trunk
                .and_then(|i| core.cfg.trunks.get(i))
                .map_or_else(|| Arc::from("unknown"), |t| t.name.clone())
        }
        (Err(_), Side::External) => Arc::from("unknown"),
    };
    if let Some(reason) = route.as_ref().err().and_then(|no| no.counted_as()) {
        core.metrics.unrouted(&label, reason);
    }
    core.metrics.call_attempted(&label, direction);
    let load = Load {
        draining: core.draining.then(|| retry_after(core.drain_until, now)),
        active_calls,
        max_calls: core.cfg.max_calls,
        min_session_expires: core.cfg.session.min,
    };
    let admitted = refuse::admit(msg, load).and_then(|()| {
        let route = route.map_err(|no| refusal(no, flow, &label))?;
        let (side, peer) = (route.out_side, &route.peer);
        let out = route::listener_for(&core.cfg.listeners, side, peer.transport, peer.addr)
            .ok_or_else(|| Refusal::with_reason(503, "No Route"))?;
        Ok((route, out))
    });
    match admitted {
        Ok((route, outbound)) => Some(Admitted {
            side,
            direction,
            label,
            route,
            outbound,
        }),
        Err(r) => {
            refuse_new_call(core, now, (tx, msg), (&label, direction), r);
            None
        }
    }
}

/// The answer to a call without a route.
fn refusal(no: NoRoute, flow: Flow, trunk: &str) -> Refusal {
    match no {
        NoRoute::UnknownSource => {
            warn!(from = %flow.remote, "INVITE from an address that is no trunk");
            Refusal::with_reason(403, "Forbidden")
        }
        NoRoute::Unusable("not registered") => Refusal::with_reason(480, "Temporarily Unavailable"),
        NoRoute::UnknownDid => {
            debug!(trunk, "called number in no tenant's DID pool");
            Refusal::with_reason(404, "Not Found")
        }
        NoRoute::NoDialledRoute => Refusal::with_reason(404, "No Route"),
        NoRoute::NoTenant => {
            warn!(from = %flow.remote, "PBX call that belongs to no tenant");
            Refusal::with_reason(403, "Forbidden")
        }
        NoRoute::CallerId => Refusal::with_reason(403, "Caller ID Not Allowed"),
        NoRoute::Unusable(why) => {
            warn!(trunk, why, "call refused: the trunk cannot take it");
            Refusal::with_reason(503, "Service Unavailable")
        }
    }
}

/// Both dialogs and the INVITE toward the callee, its SDP anchored, the plugins run; a call
/// refused on the way (SDP, a plugin) is answered here.
fn prepare<H: Hooks>(
    core: &mut Core<H>,
    key: u64,
    now: Instant,
    (tx, mut msg, flow): (ServerTxId, Message, Flow),
    admitted: Admitted,
    verstat: Option<&'static str>,
) -> Option<Prepared> {
    let Admitted {
        side,
        direction,
        ref label,
        ref route,
        outbound,
    } = admitted;
    let inbound = ListenerAddr {
        side,
        transport: flow.transport,
        addr: flow.local,
    };
    let agent = &core.cfg.user_agent;
    let public = core.cfg.public_address_of(&route.trunk);
    let mut new_call = setup::new_call(
        &msg,
        flow,
        inbound,
        &route.peer,
        outbound,
        &mut core.ids,
        (agent, public),
    );
    if let Some(host) = &route.uri_host {
        setup::retarget(&mut new_call, host);
    }
    if let Some(numbers) = &route.numbers {
        crate::tenants::write_numbers(&mut new_call.invite, numbers);
        setup::follow_plugins(&mut new_call.callee, &new_call.invite);
    }
    crate::session_timer::offer(&mut new_call.invite, core.cfg.session);
    if let Some(v) = verstat {
        crate::verify::mark(&mut new_call.invite, v);
    }
    let peers = [flow.remote.ip(), route.peer.addr.ip()];
    let mut media = Anchor::new(key, direction, peers, (&route.media, route.srtp.as_ref()));
    let generation = core.hooks.current();
    let cleared = clear(
        core,
        now,
        (key, direction, route, flow),
        generation,
        &mut media,
        (&mut new_call, &mut msg),
    );
    let (attestation, pristine) = match cleared {
        Ok(a) => a,
        Err(r) => {
            core.close_media(key, &route.trunk, media);
            refuse_new_call(core, now, (tx, &msg), (label, direction), r);
            return None;
        }
    };
    Some(Prepared {
        key,
        admitted,
        caller_invite: msg,
        new_call,
        media,
        generation,
        attestation,
        pristine,
    })
}

/// A new call's INVITE made ready to leave: its SDP anchored, the plugins run over it, its
/// size checked for UDP. The attestation the plugins chose and, when the route has further
/// trunks, the INVITE as it was before the plugins ran; or why the call is refused.
fn clear<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    (key, direction, route, flow): (u64, Direction, &Route, Flow),
    generation: u64,
    media: &mut Option<Anchor>,
    (new_call, msg): (&mut NewCall, &mut Message),
) -> Result<(Option<crate::hooks::Attestation>, Option<Message>), Refusal> {
    let offer = (LegId::Caller, Role::Offer);
    if core
        .rewrite_sdp(key, media, false, offer, &mut new_call.invite)
        .is_err()
    {
        return Err(Refusal::with_reason(488, "Not Acceptable Here"));
    }
    let pristine = route.next.is_some().then(|| new_call.invite.clone());
    let mut attestation = None;
    if core.hooks.active(generation, &route.trunk) {
        let ctx = HookContext {
            call: key,
            direction,
            leg: route.out_side,
            trunk: &route.trunk,
            tenant: route.tenant.as_deref(),
            source: flow.remote,
            transport: flow.transport,
        };
        let invite = &mut new_call.invite;
        let numbers = if route.tenant.is_some() && direction == Direction::Inbound {
            NumberHooks::RanBeforeRouting
        } else {
            NumberHooks::Run
        };
        match run_new_call_with(&mut core.hooks, generation, &ctx, (invite, msg), numbers) {
            NewCallOutcome::Refuse { status, reason } => {
                debug!(call = key, status, "refused by a plugin");
                return Err(Refusal::with_reason(status, reason));
            }
            NewCallOutcome::Continue { attestation: a } => attestation = a,
        }
        setup::follow_plugins(&mut new_call.callee, &new_call.invite);
    }
    if direction == Direction::Outbound {
        let invite = &mut new_call.invite;
        attestation = crate::identity::sign(core, now, &route.trunk, invite, attestation);
    }
    let limits = (route.peer.large_over_tcp, core.cfg.max_udp_bytes);
    let (callee, invite) = (&mut new_call.callee, &mut new_call.invite);
    if let Err(len) = setup::fit_for_udp(&core.cfg.listeners, limits, callee, invite) {
        warn!(
            call = key,
            len, "INVITE too large for UDP, refused with 513"
        );
        return Err(Refusal::with_reason(513, "Message Too Large"));
    }
    Ok((attestation, pristine))
}

/// Send the INVITE toward the callee and make the call.
fn launch<H: Hooks>(core: &mut Core<H>, now: Instant, tx: ServerTxId, p: Prepared) -> Call {
    let Prepared {
        key,
        admitted,
        caller_invite,
        new_call,
        media,
        generation,
        attestation,
        pristine,
    } = p;
    let Admitted {
        direction,
        label,
        route,
        ..
    } = admitted;
    let NewCall {
        caller,
        callee,
        invite,
    } = new_call;
    core.hooks.pin(generation);
    let prack = crate::prack::Reliability::for_caller(&caller_invite, core.ids.first_cseq());
    let session_timers = crate::session_timer::SessionTimers::for_caller(&caller_invite);
    debug!(call = key, ?direction, trunk = %route.trunk, "new call");
    let sent_sdp = Legs {
        caller: None,
        callee: (!invite.body.is_empty()).then(|| invite.body.clone()),
    };
    let uac = core.tx.send_request(now, invite, callee.flow);
    core.clients.insert(uac, ClientRole::Invite { call: key });
    core.metrics.call_started(&label, direction);
    let mut attempts = Box::new(Attempts {
        rest: route.rest,
        failover_on: route.failover_on,
        deadline: route
            .failover_budget
            .map(|b| sluice_transaction::after(now, b)),
        challenge: None,
        attempt_timeout: route.attempt_timeout,
        attempt_deadline: None,
        next_trunks: route.next.map(|mut n| {
            n.pristine = pristine;
            Box::new(n)
        }),
    });
    attempts.arm(key, now, &mut core.timers);
    let to = (direction == Direction::Outbound).then_some(callee.flow.remote);
    core.trunks.call_started(&route.trunk, to);
    Call {
        key,
        direction,
        trunk: route.trunk,
        tenant: route.tenant,
        generation,
        attestation,
        state: CallState::Proceeding(Proceeding {
            uas: tx,
            invite: caller_invite,
            uac,
            progressed: false,
            attempts,
        }),
        legs: Legs { caller, callee },
        relay: None,
        started: now,
        answered_at: None,
        pending: 0,
        media,
        final_status: None,
        ends_at: None,
        peers: Vec::new(),
        prack,
        session_timers,
        sent_sdp,
        transfer: None,
    }
}

/// What a call refused during a drain is told to wait: the drain's remaining time (at least a
/// second; 30 s when the drain has no deadline).
fn retry_after(until: Option<Instant>, now: Instant) -> u64 {
    until.map_or(30, |u| {
        let left = u.saturating_duration_since(now);
        left.as_secs()
            .saturating_add(u64::from(left.subsec_nanos() > 0))
            .max(1)
    })
}

/// Refuse a new call's INVITE (server transaction and request) with `r`, counted against its
/// trunk and direction.
fn refuse_new_call<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    (tx, msg): (ServerTxId, &Message),
    (trunk, direction): (&str, Direction),
    r: Refusal,
) {
    core.stats.calls_failed = core.stats.calls_failed.saturating_add(1);
    core.metrics.call_failed(trunk, direction, r.status);
    let mut resp = response_to(msg, r.status, &r.reason, Some(&core.ids.tag()));
    if let Some((name, value)) = r.header {
        resp.headers.push(name, value);
    }
    add_agent(&mut resp, &core.cfg.user_agent);
    core.respond(now, tx, &resp);
}
