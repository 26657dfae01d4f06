//! The engine's resolved view of the configuration: addresses, not host names.

use sluice_media::{Latching, Timeouts};
use sluice_transaction::{TimerConfig, Transport};
use std::net::{IpAddr, SocketAddr};
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
    pub media: PeerMedia,
}

/// What Sluice does with the media of calls to and from a peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PeerMedia {
    /// Sluice relays the RTP and rewrites the SDP; `codecs` (encoding names, in order of
    /// preference) filters offers sent to the peer.
    #[default]
    Anchor,
    AnchorWithCodecs(Arc<[String]>),
    /// The SDP crosses as it is and media flows between the endpoints directly.
    SignallingOnly,
}

impl PeerMedia {
    pub fn anchored(&self) -> bool {
        !matches!(self, PeerMedia::SignallingOnly)
    }

    pub fn codecs(&self) -> Option<Arc<[String]>> {
        match self {
            PeerMedia::AnchorWithCodecs(c) => Some(c.clone()),
            _ => None,
        }
    }
}

/// One side's media addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSideConfig {
    /// Where the relay binds its sockets.
    pub bind: IpAddr,
    /// The address written into SDP for that side (a public address behind 1:1 NAT).
    pub advertise: IpAddr,
    /// The RTP port range, both ends included (RTP even, RTCP odd).
    pub first_port: u16,
    pub last_port: u16,
}

/// Media anchoring: the sides' addresses and ports, and how streams are relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaConfig {
    pub internal: MediaSideConfig,
    pub external: MediaSideConfig,
    pub latching: Latching,
    /// Silence that ends an answered call, and while it is on hold.
    pub timeouts: Timeouts,
}

impl MediaConfig {
    pub fn side(&self, side: Side) -> &MediaSideConfig {
        match side {
            Side::Internal => &self.internal,
            Side::External => &self.external,
        }
    }
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
    /// `None`: no media anchoring at all (every SDP crosses as it is).
    pub media: Option<MediaConfig>,
}
