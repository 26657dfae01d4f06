//! Requests Sluice sends on its own inside a call — CANCEL, BYE, PRACK, NOTIFY, a session
//! refresh, a transfer's INVITE — and what their answers do. A trunk's challenge (401/407) to
//! one of them is answered once per nonce with the trunk's credentials, as for relayed
//! requests; what cannot be answered settles the request.

use crate::call::{CallKey, LegId};
use crate::calls::Call;
use crate::core::{ClientRole, Core};
use crate::hooks::Hooks;
use crate::{failover, session_timer, transfer};
use sluice_sip::{reason_phrase, Message, Method};
use sluice_transaction::ClientTxId;
use std::time::Instant;

/// What kind of own request a transaction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    Teardown,
    Refresh,
    Transfer,
}

impl Own {
    pub fn of(role: &ClientRole) -> Option<Own> {
        match role {
            ClientRole::Teardown { .. } => Some(Own::Teardown),
            ClientRole::Refresh { .. } => Some(Own::Refresh),
            ClientRole::Transfer { .. } => Some(Own::Transfer),
            _ => None,
        }
    }

    fn role(self, call: CallKey) -> ClientRole {
        match self {
            Own::Teardown => ClientRole::Teardown { call },
            Own::Refresh => ClientRole::Refresh { call },
            Own::Transfer => ClientRole::Transfer { call },
        }
    }
}

impl<H: Hooks> crate::Engine<H> {
    /// An answer to one of Sluice's own requests of call `key`.
    pub(crate) fn on_own_response(
        &mut self,
        now: Instant,
        (key, tx, own): (CallKey, ClientTxId, Own),
        msg: Message,
    ) {
        let status = msg.status().unwrap_or(500);
        if status == 100 || (own != Own::Transfer && status < 200) {
            return;
        }
        if matches!(status, 401 | 407) {
            let sent = self.core.tx.client_request(tx).cloned();
            let mut answered = false;
            if let Some(sent) = sent {
                self.with_call(now, Some(key), |core, call| {
                    answered = challenged(core, call, now, (&sent, &msg), own);
                });
            }
            if answered {
                return self.finish_client(now, key, tx);
            }
        }
        self.with_call(now, Some(key), |core, call| match own {
            Own::Teardown => {}
            Own::Refresh => session_timer::own_refresh_answered(core, call, now, status, &msg),
            Own::Transfer => transfer::new_leg_answered(core, call, now, status, &msg),
        });
        // The 2xx of Sluice's own INVITEs (a transfer's, a refresh) keep their role: their
        // retransmissions get the ACK again.
        let invite = msg.cseq().is_some_and(|(_, m)| m == Method::Invite);
        let keeps = status < 300 && (own == Own::Transfer || (own == Own::Refresh && invite));
        if !keeps {
            self.finish_client(now, key, tx);
        }
    }

    /// One of Sluice's own requests got no answer (`status` 408, or 503 for the transport).
    pub(crate) fn on_own_failure(&mut self, now: Instant, key: CallKey, own: Own, status: u16) {
        let failed = Message::response(status, reason_phrase(status));
        self.with_call(now, Some(key), |core, call| match own {
            Own::Teardown => {}
            Own::Refresh => session_timer::own_refresh_answered(core, call, now, status, &failed),
            Own::Transfer => transfer::new_leg_answered(core, call, now, status, &failed),
        });
    }
}

/// Send `sent` again with the trunk's credentials for the challenge `resp`, when it went to
/// the trunk and can be answered. A CANCEL is not (it follows its INVITE); a re-INVITE only when
/// it is Sluice's own refresh, whose ACK then names the new CSeq. `true` when it went.
fn challenged<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (sent, resp): (&Message, &Message),
    own: Own,
) -> bool {
    let refresh_invite = own == Own::Refresh && sent.method() == Some(&Method::Invite);
    if matches!(sent.method(), Some(Method::Cancel | Method::Ack) | None)
        || (sent.method() == Some(&Method::Invite) && !refresh_invite)
    {
        return false;
    }
    let leg = [LegId::Caller, LegId::Callee]
        .into_iter()
        .find(|l| sent.call_id() == Some(call.legs.get(*l).call_id.as_str()));
    let Some(leg) = leg else {
        return false;
    };
    let Some(again) = failover::own_request_with_credentials(core, call, leg, (sent, resp)) else {
        return false;
    };
    if refresh_invite {
        session_timer::reinvite_sent_again(call, &again);
    }
    let hop = call.legs.get(leg).next_hop();
    call.pending = call.pending.saturating_add(1);
    core.send(now, again, hop, own.role(call.key));
    true
}
