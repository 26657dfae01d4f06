//! Routing with tenants: the glue between a new call's INVITE and the routing table of
//! `sluice-routing`.
//!
//! - A trunk's call: the called DID is read where the trunk carries it (Request-URI, To, or a
//!   header), normalised in the trunk's country, and looked up in the pools on that trunk;
//!   the call goes to the owning tenant's PBX with its numbers written as that PBX expects.
//!   A DID in no pool gets 404.
//! - A PBX call: attributed to a tenant (source address, then From or Request-URI domain), its
//!   dialled number normalised in the tenant's country (an emergency number as dialled), matched
//!   against the tenant's ordered routes, and sent to the first trunk of the route that can
//!   take it and on which its caller ID is allowed (or replaced by the tenant's default).
//!
//! The numbers chosen here are written on the INVITE before the plugins run
//! ([`write_numbers`]): a brand plugin's number hook still has the last word on the wire.

use crate::call::Direction;
use crate::config::{CalledFrom, EngineConfig, Side, TenantRouting, TrunkConfig};
use crate::core::Core;
use crate::hooks::{run_number_hooks, HookContext, Hooks};
use crate::ids::Ids;
use crate::next_trunk::NextTrunks;
use crate::route::{self, Calling, NoRoute, Numbers, Route};
use crate::trunks::Trunks;
use sluice_routing::{CallerId, Format, Numbering};
use sluice_sip::{edit, HeaderName, Message, NameAddr, Uri};
use sluice_transaction::Flow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Where a call from trunk `t` goes: the PBX of the tenant owning its called DID.
pub fn inbound(tr: &TenantRouting, t: &TrunkConfig, msg: &Message) -> Result<Route, NoRoute> {
    let numbering = &t.numbers.numbering;
    let called = t
        .numbers
        .called_from
        .iter()
        .find_map(|from| called_number(msg, from).and_then(|raw| numbering.normalise(raw)))
        .ok_or(NoRoute::UnknownDid)?;
    let tenant = tr
        .table
        .inbound(&t.name, &called)
        .ok_or(NoRoute::UnknownDid)?;
    let (Some(spec), Some(pbx)) = (tr.table.tenants().get(tenant), tr.pbx.get(tenant)) else {
        return Err(NoRoute::UnknownDid);
    };
    let format = spec.pbx_format;
    let mut r = route::to_peer(t, pbx.clone());
    r.tenant = Some(spec.name.clone());
    r.numbers = Some(Numbers {
        called: called.written(format),
        calling: Calling::Each(*numbering, format),
    });
    Ok(r)
}

/// The domains a PBX's call carries (its From and Request-URI hosts), as the tenants' domains
/// are kept: canonical (an IP address however it is written).
fn pbx_domains(msg: &Message) -> Vec<String> {
    let from_host = msg
        .header(&HeaderName::From)
        .and_then(NameAddr::parse)
        .and_then(|na| Uri::parse(na.uri))
        .map(|u| u.host);
    let ruri_host = msg.request_uri().and_then(Uri::parse).map(|u| u.host);
    from_host
        .into_iter()
        .chain(ruri_host)
        .map(sluice_sip::fields::canonical_host)
        .collect()
}

/// Where a PBX call goes: its tenant's first matching route, to the first trunk of it that
/// can take the call with the caller ID it may present there.
pub fn outbound(
    cfg: &EngineConfig,
    tr: &Arc<TenantRouting>,
    trunks: &Trunks,
    (source, msg): (SocketAddr, &Message),
    now: Instant,
    ids: &mut Ids,
) -> Result<Route, NoRoute> {
    let table = &tr.table;
    let domains = pbx_domains(msg);
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let tenant = table
        .attribute(source.ip(), &domains)
        .ok_or(NoRoute::NoTenant)?;
    let spec = table.tenants().get(tenant).ok_or(NoRoute::NoTenant)?;
    let dialled = msg
        .request_uri()
        .and_then(edit::uri_number)
        .map(user_number)
        .and_then(|raw| table.dialled(tenant, raw))
        .ok_or(NoRoute::NoDialledRoute)?;
    let out = table
        .outbound(tenant, &dialled)
        .ok_or(NoRoute::NoDialledRoute)?;
    let calling = calling_number(msg).and_then(|raw| spec.numbering.normalise(raw));
    let mut refusal = NoRoute::Unusable("no trunk of the route can take the call");
    for (k, name) in out.trunks.iter().enumerate() {
        let Some(i) = cfg.trunks.iter().position(|t| t.name == *name) else {
            continue;
        };
        let caller_id = table.caller_id(tenant, name, calling.as_ref(), out.emergency);
        if caller_id == CallerId::Refuse {
            refusal = NoRoute::CallerId;
            continue;
        }
        let mut r = match route::to_trunk(cfg, trunks, i, now, ids) {
            Ok(r) => r,
            Err(e) => {
                if refusal != NoRoute::CallerId {
                    refusal = e;
                }
                continue;
            }
        };
        let format = cfg
            .trunks
            .get(i)
            .map(|t| t.numbers.format)
            .unwrap_or_default();
        r.tenant = Some(spec.name.clone());
        r.numbers = Some(Numbers {
            called: out.called.written(format),
            calling: presented(&caller_id, spec.numbering, format),
        });
        let rest: VecDeque<Arc<str>> = out
            .trunks
            .iter()
            .skip(k.saturating_add(1))
            .cloned()
            .collect();
        r.next = (!rest.is_empty()).then(|| NextTrunks {
            trunks: rest,
            routing: Arc::clone(tr),
            tenant,
            called: out.called.clone(),
            calling: calling.clone(),
            emergency: out.emergency,
            pristine: None,
        });
        return Ok(r);
    }
    Err(refusal)
}

/// With tenants, a trunk's call: its INVITE with the numbers the trunk's number hook made of
/// them (the brand knows how its provider writes numbers), which routing then reads; `None`
/// when nothing is to run. `Err`: a fail-closed plugin failed (the status to refuse with).
pub(crate) fn provider_numbers<H: Hooks>(
    core: &mut Core<H>,
    key: u64,
    now: Instant,
    (side, flow, msg): (Side, Flow, &Message),
) -> Result<Option<Message>, u16> {
    if side != Side::External || core.cfg.tenants.is_none() {
        return Ok(None);
    }
    let Some(t) = core.trunks.by_source(&core.cfg, flow.remote, now) else {
        return Ok(None);
    };
    let Some(trunk) = core.cfg.trunks.get(t).map(|t| t.name.clone()) else {
        return Ok(None);
    };
    let generation = core.hooks.current();
    if !core.hooks.active(generation, &trunk) {
        return Ok(None);
    }
    let ctx = HookContext {
        call: key,
        direction: Direction::Inbound,
        leg: Side::Internal,
        trunk: &trunk,
        // Not known yet: the numbers these hooks write are what finds the tenant.
        tenant: None,
        source: flow.remote,
        transport: flow.transport,
    };
    let mut copy = msg.clone();
    run_number_hooks(&mut core.hooks, generation, &ctx, &mut copy)?;
    Ok(Some(copy))
}

/// The calling numbers a call presents on a trunk, given its caller-ID verdict there.
pub(crate) fn presented(verdict: &CallerId, numbering: Numbering, format: Format) -> Calling {
    match verdict {
        CallerId::Replace(n) => Calling::All(n.written(format)),
        CallerId::Keep | CallerId::Refuse => Calling::Each(numbering, format),
    }
}

/// The number part of a URI's user (user parameters such as `;phone-context` cut).
fn user_number(user: &str) -> &str {
    user.split(';').next().unwrap_or(user)
}

/// The called number where `from` says the trunk carries it.
fn called_number<'m>(msg: &'m Message, from: &CalledFrom) -> Option<&'m str> {
    let uri = match from {
        CalledFrom::RequestUri => msg.request_uri()?,
        CalledFrom::To => NameAddr::parse(msg.header(&HeaderName::To)?)?.uri,
        CalledFrom::Header(name) => {
            let v = msg.header(name)?;
            NameAddr::parse(v).map_or(v.trim(), |na| na.uri)
        }
    };
    edit::uri_number(uri).map(user_number)
}

/// The calling number: the user of From.
fn calling_number(msg: &Message) -> Option<&str> {
    let from = NameAddr::parse(msg.header(&HeaderName::From)?)?;
    edit::uri_number(from.uri).map(user_number)
}

/// Write a routed call's numbers on its INVITE toward the callee: the called number in the
/// Request-URI and To, the calling number in From and the identity headers.
pub fn write_numbers(invite: &mut Message, numbers: &Numbers) {
    edit::normalize_numbers(invite, |kind, n| match (kind, &numbers.calling) {
        (edit::NumberKind::Called, _) => Some(numbers.called.clone()),
        (edit::NumberKind::Calling, Calling::All(n)) => Some(n.clone()),
        (edit::NumberKind::Calling, Calling::Each(plan, format)) => {
            plan.normalise(user_number(n)).map(|n| n.written(*format))
        }
    });
}
