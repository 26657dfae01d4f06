//! The trunks' own SIP traffic: the REGISTERs and OPTIONS probes their agents ask for (sent in
//! client transactions, answered into the agents), and the REGISTERs gateways send to Sluice
//! (answered by the accept-register trunk's registrar). See [`crate::trunks`] for the state.

use crate::config::{EngineConfig, Side, TrunkConfig};
use crate::core::{AgentRequest, ClientRole, Core};
use crate::dialog::transport_param;
use crate::headers::{add_agent, format_host_port, uri_host};
use crate::hooks::Hooks;
use crate::route;
use sluice_sip::{reason_phrase, HeaderName, Message, Method, NameAddr, Uri};
use sluice_transaction::{response_to, Flow, ServerTxId};
use sluice_trunk::RegistrarReply;
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// The listener Sluice uses toward a trunk's first destination (or the one named), and that
/// destination.
fn path(cfg: &EngineConfig, t: &TrunkConfig) -> Option<Flow> {
    path_to(cfg, t, None)
}

fn path_to(cfg: &EngineConfig, t: &TrunkConfig, to: Option<std::net::SocketAddr>) -> Option<Flow> {
    let peer = match to.and_then(|a| t.destinations.iter().find(|d| d.addr == a)) {
        Some(d) => t.peer(d),
        None => t.primary()?,
    };
    let l = route::listener_for(&cfg.listeners, Side::External, peer.transport, peer.addr)?;
    Some(Flow {
        transport: peer.transport,
        local: l.addr,
        remote: peer.addr,
        conn: None,
    })
}

/// The host:port Sluice writes toward a trunk in Contact (its public address when it has one
/// and the trunk does not ask for the private one).
pub fn contact_host(t: &TrunkConfig, local: std::net::SocketAddr) -> String {
    match t.public_address {
        Some(ip) => format_host_port(std::net::SocketAddr::new(ip, local.port())),
        None => format_host_port(local),
    }
}

/// The Contact Sluice registers for a register trunk: its user, Sluice's address toward it.
pub fn registration_contact(cfg: &EngineConfig, t: &TrunkConfig) -> Option<String> {
    let flow = path(cfg, t)?;
    let user = t
        .credentials
        .as_ref()
        .map_or("sluice", |c| c.username.as_str());
    Some(format!(
        "sip:{}@{}{}",
        sluice_sip::fields::escape_user(user),
        contact_host(t, flow.local),
        transport_param(flow.transport)
    ))
}

/// Start agents a new configuration added, and send every request that is due.
pub fn run<H: Hooks>(core: &mut Core<H>, now: Instant) {
    core.origin.get_or_insert(now);
    if core.handed_over {
        // The successor registers and probes the trunks now.
        return;
    }
    // Only after a (re)configuration: the copy of the configuration is not for every tick.
    if core.trunks.has_pending() {
        let cfg = core.cfg.clone();
        let contact = |t: &TrunkConfig| registration_contact(&cfg, t);
        if core.trunks.start(now, &mut core.ids, &contact) {
            let names: Vec<Arc<str>> = core.cfg.trunks.iter().map(|t| t.name.clone()).collect();
            for name in names {
                publish(core, &name, now);
            }
        }
    }
    let mut due: Vec<(TrunkConfig, Message, AgentRequest)> = Vec::new();
    for agent in core.trunks.all_mut() {
        if let Some(reg) = agent.registration.as_mut() {
            if let Some(req) = reg.poll_request(now) {
                due.push((agent.config.clone(), req, AgentRequest::Register));
            }
        }
        for (d, ka) in agent.probes.iter_mut() {
            if ka.poll_probe(now) {
                let uri = format!("sip:{}", uri_host(&agent.config.host));
                due.push((
                    agent.config.clone(),
                    probe(&uri),
                    AgentRequest::Probe(d.addr),
                ));
            }
        }
        if let Some(r) = agent.registrar.as_mut() {
            r.expire(now);
        }
    }
    core.trunks.prune();
    for (t, req, kind) in due {
        send(core, now, &t, req, kind);
    }
}

/// An OPTIONS probe, before Via, Call-ID and tags (added by [`send`]).
fn probe(uri: &str) -> Message {
    Message::request(Method::Options, uri)
}

/// Send an agent's request to the trunk's first destination, in a client transaction.
fn send<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    t: &TrunkConfig,
    mut req: Message,
    kind: AgentRequest,
) {
    let to = match kind {
        AgentRequest::Probe(addr) => Some(addr),
        AgentRequest::Register => None,
    };
    let Some(flow) = path_to(&core.cfg, t, to) else {
        warn!(trunk = %t.name, "no external listener for the trunk's transport: request not sent");
        fail(core, now, &t.name, kind);
        return;
    };
    let via_host = match (t.via_public, t.public_address) {
        (true, Some(_)) => contact_host(t, flow.local),
        _ => format_host_port(flow.local),
    };
    let via = format!(
        "SIP/2.0/{} {via_host};branch={};rport",
        flow.transport.via_name(),
        core.ids.branch()
    );
    req.headers.push_front(HeaderName::Via, via);
    req.headers.push(HeaderName::MaxForwards, "70");
    if matches!(kind, AgentRequest::Probe(_)) {
        let local = format!("<sip:sluice@{}>", contact_host(t, flow.local));
        let tag = core.ids.tag();
        req.headers
            .push(HeaderName::From, format!("{local};tag={tag}"));
        req.headers
            .push(HeaderName::To, format!("<sip:{}>", uri_host(&t.host)));
        req.headers.push(HeaderName::CallId, core.ids.call_id());
        req.headers.push(HeaderName::CSeq, "1 OPTIONS");
    }
    add_agent(&mut req, &core.cfg.user_agent);
    let role = ClientRole::Agent {
        trunk: t.name.clone(),
        request: kind,
    };
    core.send(now, req, flow, role);
}

/// The answer to an agent's request.
pub fn on_response<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    trunk: &str,
    kind: AgentRequest,
    msg: &Message,
) {
    let status = msg.status().unwrap_or(500);
    let Some(agent) = core.trunks.any_mut(trunk) else {
        return;
    };
    match kind {
        AgentRequest::Register => {
            if let Some(reg) = agent.registration.as_mut() {
                let was = reg.is_registered(now);
                reg.on_response(now, msg);
                let is = reg.is_registered(now);
                if status >= 200 && was != is {
                    info!(trunk, status, registered = is, "registration changed");
                } else if status >= 300 && !matches!(status, 401 | 407) {
                    warn!(trunk, status, "registration refused");
                }
            }
        }
        AgentRequest::Probe(addr) => {
            if let Some((_, ka)) = agent.probes.iter_mut().find(|(d, _)| d.addr == addr) {
                let before = ka.liveness();
                ka.on_response(now, status);
                if ka.liveness() != before {
                    info!(trunk, %addr, status, liveness = ?ka.liveness(), "trunk keep-alive");
                }
            }
        }
    }
    publish(core, trunk, now);
    run(core, now);
}

/// An agent's request got no answer (timeout, transport error) or could not be sent.
pub fn fail<H: Hooks>(core: &mut Core<H>, now: Instant, trunk: &str, kind: AgentRequest) {
    let Some(agent) = core.trunks.any_mut(trunk) else {
        return;
    };
    match kind {
        AgentRequest::Register => {
            if let Some(reg) = agent.registration.as_mut() {
                reg.on_timeout(now);
                warn!(trunk, "registration got no answer");
            }
        }
        AgentRequest::Probe(addr) => {
            if let Some((_, ka)) = agent.probes.iter_mut().find(|(d, _)| d.addr == addr) {
                let before = ka.liveness();
                ka.on_timeout(now);
                if ka.liveness() != before {
                    warn!(trunk, %addr, "trunk keep-alive: no answer, destination down");
                }
            }
        }
    }
    publish(core, trunk, now);
}

/// A trunk's gauges after its state may have changed (an answer, a timeout, a registration).
fn publish<H: Hooks>(core: &mut Core<H>, trunk: &str, now: Instant) {
    let up = agent_up(core, trunk, now);
    let Some(report) = core.trunks.get(trunk).map(|a| a.report(now)) else {
        return;
    };
    core.metrics.trunk_state(trunk, up, &report);
}

/// Whether a trunk can take calls, for the `sluice_trunk_up` gauge.
fn agent_up<H: Hooks>(core: &Core<H>, trunk: &str, now: Instant) -> bool {
    core.trunks
        .get(trunk)
        .is_some_and(|a| a.usable(now).is_ok() || a.usable(now) == Err("at its call limit"))
        && core
            .trunks
            .get(trunk)
            .and_then(|a| a.registration.as_ref())
            .is_none_or(|r| r.is_registered(now))
}

/// A REGISTER from a gateway: the accept-register trunk whose host domain it names answers it.
pub fn on_register<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    tx: ServerTxId,
    msg: &Message,
    flow: Flow,
) {
    let origin = *core.origin.get_or_insert(now);
    let clock = now.saturating_duration_since(origin).as_secs();
    let domain = msg
        .header(&HeaderName::To)
        .and_then(NameAddr::parse)
        .and_then(|n| Uri::parse(n.uri).map(|u| u.host.to_ascii_lowercase()))
        .unwrap_or_default();
    let trunk: Option<Arc<str>> = core
        .cfg
        .trunks
        .iter()
        .find(|t| t.registrar_domain_is(&domain))
        .map(|t| t.name.clone());
    let Some(name) = trunk else {
        let registrar = core
            .cfg
            .trunks
            .iter()
            .any(|t| t.kind == crate::config::TrunkKind::AcceptRegister);
        if !registrar {
            // Sluice is no registrar here: REGISTER is a method it does not take.
            return core.reply(now, tx, msg, 405, reason_phrase(405));
        }
        warn!(from = %flow.remote, domain, "REGISTER for a domain no accept-register trunk has");
        crate::guard::auth_failed(core, now, flow.remote.ip());
        return core.reply(now, tx, msg, 403, reason_phrase(403));
    };
    let Some(registrar) = core
        .trunks
        .get_mut(&name)
        .and_then(|a| a.registrar.as_mut())
    else {
        return core.reply(now, tx, msg, 503, reason_phrase(503));
    };
    let reply = registrar.on_register(now, clock, msg, flow.remote);
    let tag = core.ids.tag();
    let mut resp = match &reply {
        RegistrarReply::Challenge { header, failed } => {
            if *failed {
                warn!(trunk = %name, from = %flow.remote, "a gateway's REGISTER failed authentication");
                core.metrics.auth_failed(&name, "register-in");
                crate::guard::auth_failed(core, now, flow.remote.ip());
            }
            let mut r = response_to(msg, 401, reason_phrase(401), Some(&tag));
            r.headers.push(HeaderName::WwwAuthenticate, header.clone());
            r
        }
        RegistrarReply::Ok { contacts } => {
            // The gateway's address is the trunk's now (or no longer): count it so.
            core.metrics.forget_peers();
            let mut r = response_to(msg, 200, "OK", Some(&tag));
            for c in contacts {
                r.headers.push(HeaderName::Contact, c.clone());
            }
            info!(trunk = %name, bindings = contacts.len(), "gateway registration");
            r
        }
        RegistrarReply::Refuse { status, reason } => {
            let mut r = response_to(msg, *status, reason, Some(&tag));
            if *status == 423 {
                r.headers.push(
                    HeaderName::MinExpires,
                    sluice_trunk::registrar::MIN_EXPIRES.to_string(),
                );
            }
            r
        }
    };
    add_agent(&mut resp, &core.cfg.user_agent);
    core.respond(now, tx, &resp);
    publish(core, &name, now);
}
