//! Where a new call goes, and which of Sluice's listeners serves a peer.
//!
//! Today's rule is static: a call from the PBX goes to the configured outbound trunk; a call
//! from a trunk (matched by its source IP) goes to the PBX.

use crate::call::Direction;
use crate::config::{EngineConfig, ListenerAddr, PeerConfig, PeerMedia, Side};
use sluice_transaction::Transport;
use std::net::SocketAddr;
use std::sync::Arc;

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

/// Where a new call goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub direction: Direction,
    /// The trunk the call uses (where it goes, or where it came from).
    pub trunk: Arc<str>,
    /// The peer the call is sent to.
    pub peer: PeerConfig,
    /// The side of Sluice the call leaves on.
    pub out_side: Side,
    /// What the trunk's configuration says of media.
    pub media: PeerMedia,
}

/// The route of a call that arrived on `side` from `source`; `None` when it has none (a call
/// from an address that is no trunk's).
pub fn route_new_call(cfg: &EngineConfig, side: Side, source: SocketAddr) -> Option<Route> {
    match side {
        Side::Internal => cfg.trunks.get(cfg.outbound_trunk).map(|t| Route {
            direction: Direction::Outbound,
            trunk: t.name.clone(),
            peer: t.clone(),
            out_side: Side::External,
            media: t.media.clone(),
        }),
        Side::External => cfg
            .trunks
            .iter()
            .find(|t| t.addr.ip() == source.ip())
            .map(|t| Route {
                direction: Direction::Inbound,
                trunk: t.name.clone(),
                peer: cfg.pbx.clone(),
                out_side: Side::Internal,
                media: t.media.clone(),
            }),
    }
}
