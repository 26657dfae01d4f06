//! The self-check a plugin version passes before it is installed: a sample call through every
//! hook it takes, on a fresh instance (which then serves the first calls).

use crate::bindings::sluice::plugin::types as wit;
use crate::loaded::{Failure, Live, LoadedPlugin};
use sluice_sip::Message;

/// A sample call through every hook, on a fresh instance: the numbers, the message hook on the
/// INVITE and its 200 both ways (what the interest lets through), the attestation.
pub(crate) fn self_check(p: &LoadedPlugin) -> Result<Live, Failure> {
    let mut live = p.instantiate()?;
    let mut msg = sample_invite();
    let mut original = msg.clone();
    let mut ctx = wit::CallContext {
        call: 0,
        direction: wit::Direction::Outbound,
        leg: wit::Leg::External,
        trunk: "self-check".into(),
        brand: "generic".into(),
        tenant: None,
        source: "127.0.0.1:5060".into(),
        transport: wit::Transport::Udp,
    };
    for kind in [wit::NumberKind::Called, wit::NumberKind::Calling] {
        let n = wit::NumberContext {
            direction: wit::Direction::Outbound,
            leg: wit::Leg::External,
            trunk: ctx.trunk.clone(),
            brand: ctx.brand.clone(),
            tenant: None,
            kind,
        };
        live.normalize_number(p, &n, "+15552234567")?;
    }
    // The message hook gets only what its interest lets through, as in Sluice: the sample
    // INVITE, and its 200 for a plugin that wants responses.
    let mut ok = sample_ok();
    let mut ok_original = ok.clone();
    for leg in [wit::Leg::External, wit::Leg::Internal] {
        ctx.leg = leg;
        ctx.direction = match leg {
            wit::Leg::External => wit::Direction::Outbound,
            wit::Leg::Internal => wit::Direction::Inbound,
        };
        if p.interest.wants(&msg) {
            live.on_message(p, &ctx, &mut msg, &mut original, true)?;
        }
        if p.interest.wants(&ok) {
            live.on_message(p, &ctx, &mut ok, &mut ok_original, true)?;
        }
        if leg == wit::Leg::External {
            live.attestation(p, &ctx, &mut msg)?;
        }
    }
    Ok(live)
}

/// The sample INVITE's 200, as the callee's side answers it.
fn sample_ok() -> Message {
    let text = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKselfcheck;rport\r\n\
        From: <sip:+15557654321@127.0.0.1:5080>;tag=selfcheck\r\n\
        To: <sip:+15552234567@trunk.invalid>;tag=selfcheck-callee\r\n\
        Call-ID: selfcheck\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:+15552234567@127.0.0.1:5090>\r\n\
        Content-Length: 0\r\n\r\n";
    sluice_sip::parse_message(text.as_bytes()).unwrap_or_default()
}

fn sample_invite() -> Message {
    let text = "INVITE sip:+15552234567@trunk.invalid SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKselfcheck;rport\r\n\
        Max-Forwards: 69\r\n\
        From: <sip:+15557654321@127.0.0.1:5080>;tag=selfcheck\r\n\
        To: <sip:+15552234567@trunk.invalid>\r\n\
        Call-ID: selfcheck\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:+15557654321@127.0.0.1:5080>\r\n\
        Content-Length: 0\r\n\r\n";
    sluice_sip::parse_message(text.as_bytes()).unwrap_or_default()
}
