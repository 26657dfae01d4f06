//! Hung-call protection: a call whose far end vanished without a BYE (a crashed PBX, a lost
//! network) would otherwise run, and be billed, for ever. A trunk's maximum call duration ends
//! an answered call with BYE on both legs when it is reached, and counts it
//! (`sluice_calls_cut_total{trunk, reason="max-duration"}`). Session timers (RFC 4028) will live
//! here too.

use crate::call::LegId;
use crate::calls::{Call, CallState};
use crate::core::Core;
use crate::hooks::Hooks;
use std::time::Instant;
use tracing::warn;

/// The call was answered at `now`: arm its trunk's limit, if it has one.
pub fn answered<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    let limit = core
        .cfg
        .trunks
        .iter()
        .find(|t| t.name == call.trunk)
        .and_then(|t| t.max_call_duration);
    if let Some(limit) = limit {
        let at = sluice_transaction::after(now, limit);
        call.ends_at = Some(at);
        core.timers.push(at, call.key);
    }
}

/// A timer of the call fired: end it when its time is up.
pub fn on_timer<H: Hooks>(core: &mut Core<H>, call: &mut Call, now: Instant) {
    if call.ends_at.is_none_or(|at| now < at) || !matches!(call.state, CallState::Established) {
        return;
    }
    call.ends_at = None;
    warn!(call = call.key, trunk = %call.trunk, "the trunk's maximum call duration is reached: ending the call");
    metrics::counter!("sluice_calls_cut_total", "trunk" => call.trunk.to_string(), "reason" => "max-duration")
        .increment(1);
    core.send_bye(call, now, LegId::Caller);
    core.send_bye(call, now, LegId::Callee);
}
