//! The calls in progress: each call's typed state and its two dialogs, and the table that finds
//! a call from what arrives (a dialog tag, the caller's INVITE transaction).
//!
//! A call's life: [`CallState::Proceeding`] from the caller's INVITE until a final answer is
//! relayed; then [`CallState::Established`] (2xx) or [`CallState::Ending`] (failure, CANCEL,
//! timeout); `Established` becomes `Ending` with the first BYE. A call is removed once it is
//! `Ending` with no transaction of its own left in flight ([`Call::is_over`]).

use crate::call::{CallKey, Direction, LegId, Legs};
use crate::dialog::Dialog;
use crate::failover::Attempts;
use crate::hooks::{Attestation, Generation};
use crate::media::Anchor;
use crate::retransmit::InviteRelay;
use sluice_media::StreamReport;
use sluice_sip::Message;
use sluice_transaction::{ClientTxId, ServerTxId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum CallState {
    /// The caller's INVITE is out toward the callee; no final answer relayed yet.
    Proceeding(Proceeding),
    /// The callee answered: both dialogs are up.
    Established,
    /// A BYE is in flight, or the set-up failed or was cancelled and waits for its transactions.
    Ending(Ending),
}

#[derive(Debug)]
pub struct Proceeding {
    /// The caller's INVITE server transaction, answered when the callee answers.
    pub uas: ServerTxId,
    pub invite: Message,
    /// The INVITE toward the callee.
    pub uac: ClientTxId,
    /// Post-dial delay is recorded once, at the first ringing or the answer.
    pub progressed: bool,
    /// Destinations left and the challenge answered (see [`crate::failover`]).
    pub attempts: Box<Attempts>,
}

#[derive(Debug)]
pub struct Ending {
    /// The INVITE toward the callee while it still waits for its final response (a call
    /// cancelled before the callee answered).
    pub uac: Option<ClientTxId>,
    pub cancel: Cancel,
}

/// The caller's CANCEL, as relayed toward the callee (RFC 3261 §9.1: a CANCEL may only follow
/// a provisional response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    NotAsked,
    /// Wanted, waiting for the callee's first provisional response.
    Wanted,
    Sent,
}

impl Ending {
    /// A set-up that got its final answer: nothing left toward the callee.
    pub fn settled() -> CallState {
        CallState::Ending(Ending {
            uac: None,
            cancel: Cancel::NotAsked,
        })
    }
}

#[derive(Debug)]
pub struct Call {
    pub key: CallKey,
    pub direction: Direction,
    /// The trunk's name (names survive a reload; indexes may not).
    pub trunk: Arc<str>,
    /// The tenant routing attributed the call to (with tenants only).
    pub tenant: Option<Arc<str>>,
    /// The plugin generation this call pinned when it started.
    pub generation: Generation,
    pub attestation: Option<Attestation>,
    pub state: CallState,
    pub legs: Legs<Dialog>,
    /// The INVITE whose 2xx and ACK Sluice is relaying, from the 2xx until the ACK (and kept
    /// after, to re-ACK retransmitted 2xx).
    pub relay: Option<InviteRelay>,
    pub started: Instant,
    pub answered_at: Option<Instant>,
    /// Client transactions in flight besides the initial INVITE (relays, BYE, CANCEL).
    pub pending: usize,
    /// The call's anchored media (`None`: signalling only).
    pub media: Option<Anchor>,
    /// The final status the caller got: 200 once answered, the failure otherwise.
    pub final_status: Option<u16>,
    /// When the trunk's maximum call duration ends the call (see [`crate::duration`]).
    pub ends_at: Option<Instant>,
    /// The addresses this call counts in `Core::dialog_peers`.
    pub peers: Vec<std::net::IpAddr>,
    /// Reliable provisional responses on both legs (RFC 3262).
    pub prack: crate::prack::Reliability,
    /// The session timer (RFC 4028): refreshes, and the end of a call whose refreshes stop.
    pub session_timers: crate::session_timer::SessionTimers,
    /// The SDP Sluice last sent on each leg (a transfer Sluice handles offers it again).
    pub sent_sdp: crate::call::Legs<Option<bytes::Bytes>>,
    /// A transfer Sluice is carrying out.
    pub transfer: Option<Box<crate::transfer::Handling>>,
}

impl Call {
    /// Nothing of the call is left: it may be removed.
    pub fn is_over(&self) -> bool {
        self.pending == 0 && matches!(&self.state, CallState::Ending(e) if e.uac.is_none())
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            CallState::Proceeding(_) => "proceeding",
            CallState::Established => "established",
            CallState::Ending(_) => "ending",
        }
    }

    pub fn info(&self, now: Instant) -> CallInfo {
        CallInfo {
            id: self.key,
            direction: self.direction,
            trunk: self.trunk.to_string(),
            tenant: self.tenant.as_deref().map(str::to_string),
            attestation: self.attestation,
            generation: self.generation,
            state: self.state_name(),
            age: now.saturating_duration_since(self.started),
            answered_for: self.answered_at.map(|a| now.saturating_duration_since(a)),
            media: self
                .media
                .as_ref()
                .map(|a| a.media.report().collect())
                .unwrap_or_default(),
        }
    }
}

/// One call in progress, as the admin API shows it. No numbers or Call-IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub id: CallKey,
    pub direction: Direction,
    pub trunk: String,
    /// The tenant, with tenant routing.
    pub tenant: Option<String>,
    pub state: &'static str,
    pub age: Duration,
    pub answered_for: Option<Duration>,
    /// The STIR/SHAKEN attestation the plugins chose (outbound calls).
    pub attestation: Option<Attestation>,
    /// The plugin generation the call runs with.
    pub generation: Generation,
    /// Per anchored stream: Sluice's ports toward the caller and the callee, and what was
    /// received from each.
    pub media: Vec<StreamReport>,
}

/// The calls, with the indexes that find them.
#[derive(Debug, Default)]
pub struct Calls {
    calls: HashMap<CallKey, Call>,
    /// Our local tag on a dialog → the call and the leg.
    by_tag: HashMap<String, (CallKey, LegId)>,
    /// The caller's INVITE server transaction → the call (for CANCEL).
    by_uas_invite: HashMap<ServerTxId, CallKey>,
    last_key: CallKey,
}

impl Calls {
    /// Number the next calls from `base` (a time-ordered base makes call ids unique across
    /// restarts).
    pub fn start_keys_at(&mut self, base: CallKey) {
        self.last_key = self.last_key.max(base);
    }

    pub fn new_key(&mut self) -> CallKey {
        self.last_key = self.last_key.wrapping_add(1);
        self.last_key
    }

    pub fn insert(&mut self, call: Call, uas: ServerTxId) {
        for leg in [LegId::Caller, LegId::Callee] {
            let tag = call.legs.get(leg).local_tag.clone();
            self.by_tag.insert(tag, (call.key, leg));
        }
        self.by_uas_invite.insert(uas, call.key);
        self.calls.insert(call.key, call);
    }

    pub fn get(&self, key: CallKey) -> Option<&Call> {
        self.calls.get(&key)
    }

    pub fn get_mut(&mut self, key: CallKey) -> Option<&mut Call> {
        self.calls.get_mut(&key)
    }

    /// The call and leg of one of our dialog tags.
    pub fn by_tag(&self, tag: &str) -> Option<(CallKey, LegId)> {
        self.by_tag.get(tag).copied()
    }

    pub fn by_server_invite(&self, tx: ServerTxId) -> Option<CallKey> {
        self.by_uas_invite.get(&tx).copied()
    }

    /// The caller's INVITE transaction ended: a CANCEL can no longer match it.
    pub fn forget_server_invite(&mut self, tx: ServerTxId) {
        self.by_uas_invite.remove(&tx);
    }

    /// A dialog of call `key` changed its local tag (a new try toward another destination).
    pub fn retag(&mut self, key: CallKey, old: &str, new: &str) {
        if let Some(entry) = self.by_tag.remove(old) {
            self.by_tag.insert(new.to_string(), entry);
        } else {
            self.by_tag.insert(new.to_string(), (key, LegId::Callee));
        }
    }

    pub fn remove(&mut self, key: CallKey) -> Option<Call> {
        let call = self.calls.remove(&key)?;
        for leg in call.legs.iter() {
            self.by_tag.remove(&leg.local_tag);
        }
        Some(call)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }

    pub fn keys(&self) -> impl Iterator<Item = CallKey> + '_ {
        self.calls.keys().copied()
    }
}
