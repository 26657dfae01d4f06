//! From the configuration file to the engine's resolved configuration (addresses, not names).

use anyhow::{anyhow, Context};
use sluice_b2bua::route::listener_for;
use sluice_b2bua::{
    EngineConfig, ListenerAddr, MediaConfig, MediaSideConfig, PeerConfig, PeerMedia, Side,
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
        let mut p = peer(t.name.get_ref(), t.host.get_ref(), t.port, t.transport)?;
        p.media = trunk_media(t);
        trunks.push(p);
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
        check_path(Side::External, t)?;
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
