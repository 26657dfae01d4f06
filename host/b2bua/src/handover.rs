//! An upgrade without dropped calls: the old process hands its sockets to a new one (the
//! shell's `handover`), which then reads every datagram. The new process forwards to its
//! predecessor the messages of the predecessor's calls — told apart by Call-ID: the ones the
//! old process made start with its token, the others were listed when it handed over — and
//! keeps the rest. The old process stops its trunk agents (the new one registers) but never
//! unregisters, and finishes its calls; its media ports are set aside by the new one until it
//! is gone, and its gateways' registrations move with the sockets.

use crate::calls::Calls;
use crate::core::Core;
use crate::hooks::Hooks;
use serde::{Deserialize, Serialize};
use sluice_sip::Message;
use sluice_trunk::Binding;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the old process tells its successor as the successor starts reading the sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The prefix of every Call-ID the old process makes.
    pub call_id_token: String,
    /// The Call-IDs of both legs of its calls.
    pub call_ids: Vec<String>,
    /// RTP ports (pairs) its calls hold, per side.
    pub internal_ports: Vec<u16>,
    pub external_ports: Vec<u16>,
    /// Gateways registered to its accept-register trunks.
    pub bindings: Vec<HandedBinding>,
}

/// A gateway's registration, moved to the successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedBinding {
    pub trunk: String,
    pub contact: String,
    pub source: SocketAddr,
    pub expires_in_ms: u64,
}

/// The old process, as its successor sees it while it finishes its calls.
#[derive(Debug, Default)]
pub struct Predecessor {
    token: String,
    call_ids: HashSet<String>,
    /// Ports taken out of this process's pools, given back when the predecessor is gone.
    set_aside: [Vec<u16>; 2],
}

impl<H: Hooks> crate::Engine<H> {
    /// Hand the sockets to a successor (see [`crate::handover`]): what it needs to know; the
    /// trunk agents stop here, without unregistering.
    pub fn hand_over(&mut self, now: Instant) -> Handover {
        self.core.handed_over = true;
        state(&self.core, &self.calls, now)
    }

    /// Take over from the process that handed over `h`; [`Engine::predecessor_gone`] ends it.
    pub fn adopt(&mut self, h: Handover, now: Instant) {
        adopt(&mut self.core, h, now);
    }

    /// An upgrade's old process still finishes its calls (a further upgrade must wait).
    pub fn has_predecessor(&self) -> bool {
        self.core.predecessor.is_some()
    }

    /// The successor is gone before this process finished: its trunk agents run again.
    pub fn take_back(&mut self) {
        self.core.handed_over = false;
    }

    pub fn predecessor_gone(&mut self) {
        predecessor_gone(&mut self.core);
    }
}

/// What the old process hands over, at `now`.
pub fn state<H: Hooks>(core: &Core<H>, calls: &Calls, now: Instant) -> Handover {
    let call_ids = calls
        .values()
        .flat_map(|c| [c.legs.caller.call_id.clone(), c.legs.callee.call_id.clone()])
        .collect();
    let (internal_ports, external_ports) = core
        .media
        .as_ref()
        .map(|m| m.ports_in_use())
        .unwrap_or_default();
    let mut bindings = Vec::new();
    for agent in core.trunks.agents() {
        let Some(registrar) = &agent.registrar else {
            continue;
        };
        for b in registrar.bindings(now) {
            let left = b.expires_at.saturating_duration_since(now);
            bindings.push(HandedBinding {
                trunk: agent.config.name.to_string(),
                contact: b.contact.clone(),
                source: b.source,
                expires_in_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }
    Handover {
        call_id_token: core.ids.token().to_string(),
        call_ids,
        internal_ports,
        external_ports,
        bindings,
    }
}

/// The new process takes over from the one that sent `h`.
pub fn adopt<H: Hooks>(core: &mut Core<H>, h: Handover, now: Instant) {
    core.ids.avoid_token(&h.call_id_token);
    // The trunks' agents (and their registrars) exist once started.
    crate::agents::run(core, now);
    let set_aside = core
        .media
        .as_mut()
        .map(|m| m.set_aside(&h.internal_ports, &h.external_ports))
        .unwrap_or_default();
    for b in h.bindings {
        if let Some(r) = core
            .trunks
            .get_mut(&b.trunk)
            .and_then(|a| a.registrar.as_mut())
        {
            let left = Duration::from_millis(b.expires_in_ms);
            r.adopt(Binding {
                contact: b.contact,
                expires_at: sluice_transaction::after(now, left),
                source: b.source,
            });
        }
    }
    core.predecessor = Some(Predecessor {
        token: h.call_id_token,
        call_ids: h.call_ids.into_iter().collect(),
        set_aside,
    });
}

/// The predecessor exited: its ports are free, and every message is this process's.
pub fn predecessor_gone<H: Hooks>(core: &mut Core<H>) {
    if let Some(p) = core.predecessor.take() {
        if let Some(m) = core.media.as_mut() {
            m.give_back(p.set_aside);
        }
    }
}

/// Whether `msg` belongs to a call of the predecessor (it is forwarded there).
pub fn for_predecessor<H: Hooks>(core: &Core<H>, msg: &Message) -> bool {
    let (Some(p), Some(id)) = (&core.predecessor, msg.call_id()) else {
        return false;
    };
    (!p.token.is_empty() && id.starts_with(p.token.as_str())) || p.call_ids.contains(id)
}
