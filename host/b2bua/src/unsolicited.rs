//! Requests outside any dialog that start no call: NOTIFY (a peer's unsolicited message-waiting
//! or keep-alive NOTIFYs), MESSAGE, SUBSCRIBE, PUBLISH, REFER. Sluice relays none of them: by
//! default they are refused (403; 489 for the event packages of SUBSCRIBE and PUBLISH, which
//! Sluice has none of); with `sip.unsolicited = "accept"`, NOTIFY and MESSAGE get 200 and are
//! dropped, to quiet a peer that repeats them. Counted by method and answer.

use crate::core::Core;
use crate::hooks::Hooks;
use sluice_sip::{reason_phrase, Message, Method};
use sluice_transaction::ServerTxId;
use std::time::Instant;
use tracing::debug;

/// The methods counted, for series at zero from the start.
pub const METHODS: [&str; 5] = ["NOTIFY", "MESSAGE", "SUBSCRIBE", "PUBLISH", "REFER"];

/// Answer an out-of-dialog request of one of [`METHODS`].
pub fn answer<H: Hooks>(core: &mut Core<H>, now: Instant, tx: ServerTxId, msg: &Message) {
    let Some(method) = msg.method() else {
        return;
    };
    let status = match method {
        Method::Notify | Method::Message if core.cfg.accept_unsolicited => 200,
        Method::Subscribe | Method::Publish => 489,
        _ => 403,
    };
    let answer = if status == 200 { "accepted" } else { "refused" };
    debug!(method = %method.as_str(), status, "a request outside any dialog");
    metrics::counter!("sluice_sip_unsolicited_total", "method" => method.as_str().to_string(), "answer" => answer)
        .increment(1);
    core.reply(now, tx, msg, status, reason_phrase(status));
}
