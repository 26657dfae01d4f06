//! The engine's resolved view of the configuration: addresses, not host names.

use sluice_transaction::{TimerConfig, Transport};
use std::net::SocketAddr;
use std::sync::Arc;

/// Which side of Sluice a listener or leg is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Toward the PBX.
    Internal,
    /// Toward the trunk providers.
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerAddr {
    pub side: Side,
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A party Sluice sends requests to: the PBX or a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: Arc<str>,
    /// Host part written in Request-URI and To toward this peer.
    pub host: Arc<str>,
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub timers: TimerConfig,
    pub listeners: Vec<ListenerAddr>,
    pub pbx: PeerConfig,
    pub trunks: Vec<PeerConfig>,
    /// Index into `trunks` that calls from the PBX go to.
    pub outbound_trunk: usize,
    pub max_calls: usize,
    pub user_agent: String,
}
