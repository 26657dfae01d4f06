//! Where a new call goes, and which of Sluice's listeners serves a peer.
//!
//! Without tenants, a call from the PBX goes to the configured outbound trunk, to its
//! destinations in order of priority and weight (or to its gateway's registration); a call
//! from a trunk (matched by its addresses, or by where its gateway registered from) goes to
//! the PBX. With tenants ([`crate::tenants`]), a trunk's call goes to the PBX of the tenant
//! owning the called DID, and a PBX call takes its tenant's first matching route to the first
//! trunk of it that can take the call. A trunk that is down, at its call limit, or without a
//! registered gateway takes no call.

use crate::call::Direction;
use crate::config::{
    Destination, EngineConfig, ListenerAddr, PeerConfig, PeerMedia, Side, TrunkConfig,
};
use crate::ids::Ids;
use crate::trunks::Trunks;
use sluice_sip::Message;
use sluice_transaction::Transport;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The side a local address (a listener) is on.
pub fn side_of(listeners: &[ListenerAddr], local: SocketAddr) -> Option<Side> {
    listeners.iter().find(|l| l.addr == local).map(|l| l.side)
}

/// The listener to send from toward a peer: same side, same transport, same IP family.
pub fn listener_for(
    listeners: &[ListenerAddr],
    side: Side,
    transport: Transport,
    peer: SocketAddr,
) -> Option<ListenerAddr> {
    listeners
        .iter()
        .find(|l| l.side == side && l.transport == transport && l.addr.is_ipv4() == peer.is_ipv4())
        .copied()
}

/// Whether a TCP listener shares `addr` (a UDP listener's), for a request too large for UDP.
pub fn tcp_beside(listeners: &[ListenerAddr], addr: SocketAddr) -> bool {
    listeners
        .iter()
        .any(|l| l.transport == Transport::Tcp && l.addr == addr)
}

/// Where a new call goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub direction: Direction,
    /// The trunk the call uses (where it goes, or where it came from).
    pub trunk: Arc<str>,
    /// The peer the call is sent to first.
    pub peer: PeerConfig,
    /// The side of Sluice the call leaves on.
    pub out_side: Side,
    /// What the trunk's configuration says of media.
    pub media: PeerMedia,
    /// SRTP toward the trunk.
    pub srtp: Option<crate::config::TrunkSrtp>,
    /// Further destinations, in the order they are tried (failover).
    pub rest: VecDeque<PeerConfig>,
    pub failover_on: Vec<u16>,
    pub failover_budget: Option<Duration>,
    /// A silent destination is given up after this.
    pub attempt_timeout: Option<Duration>,
    /// The host:port the Request-URI names, when it is not the peer's host (a gateway's
    /// registered Contact).
    pub uri_host: Option<String>,
    /// With tenants: the tenant, and the numbers written on the INVITE toward the callee.
    pub tenant: Option<Arc<str>>,
    pub numbers: Option<Numbers>,
    /// With tenants: the route's further trunks (failover once this one's destinations fail).
    pub next: Option<crate::next_trunk::NextTrunks>,
}

/// The numbers a routed call carries toward its callee, as that side writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbers {
    /// Request-URI and To.
    pub called: String,
    /// From and the identity headers.
    pub calling: Calling,
}

/// How a routed call's calling numbers are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calling {
    /// Each one (From, P-Asserted-Identity…) read in this plan and written in this format.
    Each(sluice_routing::Numbering, sluice_routing::Format),
    /// Every one replaced by this (a tenant's default caller ID).
    All(String),
}

/// Why a call has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// From an address that is no trunk's (403; strangers are normally answered before
    /// any state, by `guard::stranger_call`).
    UnknownSource,
    /// The trunk is down or at its limit (503), or its gateway is not registered (480).
    Unusable(&'static str),
    /// With tenants: the called number is in no tenant's pool on the trunk (404).
    UnknownDid,
    /// With tenants: a PBX call that belongs to no tenant (403).
    NoTenant,
    /// With tenants: no route of the tenant matches the dialled number (404).
    NoDialledRoute,
    /// With tenants: the caller ID is not the tenant's and the tenant refuses such calls (403).
    CallerId,
}

impl NoRoute {
    /// The `reason` label of `sluice_calls_unrouted_total` (tenant routing's refusals).
    pub fn counted_as(self) -> Option<&'static str> {
        match self {
            NoRoute::UnknownDid => Some("unknown-did"),
            NoRoute::NoTenant => Some("no-tenant"),
            NoRoute::NoDialledRoute => Some("no-route"),
            NoRoute::CallerId => Some("caller-id"),
            NoRoute::UnknownSource | NoRoute::Unusable(_) => None,
        }
    }
}

/// The route of a call (its INVITE `msg`) that arrived on `side` from `source`.
pub fn route_new_call(
    cfg: &EngineConfig,
    trunks: &Trunks,
    (side, source, msg): (Side, SocketAddr, &Message),
    now: Instant,
    ids: &mut Ids,
) -> Result<Route, NoRoute> {
    match side {
        Side::Internal => match &cfg.tenants {
            Some(t) => crate::tenants::outbound(cfg, t, trunks, (source, msg), now, ids),
            None => {
                let t = cfg
                    .outbound_trunk
                    .ok_or(NoRoute::Unusable("no outbound trunk"))?;
                to_trunk(cfg, trunks, t, now, ids)
            }
        },
        Side::External => {
            let i = trunks
                .by_source(cfg, source, now)
                .ok_or(NoRoute::UnknownSource)?;
            let t = cfg.trunks.get(i).ok_or(NoRoute::UnknownSource)?;
            if let Some(a) = trunks.get(&t.name) {
                if t.max_calls > 0 && a.active_calls >= t.max_calls {
                    return Err(NoRoute::Unusable("at its call limit"));
                }
            }
            from_trunk(cfg, t, msg)
        }
    }
}

/// Where a call (its INVITE `msg`) from trunk `t` goes: the PBX, or with tenants the PBX of
/// the tenant owning the called DID. A call placed by Sluice as if it came from the trunk (a
/// transfer Sluice carries out) goes the same way.
pub fn from_trunk(cfg: &EngineConfig, t: &TrunkConfig, msg: &Message) -> Result<Route, NoRoute> {
    match &cfg.tenants {
        Some(tenants) => crate::tenants::inbound(tenants, t, msg),
        None => Ok(to_pbx(cfg, t)),
    }
}

/// A call from trunk `t` to `pbx`.
pub(crate) fn to_peer(t: &TrunkConfig, pbx: PeerConfig) -> Route {
    Route {
        direction: Direction::Inbound,
        trunk: t.name.clone(),
        peer: pbx,
        out_side: Side::Internal,
        media: t.media.clone(),
        srtp: t.srtp.clone(),
        rest: VecDeque::new(),
        failover_on: Vec::new(),
        failover_budget: None,
        attempt_timeout: None,
        uri_host: None,
        tenant: None,
        numbers: None,
        next: None,
    }
}

/// A call from trunk `t` to the (only) PBX.
fn to_pbx(cfg: &EngineConfig, t: &TrunkConfig) -> Route {
    to_peer(t, cfg.pbx.clone())
}

/// A call from the PBX to trunk `trunk` (index): to its destinations that are up (or the
/// gateway registered to it).
pub(crate) fn to_trunk(
    cfg: &EngineConfig,
    trunks: &Trunks,
    trunk: usize,
    now: Instant,
    ids: &mut Ids,
) -> Result<Route, NoRoute> {
    let t = cfg
        .trunks
        .get(trunk)
        .ok_or(NoRoute::Unusable("no outbound trunk"))?;
    let agent = trunks.get(&t.name);
    if let Some(a) = agent {
        a.usable(now).map_err(NoRoute::Unusable)?;
    }
    let mut uri_host = None;
    let mut order: VecDeque<PeerConfig> = match agent
        .and_then(|a| a.registrar.as_ref())
        .and_then(|r| r.target(now))
    {
        // A gateway registered to Sluice: its binding, reached where it registered from (it
        // may be behind NAT).
        Some(b) => {
            uri_host = sluice_sip::Uri::parse(&b.contact).map(|u| match u.port {
                Some(p) => format!("{}:{p}", u.host),
                None => u.host.to_string(),
            });
            VecDeque::from([PeerConfig {
                name: t.name.clone(),
                host: t.host.clone(),
                transport: t.transport,
                addr: b.source,
                media: t.media.clone(),
                large_over_tcp: false,
                forward_history: true,
                sips: false,
            }])
        }
        None => ordered(t, ids)
            .into_iter()
            .filter(|p| agent.is_none_or(|a| a.destination_up(p.addr)))
            .collect(),
    };
    let peer = order
        .pop_front()
        .ok_or(NoRoute::Unusable("no destination"))?;
    Ok(Route {
        direction: Direction::Outbound,
        trunk: t.name.clone(),
        peer,
        out_side: Side::External,
        media: t.media.clone(),
        srtp: t.srtp.clone(),
        rest: order,
        failover_on: t.failover_on.clone(),
        failover_budget: Some(t.failover_budget),
        attempt_timeout: Some(t.attempt_timeout),
        uri_host,
        tenant: None,
        numbers: None,
        next: None,
    })
}

/// A trunk's destinations in the order a call tries them: by priority, and among equal
/// priorities in a random order weighted by their weights.
pub fn ordered(t: &TrunkConfig, ids: &mut Ids) -> VecDeque<PeerConfig> {
    let mut by_priority: Vec<&Destination> = t.destinations.iter().collect();
    by_priority.sort_by_key(|d| (d.priority, d.rank));
    let mut out = VecDeque::with_capacity(by_priority.len());
    let mut group: Vec<&Destination> = Vec::new();
    let mut flush = |group: &mut Vec<&Destination>, out: &mut VecDeque<PeerConfig>| {
        while !group.is_empty() {
            let total: u32 = group.iter().map(|d| u32::from(d.weight.max(1))).sum();
            let mut pick = ids.below(total);
            let mut chosen = 0;
            for (i, d) in group.iter().enumerate() {
                let w = u32::from(d.weight.max(1));
                if pick < w {
                    chosen = i;
                    break;
                }
                pick = pick.saturating_sub(w);
            }
            let d = group.remove(chosen.min(group.len().saturating_sub(1)));
            out.push_back(t.peer(d));
        }
    };
    for d in by_priority {
        if group
            .first()
            .is_some_and(|g| (g.priority, g.rank) != (d.priority, d.rank))
        {
            flush(&mut group, &mut out);
        }
        group.push(d);
    }
    flush(&mut group, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(at: &str, priority: u16, weight: u16) -> Destination {
        Destination {
            addr: at.parse().unwrap(),
            transport: Transport::Udp,
            priority,
            rank: 0,
            weight,
        }
    }

    #[test]
    fn destinations_by_priority_then_weight() {
        let mut t = TrunkConfig::simple(
            "t",
            "t.example",
            Transport::Udp,
            "10.0.0.9:5060".parse().unwrap(),
        );
        t.destinations = vec![
            dest("10.0.0.3:5060", 20, 1),
            dest("10.0.0.1:5060", 10, 3),
            dest("10.0.0.2:5060", 10, 1),
        ];
        let mut ids = Ids::new(42);
        let mut first_is_heavy = 0;
        for _ in 0..1000 {
            let order: Vec<String> = ordered(&t, &mut ids)
                .iter()
                .map(|p| p.addr.to_string())
                .collect();
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], "10.0.0.3:5060", "priority 20 comes last");
            if order[0] == "10.0.0.1:5060" {
                first_is_heavy += 1;
            }
        }
        // Weights 3:1: the heavier destination first in 75% of calls (±5 points).
        assert!((700..=800).contains(&first_is_heavy), "{first_is_heavy}");
    }
}
