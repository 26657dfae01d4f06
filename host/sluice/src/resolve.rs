//! From the configuration file to the engine's resolved configuration (addresses, not names).

use crate::dns;
use anyhow::{anyhow, Context};
use sluice_auth::Credentials;
use sluice_b2bua::config::{CalledFrom, TenantRouting, TrunkNumbers};
use sluice_b2bua::route::listener_for;
use sluice_b2bua::{
    Destination, EngineConfig, GuardConfig, GuardLimits, ListenerAddr, MediaConfig,
    MediaSideConfig, PeerConfig, PeerMedia, Side, TrunkConfig, TrunkKind,
};
use sluice_config::tenant::ForeignCallerIdPolicy;
use sluice_config::{Config, LatchingName, MediaMode, ResolvedSide, TransportName, Trunk};
use sluice_media::{Latching, Timeouts};
use sluice_routing::Format;
use sluice_transaction::{TimerConfig, Transport};
use sluice_trunk::locate::{self, Located, Proto, Target};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

fn transport(t: TransportName) -> Transport {
    match t {
        TransportName::Udp => Transport::Udp,
        TransportName::Tcp => Transport::Tcp,
        TransportName::Tls => Transport::Tls,
    }
}

/// Resolve a host name once, at load time. IP literals need no lookup.
fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (h, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{host}`"))?
        .next()
        .ok_or_else(|| anyhow!("`{host}` has no address"))
}

/// The engine's configuration and when its DNS answers should be looked up again.
pub struct Resolved {
    pub engine: EngineConfig,
    /// The shortest TTL among the answers (`None`: no names were looked up).
    pub dns_ttl: Option<Duration>,
}

fn proto(t: TransportName) -> Proto {
    match t {
        TransportName::Udp => Proto::Udp,
        TransportName::Tcp => Proto::Tcp,
        TransportName::Tls => Proto::Tls,
    }
}

fn from_proto(p: Proto) -> Transport {
    match p {
        Proto::Udp => Transport::Udp,
        Proto::Tcp => Transport::Tcp,
        Proto::Tls => Transport::Tls,
    }
}

/// Every trunk destination located per RFC 3263 (one resolver for all), per trunk in order.
fn locate_destinations(
    cfg: &Config,
    listeners: &[ListenerAddr],
) -> anyhow::Result<(Vec<Vec<Located>>, Option<Duration>)> {
    let supported: Vec<Proto> = [Proto::Udp, Proto::Tcp, Proto::Tls]
        .into_iter()
        .filter(|p| {
            listeners
                .iter()
                .any(|l| l.side == Side::External && l.transport == from_proto(*p))
        })
        .collect();
    let mut targets = Vec::new();
    let mut counts = Vec::new();
    for t in &cfg.trunks {
        // An accept-register trunk's host is the domain its gateway registers for (it may be
        // a name that resolves nowhere): its calls go to the registration.
        let specs = if t.kind == sluice_config::TrunkKind::AcceptRegister {
            Vec::new()
        } else {
            t.destination_list()
        };
        counts.push(specs.len());
        for d in specs {
            targets.push((d.host, d.port, d.transport.map(proto)));
        }
    }
    let needs_dns = targets.iter().any(|(h, _, _)| {
        h.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_err()
    });
    let located = if needs_dns {
        dns::locate_all(&cfg.dns, &targets, &supported)?
    } else {
        targets
            .iter()
            .map(|(host, port, p)| {
                let target = Target {
                    host,
                    port: *port,
                    proto: *p,
                };
                locate::locate(target, &supported, &mut |_| None)
            })
            .collect()
    };
    let ttl = located.iter().filter_map(|l| l.ttl).min();
    let mut it = located.into_iter();
    let per_trunk = counts
        .into_iter()
        .map(|n| it.by_ref().take(n).collect())
        .collect();
    Ok((per_trunk, ttl))
}

/// The engine's configuration, with trunk host names resolved per RFC 3263.
pub fn resolve_config(cfg: &Config) -> anyhow::Result<Resolved> {
    let mut listeners = Vec::new();
    for (side, s) in [
        (Side::Internal, &cfg.internal),
        (Side::External, &cfg.external),
    ] {
        for l in &s.listen {
            listeners.push(ListenerAddr {
                side,
                transport: transport(l.transport),
                addr: l.addr(),
            });
        }
    }
    let peer =
        |name: &str, host: &str, port: u16, t: TransportName| -> anyhow::Result<PeerConfig> {
            Ok(PeerConfig {
                name: name.into(),
                host: host.into(),
                transport: transport(t),
                addr: resolve(host, port)?,
                media: PeerMedia::Anchor,
                large_over_tcp: false,
                forward_history: true,
                sips: false,
            })
        };
    let mut pbx = peer(
        "pbx",
        cfg.pbx.host.get_ref(),
        cfg.pbx.port,
        cfg.pbx.transport,
    )?;
    pbx.large_over_tcp = cfg.pbx.tcp_for_large_requests;
    let (located, dns_ttl) = locate_destinations(cfg, &listeners)?;
    let mut trunks = Vec::new();
    for (t, located) in cfg.trunks.iter().zip(located) {
        trunks.push(trunk_config(cfg, t, located)?);
    }
    let outbound_trunk = match &cfg.routing.outbound_trunk {
        Some(name) => Some(
            cfg.trunks
                .iter()
                .position(|t| t.name.get_ref() == name.get_ref())
                .ok_or_else(|| anyhow!("unknown outbound trunk"))?,
        ),
        None => None,
    };
    check_path(&listeners, Side::Internal, &pbx)?;
    let tenants = tenant_routing(cfg, &pbx, peer)?;
    for p in tenants.iter().flat_map(|t| &t.pbx) {
        check_path(&listeners, Side::Internal, p)?;
    }
    for t in &trunks {
        for d in &t.destinations {
            check_path(&listeners, Side::External, &t.peer(d))?;
        }
    }
    let pbx_sources = cfg.pbx.associated.iter().map(|c| c.get_ref().0).collect();
    let engine = EngineConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(cfg.sip.t1_ms),
            t2: Duration::from_millis(cfg.sip.t2_ms),
            t4: Duration::from_millis(cfg.sip.t4_ms),
        },
        listeners,
        pbx,
        pbx_sources,
        trunks,
        outbound_trunk,
        tenants: tenants.map(Arc::new),
        max_calls: cfg.sip.max_calls,
        user_agent: cfg.sip.user_agent.clone(),
        refuse_strangers: cfg.sip.strangers == sluice_config::StrangerPolicy::Refuse,
        max_udp_bytes: cfg.sip.max_udp_bytes,
        max_header_bytes: cfg.sip.max_header_bytes,
        media: Some(media_config(cfg)),
        guard: guard_config(&cfg.guard),
        log_calls: cfg.sip.log_calls,
        accept_unsolicited: cfg.sip.unsolicited == sluice_config::sip::Unsolicited::Accept,
        session: sluice_b2bua::session_timer::SessionConfig {
            expires: cfg.sip.session_expires,
            min: cfg.sip.min_session_expires,
        },
    };
    Ok(Resolved { engine, dns_ttl })
}

/// How a trunk's numbers are read and written (used with tenants).
fn trunk_numbers(cfg: &Config, t: &Trunk) -> anyhow::Result<TrunkNumbers> {
    let country = t
        .country
        .as_ref()
        .map_or(cfg.routing.country.get_ref(), |c| c.get_ref());
    let numbering = sluice_routing::Numbering::new(country)
        .ok_or_else(|| anyhow!("unknown country `{country}`"))?;
    let called_from = t
        .called_number_from
        .iter()
        .map(|f| match f.get_ref().to_ascii_lowercase().as_str() {
            "request-uri" => CalledFrom::RequestUri,
            "to" => CalledFrom::To,
            _ => CalledFrom::Header(sluice_sip::HeaderName::parse(f.get_ref())),
        })
        .collect();
    Ok(TrunkNumbers {
        numbering,
        format: t.number_format.map_or(Format::E164, |f| f.0),
        called_from,
    })
}

/// The tenants' routing table and PBXs (`None` without tenants). Each tenant's PBX address and
/// `associated` blocks are where its calls come from.
fn tenant_routing(
    cfg: &Config,
    default_pbx: &PeerConfig,
    peer: impl Fn(&str, &str, u16, TransportName) -> anyhow::Result<PeerConfig>,
) -> anyhow::Result<Option<TenantRouting>> {
    use sluice_routing::{ForeignCallerId, Numbering, OutRoute, RoutingTable, Tenant};
    if cfg.tenants.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(cfg.tenants.len());
    let mut pbxs = Vec::with_capacity(cfg.tenants.len());
    for t in &cfg.tenants {
        let name = t.name.get_ref();
        let pbx = match &t.pbx {
            Some(p) => {
                let mut pc = peer(name, p.host.get_ref(), p.port, p.transport)?;
                pc.large_over_tcp = p.tcp_for_large_requests;
                pc
            }
            None => default_pbx.clone(),
        };
        let associated = t
            .pbx
            .as_ref()
            .map_or(&cfg.pbx.associated, |p| &p.associated);
        let sources = std::iter::once(ipnet::IpNet::from(pbx.addr.ip()))
            .chain(associated.iter().map(|c| c.get_ref().0))
            .collect();
        let country = t.country(cfg.routing.country.get_ref());
        let numbering = Numbering::new(country)
            .ok_or_else(|| anyhow!("tenant `{name}`: unknown country `{country}`"))?;
        let default_caller_id = t
            .default_caller_id
            .as_ref()
            .and_then(|d| numbering.normalise(&format!("+{}", d.get_ref())));
        let foreign_caller_id = match t.foreign_caller_id.as_ref().map(|p| *p.get_ref()) {
            Some(ForeignCallerIdPolicy::Refuse) => ForeignCallerId::Refuse,
            Some(ForeignCallerIdPolicy::Default) => ForeignCallerId::UseDefault,
            None if default_caller_id.is_some() => ForeignCallerId::UseDefault,
            None => ForeignCallerId::Refuse,
        };
        specs.push(Tenant {
            name: Arc::from(name.as_str()),
            domains: t
                .domains
                .iter()
                .map(|d| sluice_sip::fields::canonical_host(d.get_ref()))
                .collect(),
            sources,
            numbering,
            pbx_format: t.pbx_number_format.map_or(Format::E164, |f| f.0),
            pools: t
                .pools()
                .into_iter()
                .map(|(trunk, pool)| (Arc::from(trunk), pool))
                .collect(),
            default_caller_id,
            foreign_caller_id,
            routes: t
                .routes
                .iter()
                .map(|r| OutRoute {
                    matcher: r.matcher(),
                    strip: r.strip,
                    prepend: r.prepend.clone(),
                    trunks: r
                        .trunks
                        .iter()
                        .map(|n| Arc::from(n.get_ref().as_str()))
                        .collect(),
                })
                .collect(),
        });
        pbxs.push(pbx);
    }
    let table = RoutingTable::new(specs, cfg.routing.emergency_numbers.clone())?;
    Ok(Some(TenantRouting { table, pbx: pbxs }))
}

/// A peer must be reachable from a listener of its side, transport and family; with
/// `tcp_for_large_requests`, a TCP listener must share the UDP listener's address.
fn check_path(listeners: &[ListenerAddr], side: Side, p: &PeerConfig) -> anyhow::Result<()> {
    let Some(l) = listener_for(listeners, side, p.transport, p.addr) else {
        return Err(anyhow!(
            "no {side:?} listener with transport {} for `{}` at {}",
            p.transport,
            p.name,
            p.addr
        ));
    };
    // A large INVITE moves to TCP from the very address of the UDP listener.
    let udp = l.transport == sluice_transaction::Transport::Udp;
    if p.large_over_tcp && udp && !sluice_b2bua::route::tcp_beside(listeners, l.addr) {
        return Err(anyhow!(
            "`{}` has tcp_for_large_requests, but no tcp listener shares the udp listener's \
             address {}: add {{ transport = \"tcp\", address = \"{}\" }}",
            p.name,
            l.addr,
            l.addr
        ));
    }
    Ok(())
}

/// `[guard]` as the engine takes it.
fn guard_config(g: &sluice_config::GuardSettings) -> GuardConfig {
    GuardConfig {
        limits: g.enabled.then(|| GuardLimits {
            window: Duration::from_secs(g.window_seconds),
            max_requests: g.max_requests,
            ban: Duration::from_secs(g.ban_seconds),
            max_auth_failures: g.max_auth_failures,
            auth_window: Duration::from_secs(g.auth_window_seconds),
            max_sources: g.max_sources,
        }),
        exempt: g.exempt.iter().map(|c| c.0).collect(),
        fingerprint_strangers: g.fingerprint_strangers,
    }
}

/// A trunk resolved: destinations to addresses, credentials, the options the engine applies.
fn trunk_config(cfg: &Config, t: &Trunk, located: Vec<Located>) -> anyhow::Result<TrunkConfig> {
    let name = t.name.get_ref();
    let kind = match t.kind {
        sluice_config::TrunkKind::Ip => TrunkKind::Ip,
        sluice_config::TrunkKind::Register => TrunkKind::Register,
        sluice_config::TrunkKind::Credentials => TrunkKind::Credentials,
        sluice_config::TrunkKind::AcceptRegister => TrunkKind::AcceptRegister,
    };
    let destinations = trunk_destinations(t, kind, located)?;
    let outbound_proxy = outbound_proxy(t)?;
    let credentials = match (&t.username, &t.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    };
    Ok(TrunkConfig {
        name: name.as_str().into(),
        kind,
        host: t.host.get_ref().as_str().into(),
        transport: transport(t.transport()),
        destinations,
        sources: t.associated.iter().map(|c| c.get_ref().0).collect(),
        verify_port: t.verify_port,
        credentials,
        domain: t.domain().into(),
        register_expires: t.register_expires,
        failover_on: t.failover_on.clone(),
        failover_budget: Duration::from_secs(t.failover_seconds),
        attempt_timeout: Duration::from_millis(t.destination_timeout_ms),
        keepalive: t
            .keepalive
            .then(|| (Duration::from_secs(t.keepalive_seconds), t.keepalive_strict)),
        max_calls: t.max_calls,
        max_call_duration: (t.max_call_seconds > 0)
            .then(|| Duration::from_secs(t.max_call_seconds)),
        outbound_proxy,
        public_address: if t.use_private_address {
            None
        } else {
            cfg.external.public_address
        },
        via_public: t.via_public_address,
        media: trunk_media(t),
        srtp: trunk_srtp(t),
        large_over_tcp: t.tcp_for_large_requests,
        forward_history: t.forward_history,
        sips: t.uri_scheme == sluice_config::trunk::UriScheme::Sips,
        // Read from its file with the configuration's path (`stir::load`).
        identity: None,
        verification: None,
        numbers: trunk_numbers(cfg, t)?,
        transfer: match t.transfer {
            sluice_config::trunk::TransferPolicy::Relay => sluice_b2bua::config::Transfer::Relay,
            sluice_config::trunk::TransferPolicy::Refuse => sluice_b2bua::config::Transfer::Refuse,
            sluice_config::trunk::TransferPolicy::Handle => sluice_b2bua::config::Transfer::Handle,
        },
    })
}

/// A trunk's destinations, each located address a destination of its own (an accept-register
/// trunk has none: its gateway's binding is where calls go).
fn trunk_destinations(
    t: &Trunk,
    kind: TrunkKind,
    located: Vec<Located>,
) -> anyhow::Result<Vec<Destination>> {
    let mut destinations = Vec::new();
    let specs = if kind == TrunkKind::AcceptRegister {
        Vec::new()
    } else {
        t.destination_list()
    };
    for (spec, found) in specs.iter().zip(located) {
        if found.candidates.is_empty() {
            return Err(anyhow!(
                "destination `{}` of trunk `{}` has no address (NAPTR, SRV, A/AAAA)",
                spec.host,
                t.name.get_ref()
            ));
        }
        for c in found.candidates {
            destinations.push(Destination {
                addr: c.addr,
                transport: from_proto(c.proto),
                priority: spec.priority,
                rank: c.rank,
                weight: spec.weight.saturating_mul(c.weight.max(1)),
            });
        }
    }
    Ok(destinations)
}

/// A trunk's `outbound_proxy` (`host[:port]`, port 5060 by default), resolved.
fn outbound_proxy(t: &Trunk) -> anyhow::Result<Option<SocketAddr>> {
    let Some(p) = &t.outbound_proxy else {
        return Ok(None);
    };
    let name = t.name.get_ref();
    let text = p.get_ref();
    // `host`, `host:port`, `[IPv6]`, `[IPv6]:port`, as in a SIP URI.
    let (host, port) = sluice_sip::fields::split_host_port(text).ok_or_else(|| {
        anyhow!("outbound_proxy `{text}` of trunk `{name}`: expected host[:port] or [IPv6][:port]")
    })?;
    Ok(Some(resolve(host, port.unwrap_or(5060)).with_context(
        || format!("outbound_proxy of trunk `{name}`"),
    )?))
}

/// A trunk's SRTP option: its mode and suites (checked by the configuration).
fn trunk_srtp(t: &Trunk) -> Option<sluice_b2bua::config::TrunkSrtp> {
    use sluice_config::trunk::{SrtpOption, SRTP_SUITES};
    use sluice_media::{SrtpMode, Suite};
    let mode = match t.srtp {
        SrtpOption::Off => return None,
        SrtpOption::Optional => SrtpMode::Optional,
        SrtpOption::Required => SrtpMode::Required,
    };
    let names: Vec<&str> = match &t.srtp_suites {
        Some(list) => list.iter().map(|s| s.get_ref().as_str()).collect(),
        None => SRTP_SUITES.to_vec(),
    };
    let suites = names.into_iter().filter_map(Suite::from_name).collect();
    Some(sluice_b2bua::config::TrunkSrtp { mode, suites })
}

/// A trunk's media option and codec list; DTMF (`telephone-event`) is always allowed.
fn trunk_media(t: &Trunk) -> PeerMedia {
    match (t.media, &t.codecs) {
        (MediaMode::SignallingOnly, _) => PeerMedia::SignallingOnly,
        (MediaMode::Anchor, None) => PeerMedia::Anchor,
        (MediaMode::Anchor, Some(list)) => {
            let mut codecs: Vec<String> = list.iter().map(|c| c.get_ref().clone()).collect();
            if !codecs
                .iter()
                .any(|c| c.eq_ignore_ascii_case("telephone-event"))
            {
                codecs.push("telephone-event".into());
            }
            PeerMedia::AnchorWithCodecs(Arc::from(codecs))
        }
    }
}

fn media_side(s: ResolvedSide) -> MediaSideConfig {
    MediaSideConfig {
        bind: s.bind,
        advertise: s.advertise,
        first_port: s.first_port,
        last_port: s.last_port,
    }
}

pub fn media_config(cfg: &Config) -> MediaConfig {
    let m = &cfg.media;
    let (internal, external) = m.resolve(&cfg.internal, &cfg.external);
    MediaConfig {
        internal: media_side(internal),
        external: media_side(external),
        latching: match m.latching {
            LatchingName::Symmetric => Latching::Symmetric,
            LatchingName::Strict => Latching::Strict,
        },
        timeouts: Timeouts {
            active: Duration::from_secs(m.timeout_seconds),
            hold: Duration::from_secs(m.hold_timeout_seconds),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration of one trunk `t` with `keys`, and `routing` (the outbound trunk `t`
    /// unless given).
    fn config(keys: &str, routing: &str) -> Config {
        let text = format!(
            "[internal]\nlisten = [ {{ transport = \"udp\", address = \"127.0.0.1:5060\" }} ]\n\
             [external]\nlisten = [ {{ transport = \"udp\", address = \"127.0.0.1:5080\" }} ]\n\
             [pbx]\nhost = \"127.0.0.10\"\n[routing]\n{routing}\n\
             [[trunk]]\nname = \"t\"\nhost = \"127.0.0.20\"\n{keys}\n"
        );
        Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn trunk_with(keys: &str) -> Config {
        config(keys, "outbound_trunk = \"t\"")
    }

    fn proxy(keys: &str) -> anyhow::Result<Option<SocketAddr>> {
        let cfg = trunk_with(keys);
        let t = cfg.trunks.first().expect("a trunk");
        outbound_proxy(t)
    }

    #[test]
    fn outbound_proxy_with_and_without_a_port() {
        assert_eq!(proxy("").unwrap(), None);
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            proxy("outbound_proxy = \"192.0.2.9:5070\"").unwrap(),
            addr("192.0.2.9:5070")
        );
        assert_eq!(
            proxy("outbound_proxy = \"192.0.2.9\"").unwrap(),
            addr("192.0.2.9:5060")
        );
        assert_eq!(
            proxy("outbound_proxy = \"[2001:db8::9]:5070\"").unwrap(),
            addr("[2001:db8::9]:5070")
        );
        assert_eq!(
            proxy("outbound_proxy = \"[2001:db8::9]\"").unwrap(),
            addr("[2001:db8::9]:5060")
        );
        // A bare IPv6 address (ambiguous: where would a port go?) or a port that is no number
        // is refused by the configuration's own checks already (host/config's tests).
    }

    /// A tenant's domain reaches the routing table in the form the PBX's URIs are compared in:
    /// an IPv6 address without brackets, canonical; a name in lower case.
    #[test]
    fn tenant_domains_are_kept_canonical() {
        let cfg = config(
            "[[tenant]]\nname = \"acme\"\ndomains = [\"[2001:DB8:0::7]\", \"Acme.Example\"]\n\
             [[tenant.trunk]]\nname = \"t\"\ndids = \"13322496213\"\n\
             [[tenant.route]]\nprefix = \"1\"\ntrunks = [\"t\"]\n",
            "",
        );
        let resolved = resolve_config(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
        let routing = resolved.engine.tenants.expect("tenant routing");
        let acme = routing.table.tenants().first().expect("a tenant");
        assert_eq!(acme.domains, ["2001:db8::7", "acme.example"]);
    }

    /// What `locate` finds for the trunk's host (an IP address: no DNS).
    fn located_at(host: &str) -> Vec<Located> {
        let target = Target {
            host,
            port: Some(5060),
            proto: None,
        };
        vec![locate::locate(target, &[Proto::Udp], &mut |_| None)]
    }

    #[test]
    fn an_accept_register_trunk_has_no_destinations() {
        // The same located address makes a destination of an IP trunk, and none of an
        // accept-register trunk (its calls go where its gateway registered).
        let ip = trunk_with("");
        let t = ip.trunks.first().expect("a trunk");
        let d = trunk_destinations(t, TrunkKind::Ip, located_at("127.0.0.20")).unwrap();
        assert_eq!(d.len(), 1);
        let gw = trunk_with("type = \"accept-register\"\nusername = \"u\"\npassword = \"p\"");
        let t = gw.trunks.first().expect("a trunk");
        let d = trunk_destinations(t, TrunkKind::AcceptRegister, located_at("127.0.0.20")).unwrap();
        assert!(d.is_empty());
    }
}
