//! From the configuration file to the engine's resolved configuration (addresses, not names).

use anyhow::{anyhow, Context};
use sluice_auth::Credentials;
use sluice_b2bua::route::listener_for;
use sluice_b2bua::{
    Destination, EngineConfig, ListenerAddr, MediaConfig, MediaSideConfig, PeerConfig, PeerMedia,
    Side, TrunkConfig, TrunkKind,
};
use sluice_config::{Config, LatchingName, MediaMode, ResolvedSide, TransportName, Trunk};
use sluice_media::{Latching, Timeouts};
use sluice_transaction::{TimerConfig, Transport};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

fn transport(t: TransportName) -> Transport {
    match t {
        TransportName::Udp => Transport::Udp,
        TransportName::Tcp => Transport::Tcp,
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

pub fn engine_config(cfg: &Config) -> anyhow::Result<EngineConfig> {
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
            })
        };
    let pbx = peer(
        "pbx",
        cfg.pbx.host.get_ref(),
        cfg.pbx.port,
        cfg.pbx.transport,
    )?;
    let mut trunks = Vec::new();
    for t in &cfg.trunks {
        trunks.push(trunk_config(cfg, t)?);
    }
    let outbound_trunk = cfg
        .trunks
        .iter()
        .position(|t| t.name.get_ref() == cfg.routing.outbound_trunk.get_ref())
        .ok_or_else(|| anyhow!("unknown outbound trunk"))?;
    let check_path = |side: Side, p: &PeerConfig| -> anyhow::Result<()> {
        if listener_for(&listeners, side, p.transport, p.addr).is_some() {
            Ok(())
        } else {
            Err(anyhow!(
                "no {side:?} listener with transport {} for `{}` at {}",
                p.transport,
                p.name,
                p.addr
            ))
        }
    };
    check_path(Side::Internal, &pbx)?;
    for t in &trunks {
        for d in &t.destinations {
            check_path(Side::External, &t.peer(d))?;
        }
    }
    Ok(EngineConfig {
        timers: TimerConfig {
            t1: Duration::from_millis(cfg.sip.t1_ms),
            t2: Duration::from_millis(cfg.sip.t2_ms),
            t4: Duration::from_millis(cfg.sip.t4_ms),
        },
        listeners,
        pbx,
        trunks,
        outbound_trunk,
        max_calls: cfg.sip.max_calls,
        user_agent: cfg.sip.user_agent.clone(),
        media: Some(media_config(cfg)),
    })
}

/// A trunk resolved: destinations to addresses, credentials, the options the engine applies.
fn trunk_config(cfg: &Config, t: &Trunk) -> anyhow::Result<TrunkConfig> {
    let name = t.name.get_ref();
    let kind = match t.kind {
        sluice_config::TrunkKind::Ip => TrunkKind::Ip,
        sluice_config::TrunkKind::Register => TrunkKind::Register,
        sluice_config::TrunkKind::Credentials => TrunkKind::Credentials,
        sluice_config::TrunkKind::AcceptRegister => TrunkKind::AcceptRegister,
    };
    let mut destinations = Vec::new();
    // An accept-register trunk's host is the domain its gateway registers for (it may be a
    // name that resolves nowhere): its calls go to the registration.
    if kind != TrunkKind::AcceptRegister {
        for (host, port, tr, priority, weight) in t.destination_list() {
            let addr =
                resolve(&host, port).with_context(|| format!("a destination of trunk `{name}`"))?;
            destinations.push(Destination {
                addr,
                transport: transport(tr),
                priority,
                weight,
            });
        }
    }
    let outbound_proxy = match &t.outbound_proxy {
        Some(p) => {
            let text = p.get_ref();
            let (host, port) = match text.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                    h,
                    p.parse::<u16>()
                        .with_context(|| format!("outbound_proxy `{text}` of trunk `{name}`"))?,
                ),
                _ => (text.as_str(), 5060),
            };
            Some(resolve(host, port).with_context(|| format!("outbound_proxy of trunk `{name}`"))?)
        }
        None => None,
    };
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
        transport: transport(t.transport),
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
        outbound_proxy,
        public_address: if t.use_private_address {
            None
        } else {
            cfg.external.public_address
        },
        via_public: t.via_public_address,
        media: trunk_media(t),
    })
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
