//! From the configuration file to the engine's resolved configuration (addresses, not names).

use anyhow::{anyhow, Context};
use sluice_b2bua::route::listener_for;
use sluice_b2bua::{EngineConfig, ListenerAddr, PeerConfig, Side};
use sluice_config::{Config, TransportName};
use sluice_transaction::{TimerConfig, Transport};
use std::net::{SocketAddr, ToSocketAddrs};
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
        trunks.push(peer(
            t.name.get_ref(),
            t.host.get_ref(),
            t.port,
            t.transport,
        )?);
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
    })
}
