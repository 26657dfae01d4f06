//! Who may use Sluice. Strangers' new calls are refused statelessly (or dropped); every other
//! source except the PBX, the trunks and the configured blocks is counted by the flood guard
//! ([`sluice_guard`]), which bans a source over its limits and drops its packets unread; a
//! stranger's OPTIONS learns nothing that fingerprints Sluice.

use crate::call::Direction;
use crate::calls::Call;
use crate::config::Side;
use crate::core::Core;
use crate::headers::add_agent;
use crate::hooks::Hooks;
use crate::route;
use bytes::Bytes;
use ipnet::IpNet;
use sluice_guard::{Admit, Ban, Limits};
use sluice_sip::{Message, Method};
use sluice_transaction::{reply_flow, response_to, Flow};
use std::net::IpAddr;
use std::time::Instant;
use tracing::warn;

/// At most one log line a second for a kind of event a flood repeats (strangers' calls,
/// malformed input); the lines left out are counted and given with the next one.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Whether to log now: `Some(lines left out since the last one)`, or `None`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let recent = self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < std::time::Duration::from_secs(1));
        if recent {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The flood guard's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// `None`: nothing is counted and no one banned.
    pub limits: Option<Limits>,
    /// Never counted, besides the PBX and the trunks.
    pub exempt: Vec<IpNet>,
    /// Answer a stranger's OPTIONS with Allow, Supported, Accept and Server.
    pub fingerprint_strangers: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            limits: Some(Limits::default()),
            exempt: Vec::new(),
            fingerprint_strangers: false,
        }
    }
}

/// Whether `ip` is a known peer: the PBX (or its cluster), a trunk (by address, ignoring the
/// port, or a gateway's registration), an exempt block, or the next hop of a call in progress.
pub fn is_known<H: Hooks>(core: &Core<H>, ip: IpAddr, now: Instant) -> bool {
    let cfg = &core.cfg;
    cfg.is_pbx(ip)
        || cfg.guard.exempt.iter().any(|n| n.contains(&ip))
        || core.trunks.knows(cfg, ip, now)
        || core.dialog_peers.contains_key(&ip)
}

/// Record where `call`'s dialogs send now (after its set-up, an answer, a target refresh).
pub fn note_peers<H: Hooks>(core: &mut Core<H>, call: &mut Call) {
    let now: Vec<IpAddr> = call.legs.iter().map(|d| d.next_hop().remote.ip()).collect();
    if now == call.peers {
        return;
    }
    forget_peers(core, call);
    for ip in &now {
        let n = core.dialog_peers.entry(*ip).or_insert(0);
        *n = n.saturating_add(1);
    }
    call.peers = now;
}

/// The call ended: its addresses count no more.
pub fn forget_peers<H: Hooks>(core: &mut Core<H>, call: &mut Call) {
    for ip in call.peers.drain(..) {
        if let Some(n) = core.dialog_peers.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                core.dialog_peers.remove(&ip);
            }
        }
    }
}

/// Count a packet from `flow`'s source; whether to drop it unread. The packet that bans a
/// source is the one logged; the rest are only counted.
pub fn refuses<H: Hooks>(core: &mut Core<H>, now: Instant, flow: Flow) -> bool {
    if core.cfg.guard.limits.is_none() {
        return false;
    }
    let ip = flow.remote.ip();
    if is_known(core, ip, now) {
        return false;
    }
    match core.guard.admit(ip, now) {
        Admit::Pass => false,
        Admit::Drop => {
            core.metrics.guard_dropped();
            true
        }
        Admit::Banned(reason) => {
            let limits = core.guard.limits();
            warn!(
                source = %sluice_guard::key(ip),
                requests = limits.max_requests,
                window_s = limits.window.as_secs(),
                ban_s = limits.ban.as_secs(),
                "source over the request limit: banned, its packets are dropped unread"
            );
            core.metrics.guard_banned(reason.as_str());
            core.metrics.guard_dropped();
            core.metrics.guard_bans_in_force(core.guard.bans_in_force());
            true
        }
    }
}

/// A failed authentication from `ip` (a gateway's REGISTER, a REGISTER for a domain no trunk
/// has) counts toward its ban.
pub fn auth_failed<H: Hooks>(core: &mut Core<H>, now: Instant, ip: IpAddr) {
    if core.cfg.guard.limits.is_none() || is_known(core, ip, now) {
        return;
    }
    if core.guard.auth_failed(ip, now) {
        warn!(source = %sluice_guard::key(ip), failures = core.guard.limits().max_auth_failures,
            "source failing authentication: banned, its packets are dropped unread");
        core.metrics
            .guard_banned(sluice_guard::Reason::AuthFailures.as_str());
    }
}

/// The guard's sweep: bans that ran out are logged once, with what they dropped.
pub fn sweep<H: Hooks>(core: &mut Core<H>, now: Instant) {
    let swept = core.guard.handle_timeout(now, |ip, reason, dropped| {
        tracing::info!(source = %ip, reason = reason.as_str(), dropped, "ban ended");
    });
    if swept {
        core.metrics.guard_bans_in_force(core.guard.bans_in_force());
    }
}

/// The bans in force.
pub fn bans<H: Hooks>(core: &Core<H>, now: Instant) -> Vec<Ban> {
    core.guard.bans(now)
}

/// Lift one ban (or all); how many.
pub fn lift<H: Hooks>(core: &mut Core<H>, ip: Option<IpAddr>, now: Instant) -> usize {
    let n = core.guard.lift(ip, now);
    if n > 0 {
        tracing::info!(source = ?ip, lifted = n, "bans lifted by the operator");
    }
    core.metrics.guard_bans_in_force(core.guard.bans_in_force());
    n
}

/// Whether OPTIONS from `ip` gets the headers that fingerprint Sluice.
pub fn shows_agent<H: Hooks>(core: &Core<H>, ip: IpAddr, now: Instant) -> bool {
    core.cfg.guard.fingerprint_strangers || is_known(core, ip, now)
}

/// A new call from an address that may not call (on the PBX side, not the PBX; on the
/// trunk side, no trunk's): answered before any state is kept (a stateless 403, or nothing
/// per `refuse_strangers`), so that a flood of them costs no transactions and draws no
/// retransmissions. Whether it was one.
pub fn stranger_call<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    msg: &Message,
    flow: Flow,
) -> bool {
    if msg.method() != Some(&Method::Invite) || msg.to_tag().is_some() {
        return false;
    }
    let Some(side) = route::side_of(&core.cfg.listeners, flow.local) else {
        return false;
    };
    let ip = flow.remote.ip();
    let (stranger, direction) = match side {
        Side::Internal => (!core.cfg.is_pbx(ip), Direction::Outbound),
        Side::External => (
            core.trunks.by_source(&core.cfg, flow.remote, now).is_none(),
            Direction::Inbound,
        ),
    };
    if !stranger {
        return false;
    }
    core.stats.calls_attempted = core.stats.calls_attempted.saturating_add(1);
    core.stats.calls_failed = core.stats.calls_failed.saturating_add(1);
    core.metrics.call_attempted("unknown", direction);
    core.metrics.call_failed("unknown", direction, 403);
    if let Some(suppressed) = core.stranger_log.allow(now) {
        match side {
            Side::Internal => warn!(from = %flow.remote, suppressed,
                "INVITE on the PBX side from an address that is not the PBX"),
            Side::External => {
                warn!(from = %flow.remote, suppressed, "INVITE from an address that is no trunk")
            }
        }
    }
    if core.cfg.refuse_strangers {
        let mut resp = response_to(msg, 403, "Forbidden", Some(&core.ids.tag()));
        if core.cfg.guard.fingerprint_strangers {
            add_agent(&mut resp, &core.cfg.user_agent);
        }
        core.emit(reply_flow(msg, flow), Bytes::from(resp.to_bytes()));
    }
    true
}

/// An OPTIONS outside any dialog, answered locally (also with Max-Forwards 0): a stranger
/// learns nothing that fingerprints Sluice.
pub fn answer_options<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    (tx, flow): (sluice_transaction::ServerTxId, sluice_transaction::Flow),
    msg: &sluice_sip::Message,
) {
    use crate::headers::{add_agent, ALLOW, SUPPORTED};
    use sluice_sip::HeaderName;
    let mut resp = sluice_transaction::response_to(msg, 200, "OK", Some(&core.ids.tag()));
    if shows_agent(core, flow.remote.ip(), now) {
        resp.headers.push(HeaderName::Allow, ALLOW);
        resp.headers.push(HeaderName::Accept, "application/sdp");
        resp.headers
            .push(HeaderName::Supported, SUPPORTED.join(", "));
        add_agent(&mut resp, &core.cfg.user_agent);
    }
    core.respond(now, tx, &resp);
}
