//! The engine's resolved view of the configuration: addresses, not host names.

use ipnet::IpNet;
use sluice_auth::Credentials;
use sluice_media::{Latching, Timeouts};
use sluice_routing::{Format, Numbering, RoutingTable};
use sluice_transaction::{TimerConfig, Transport};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

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
    /// The peer takes TCP where it takes UDP: a new call's INVITE too large for UDP (RFC 3261
    /// §18.1.1) goes over TCP instead.
    pub large_over_tcp: bool,
    /// A new call's `Diversion` and `History-Info` (a forwarded call's history, which carriers
    /// check for caller-ID policy) reach this peer, rehosted; `false` removes them.
    pub forward_history: bool,
    /// Requests to this peer name it with `sips:` URIs (Request-URI, To, Sluice's Contact)
    /// instead of `sip:` with `transport=tls`.
    pub sips: bool,
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

/// A trunk that speaks SRTP: how strictly, and with which suites in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkSrtp {
    pub mode: sluice_media::SrtpMode,
    pub suites: Arc<[sluice_media::Suite]>,
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

/// How a trunk is recognised and authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrunkKind {
    /// By source address; nobody registers.
    #[default]
    Ip,
    /// Sluice registers to the provider.
    Register,
    /// Credentials answer the provider's challenges; no REGISTER.
    Credentials,
    /// A gateway registers to Sluice; calls go to its binding.
    AcceptRegister,
}

impl TrunkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkKind::Ip => "ip",
            TrunkKind::Register => "register",
            TrunkKind::Credentials => "credentials",
            TrunkKind::AcceptRegister => "accept-register",
        }
    }
}

/// A place calls to a trunk may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// Lower first; weighted among equals.
    pub priority: u16,
    /// Within a priority, lower first (the SRV priority of a name's targets; 0 otherwise).
    pub rank: u16,
    pub weight: u16,
}

/// A trunk, resolved: its destinations and every option the engine applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkConfig {
    pub name: Arc<str>,
    pub kind: TrunkKind,
    /// Host part written in Request-URI and To toward the trunk (its domain).
    pub host: Arc<str>,
    /// The trunk's transport (its destinations may name their own).
    pub transport: Transport,
    pub destinations: Vec<Destination>,
    /// Addresses the trunk sends from besides its destinations (associated IPs, CIDR).
    pub sources: Vec<IpNet>,
    /// Match the source port too.
    pub verify_port: bool,
    pub credentials: Option<Credentials>,
    /// The address-of-record domain and realm.
    pub domain: Arc<str>,
    pub register_expires: u32,
    /// Statuses besides 408, 503 and transport errors that try the next destination.
    pub failover_on: Vec<u16>,
    pub failover_budget: Duration,
    /// A destination that sends nothing (not even 100 Trying) for this long is given up for
    /// the next one.
    pub attempt_timeout: Duration,
    /// OPTIONS keep-alive interval, and whether only a 2xx counts.
    pub keepalive: Option<(Duration, bool)>,
    /// Calls at once, both directions; 0: no limit.
    pub max_calls: usize,
    /// The longest an answered call may last.
    pub max_call_duration: Option<Duration>,
    /// Every request goes here instead of the destination.
    pub outbound_proxy: Option<SocketAddr>,
    /// Written in Contact toward the trunk instead of the listener's address (Sluice behind
    /// NAT), and in Via when `via_public`.
    pub public_address: Option<IpAddr>,
    pub via_public: bool,
    pub media: PeerMedia,
    /// SRTP toward the trunk (anchored media only), terminated by Sluice; `None`: the SDP's
    /// own keys, if any, cross end to end.
    pub srtp: Option<TrunkSrtp>,
    /// See [`PeerConfig::large_over_tcp`].
    pub large_over_tcp: bool,
    /// What a REFER inside this trunk's calls gets (see [`crate::transfer`]).
    pub transfer: Transfer,
    /// See [`PeerConfig::forward_history`].
    pub forward_history: bool,
    /// See [`PeerConfig::sips`].
    pub sips: bool,
    /// STIR/SHAKEN signing of the calls sent to this trunk.
    pub identity: Option<crate::identity::Signing>,
    /// STIR/SHAKEN verification of the calls from this trunk.
    pub verification: Option<crate::verify::Verification>,
    /// With tenants: how the trunk's numbers are read and written.
    pub numbers: TrunkNumbers,
}

/// With tenants: how a trunk's numbers are read (its country, where its called DID is) and
/// written toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkNumbers {
    pub numbering: Numbering,
    pub format: Format,
    /// Where the called DID of its calls is read, in order.
    pub called_from: Arc<[CalledFrom]>,
}

impl Default for TrunkNumbers {
    fn default() -> Self {
        TrunkNumbers {
            numbering: Numbering::default(),
            format: Format::E164,
            called_from: Arc::from([CalledFrom::RequestUri, CalledFrom::To]),
        }
    }
}

/// Where a trunk's call carries the called DID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalledFrom {
    RequestUri,
    To,
    /// A header whose (first) value is a name-addr or URI naming the number.
    Header(sluice_sip::HeaderName),
}

/// Tenants: the routing table and each tenant's PBX (in the table's order).
#[derive(Debug, Clone)]
pub struct TenantRouting {
    pub table: RoutingTable,
    pub pbx: Vec<PeerConfig>,
}

/// What Sluice does with a REFER inside a trunk's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transfer {
    /// Relayed to the other leg with topology hiding.
    #[default]
    Relay,
    /// Refused with 403.
    Refuse,
    /// A REFER from the trunk's side is carried out by Sluice: the PBX's leg is replaced by a
    /// new call to the target (see [`crate::transfer`]).
    Handle,
}

impl TrunkConfig {
    /// The trunk as a peer reached at destination `d` (through the outbound proxy, if any).
    pub fn peer(&self, d: &Destination) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            host: self.host.clone(),
            transport: d.transport,
            addr: self.outbound_proxy.unwrap_or(d.addr),
            media: self.media.clone(),
            large_over_tcp: self.large_over_tcp,
            forward_history: self.forward_history,
            sips: self.sips,
        }
    }

    /// The first destination as a peer (OPTIONS, REGISTER, the call's first try).
    pub fn primary(&self) -> Option<PeerConfig> {
        let first = self.destinations.iter().min_by_key(|d| d.priority)?;
        Some(self.peer(first))
    }

    /// Whether a message from `source` comes from this trunk (its destinations, the outbound
    /// proxy, or its associated addresses).
    pub fn sends_from(&self, source: SocketAddr) -> bool {
        let at = |a: SocketAddr| {
            a.ip() == source.ip() && (!self.verify_port || a.port() == source.port())
        };
        self.destinations.iter().any(|d| at(d.addr))
            || self.outbound_proxy.is_some_and(at)
            || self.sources.iter().any(|n| n.contains(&source.ip()))
    }

    /// Whether a gateway registering for `domain` (the host of its To URI) registers to this
    /// (accept-register) trunk. An IP address matches however it is written (an IPv6 one with
    /// or without brackets, in any of its textual forms).
    pub fn registrar_domain_is(&self, domain: &str) -> bool {
        self.kind == TrunkKind::AcceptRegister
            && (same_host(&self.host, domain) || same_host(&self.domain, domain))
    }

    /// A trunk with one destination and nothing else (tests, simple labs).
    pub fn simple(name: &str, host: &str, transport: Transport, addr: SocketAddr) -> TrunkConfig {
        TrunkConfig {
            name: name.into(),
            kind: TrunkKind::Ip,
            host: host.into(),
            transport,
            destinations: vec![Destination {
                addr,
                transport,
                priority: 10,
                rank: 0,
                weight: 1,
            }],
            sources: Vec::new(),
            verify_port: false,
            credentials: None,
            domain: host.into(),
            register_expires: 3600,
            failover_on: Vec::new(),
            failover_budget: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(4),
            keepalive: None,
            max_calls: 0,
            max_call_duration: None,
            outbound_proxy: None,
            public_address: None,
            via_public: false,
            media: PeerMedia::Anchor,
            srtp: None,
            large_over_tcp: false,
            transfer: Transfer::Relay,
            forward_history: true,
            sips: false,
            identity: None,
            verification: None,
            numbers: TrunkNumbers::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub timers: TimerConfig,
    pub listeners: Vec<ListenerAddr>,
    pub pbx: PeerConfig,
    /// Further addresses that may place calls on the PBX side (a PBX cluster); the PBX's own
    /// address always may. Any other source is refused: no toll fraud through Sluice.
    pub pbx_sources: Vec<IpNet>,
    pub trunks: Vec<TrunkConfig>,
    /// Index into `trunks` that calls from the PBX go to, without tenants.
    pub outbound_trunk: Option<usize>,
    /// Tenants, their DID pools and routes; `None`: one implicit tenant (every PBX call to
    /// `outbound_trunk`, every trunk call to `pbx`).
    pub tenants: Option<Arc<TenantRouting>>,
    pub max_calls: usize,
    pub user_agent: String,
    /// Answer a new call from a stranger with a stateless 403 (`true`) or drop it.
    pub refuse_strangers: bool,
    /// The largest request Sluice sends over UDP; a larger one is refused with 513 (a new
    /// call's INVITE goes over TCP instead when its peer has `large_over_tcp`).
    pub max_udp_bytes: usize,
    /// The longest header value taken in: longer gets 513 (requests) or is dropped.
    pub max_header_bytes: usize,
    /// `None`: no media anchoring at all (every SDP crosses as it is).
    pub media: Option<MediaConfig>,
    /// Flood protection.
    pub guard: crate::guard::GuardConfig,
    /// One info line per call when it ends.
    pub log_calls: bool,
    /// Session intervals (RFC 4028).
    pub session: crate::session_timer::SessionConfig,
    /// NOTIFY and MESSAGE outside any dialog get 200 (dropped) rather than 403.
    pub accept_unsolicited: bool,
}

impl EngineConfig {
    /// Whether `ip` may place calls on the PBX side.
    pub fn is_pbx(&self, ip: std::net::IpAddr) -> bool {
        ip == self.pbx.addr.ip()
            || self.pbx_sources.iter().any(|n| n.contains(&ip))
            || self
                .tenants
                .as_ref()
                .is_some_and(|t| t.table.is_tenant_source(ip))
    }

    /// The public address a trunk is shown (and whether in Via too), when it has one.
    pub fn public_address_of(&self, trunk: &str) -> Option<(std::net::IpAddr, bool)> {
        let t = self.trunks.iter().find(|t| &*t.name == trunk)?;
        t.public_address.map(|ip| (ip, t.via_public))
    }
}

/// Two hosts are the same: equal IP addresses (brackets aside), or equal names in any case.
fn same_host(a: &str, b: &str) -> bool {
    sluice_sip::fields::canonical_host(a) == sluice_sip::fields::canonical_host(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_registers_for_the_trunks_host_however_it_is_written() {
        let addr: SocketAddr = "127.0.0.30:5060".parse().unwrap_or_else(|_| unreachable!());
        let mut t = TrunkConfig::simple("gw", "2001:db8::1", Transport::Udp, addr);
        t.kind = TrunkKind::AcceptRegister;
        t.domain = "gw.example".into();
        for domain in [
            "[2001:db8::1]",
            "2001:db8::1",
            "[2001:DB8:0::1]",
            "GW.example",
        ] {
            assert!(t.registrar_domain_is(domain), "{domain}");
        }
        for domain in ["[2001:db8::2]", "other.example", ""] {
            assert!(!t.registrar_domain_is(domain), "{domain}");
        }
        t.kind = TrunkKind::Ip;
        assert!(
            !t.registrar_domain_is("gw.example"),
            "only accept-register trunks"
        );
    }
}
