//! Input the engine cannot take (it does not parse, a stream could not frame it, it fails
//! validation): a request other than ACK with a usable Via gets the RFC's answer statelessly
//! (400, 505, 513…) and is never acted on; anything else is dropped. Every case is counted; the
//! log says what really happened, at most once a second (with how many were not logged).

use crate::core::Core;
use crate::headers::add_agent;
use crate::hooks::Hooks;
use crate::metrics::EngineMetrics;
use bytes::Bytes;
use sluice_sip::{Message, Method};
use sluice_transaction::{reply_flow, response_to, Flow};
use std::time::Instant;
use tracing::warn;

/// Refuse `msg` (what could be read of it) from `flow` with `status` and `reason`.
pub fn refuse<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    msg: Option<&Message>,
    flow: Flow,
    (status, reason): (u16, &'static str),
) {
    core.stats.parse_errors = core.stats.parse_errors.saturating_add(1);
    EngineMetrics::parse_error(status);
    let answerable =
        msg.filter(|m| m.is_request() && m.method() != Some(&Method::Ack) && m.top_via().is_some());
    let answered = match answerable {
        Some(m) => {
            let mut resp = response_to(m, status, reason, None);
            if crate::guard::shows_agent(core, flow.remote.ip(), now) {
                add_agent(&mut resp, &core.cfg.user_agent);
            }
            core.emit(reply_flow(m, flow), Bytes::from(resp.to_bytes()));
            true
        }
        None => {
            core.stats.dropped = core.stats.dropped.saturating_add(1);
            false
        }
    };
    let Some(suppressed) = core.ingress_log.allow(now) else {
        return;
    };
    if answered {
        warn!(reason, from = %flow.remote, suppressed, "malformed request answered {status}");
    } else {
        warn!(reason, from = %flow.remote, suppressed, "malformed message dropped (nothing to answer)");
    }
}
