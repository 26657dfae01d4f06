//! `sluice plugin test --config FILE --trunk NAME --message FILE.sip`: the whole truth of what
//! leaves Sluice. The captured message (a PBX's INVITE, or a trunk's for `--direction inbound`)
//! goes through the very engine `sluice run` builds from the configuration, with that trunk's
//! chain as configured (rule sets and brand, in order; numbers, then messages, then
//! attestation): the B2BUA rebuilds it for the far leg, anchors its SDP, runs the plugins, and
//! what it would send is printed. Nothing is sent; no socket is opened.

use crate::reload;
use sluice_b2bua::{Engine, Hooks, Output, Side};
use sluice_config::Config;
use sluice_plugins::PluginHost;
use sluice_sip::parse_message;
use sluice_transaction::Flow;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Which way the captured message travels.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the PBX, toward the trunk.
    Outbound,
    /// From the trunk, toward the PBX.
    Inbound,
}

pub fn run(
    config: &Path,
    trunk: Option<&str>,
    message: &[u8],
    way: Way,
) -> Result<ExitCode, String> {
    let (mut engine, flow, trunk) = engine_for(config, trunk, way)?;
    let now = Instant::now();
    engine.handle_timeout(now);
    while engine.poll_output().is_some() {} // the trunks' own REGISTER and OPTIONS
    engine.handle_datagram(now, flow, message);
    let (relayed, answers) = outputs(&mut engine);
    println!(
        "chain: trunk {trunk}, {}",
        match way {
            Way::Outbound => "outbound (from the PBX, toward the trunk)",
            Way::Inbound => "inbound (from the trunk, toward the PBX)",
        }
    );
    for p in engine.hooks().status() {
        if p.trunks.contains(&trunk) {
            println!("plugin: {} {} ({})", p.name, p.version, p.origin);
        }
    }
    for c in engine.calls_snapshot(now) {
        if c.trunk != trunk {
            // Inbound calls are told apart by the address they come from: another trunk at
            // the same address was matched first.
            return Err(format!(
                "a message from {} is taken as trunk `{}`'s, not `{trunk}`'s (they share \
                 the address): give the trunks distinct addresses or `associated` blocks",
                flow.remote, c.trunk
            ));
        }
        println!(
            "attestation: {}",
            c.attestation.map_or("no opinion", |a| a.as_str())
        );
    }
    for status in &answers {
        println!("answered: {status}");
    }
    match relayed {
        Some((to, msg)) => {
            println!(
                "--- message as it would leave Sluice, to {} over {} ---",
                to.remote, to.transport
            );
            print!("{msg}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!("--- nothing would leave Sluice toward the far side ---");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The engine `sluice run` builds from `config`, its calls from the PBX routed to `trunk` (the
/// outbound route's by default) and nothing counted by the flood guard; the flow the captured
/// message arrives on; the trunk's name.
fn engine_for(
    config: &Path,
    trunk: Option<&str>,
    way: Way,
) -> Result<(Engine<PluginHost>, Flow, String), String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("{}: cannot read: {e}", config.display()))?;
    let name = config.display().to_string();
    let cfg = Config::parse(&text, &name).map_err(|e| e.to_string())?;
    let runtime = sluice_plugins::Runtime::new(reload::limits(&cfg), true)?;
    let prepared =
        reload::prepare(&runtime, &text, Some(config), &name).map_err(|e| e.to_string())?;
    let mut engine_cfg = prepared.engine;
    let first = cfg.trunks.first().map(|t| t.name.get_ref().as_str());
    let routed = cfg
        .routing
        .outbound_trunk
        .as_ref()
        .map(|t| t.get_ref().as_str());
    let trunk = trunk.or(routed).or(first).ok_or("no trunk configured")?;
    let index = engine_cfg
        .trunks
        .iter()
        .position(|t| &*t.name == trunk)
        .ok_or_else(|| format!("no trunk `{trunk}` in {name}"))?;
    // The chain of one trunk is tested: tenant routing (`sluice route`) is left out.
    engine_cfg.outbound_trunk = Some(index);
    engine_cfg.tenants = None;
    engine_cfg.guard.limits = None;
    let (side, from, transport) = match way {
        Way::Outbound => (
            Side::Internal,
            engine_cfg.pbx.addr,
            engine_cfg.pbx.transport,
        ),
        Way::Inbound => {
            let t = engine_cfg.trunks.get(index).ok_or("no trunk")?;
            let peer = t
                .primary()
                .ok_or_else(|| format!("trunk `{trunk}` has no address"))?;
            (Side::External, peer.addr, peer.transport)
        }
    };
    let listener = sluice_b2bua::route::listener_for(&engine_cfg.listeners, side, transport, from)
        .ok_or("no listener for the sender's transport")?;
    let mut engine = Engine::with_hooks(engine_cfg, 1, PluginHost::new());
    reload::install(&mut engine, prepared.plugins);
    let flow = Flow {
        transport,
        local: listener.addr,
        remote: from,
        conn: transport.is_reliable().then_some(1),
    };
    Ok((engine, flow, trunk.to_string()))
}

/// What the engine sends: the first request (what leaves toward the far side) and the status
/// lines of its answers to the sender. The sender's Via may name another port than its
/// address, so a message's flow cannot tell the two apart; requests and responses can.
fn outputs(engine: &mut Engine<PluginHost>) -> (Option<(Flow, String)>, Vec<String>) {
    let mut relayed = None;
    let mut answers = Vec::new();
    while let Some(out) = engine.poll_output() {
        let Output::Transmit { flow: to, data } = out else {
            continue;
        };
        match parse_message(&data) {
            Ok(m) if m.is_request() => {
                if relayed.is_none() {
                    relayed = Some((to, String::from_utf8_lossy(&data).into_owned()));
                }
            }
            Ok(m) => answers.push(format!(
                "{} {}",
                m.status().unwrap_or(0),
                m.reason().unwrap_or("")
            )),
            Err(_) => answers.push("?".into()),
        }
    }
    (relayed, answers)
}
