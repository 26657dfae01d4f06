//! Transfer (RFC 3515 REFER, RFC 3891 Replaces) relayed across the B2BUA with topology hiding.
//! A REFER inside a call goes to the other leg with its `Refer-To` rewritten so that no address
//! of one side reaches the other:
//!
//! - a blind transfer's target keeps its user and parameters, with Sluice's address on the far
//!   side as its host: the transferee's new INVITE comes back through Sluice and is routed like
//!   any call from that side;
//! - an attended transfer's `Replaces` names a dialog of another call through Sluice, on the
//!   referrer's side: it becomes that call's other leg (its Call-ID and tags as the far side
//!   knows them) and the target that leg's remote target, so that the transferee reaches the
//!   party directly and replaces its dialog with Sluice;
//! - a `Replaces` naming a dialog Sluice does not carry would leak the referrer's side: 403.
//!
//! `Referred-By` crosses rehosted like the identity headers; the NOTIFYs (`message/sipfrag`)
//! come back as any in-dialog request. Trunks with `transfer = "refuse"` get 403.

use crate::call::LegId;
use crate::calls::{Call, CallState, Calls};
use crate::config::Transfer;
use crate::core::Core;
use crate::dialog::Dialog;
use crate::headers::local_uri_host;
use crate::hooks::Hooks;
use crate::in_dialog;
use sluice_sip::{reason_phrase, HeaderName, Message, NameAddr, Uri};
use sluice_transaction::{Flow, ServerTxId};
use std::time::Instant;
use tracing::debug;

/// A REFER inside a call, from `leg` (`replacing`: what the engine found for its `Replaces`).
pub fn refer<H: Hooks>(
    core: &mut Core<H>,
    call: &mut Call,
    now: Instant,
    (leg, tx, flow): (LegId, ServerTxId, Flow),
    mut msg: Message,
    replacing: &Replacing,
) {
    if !in_dialog::accept(core, call, now, (leg, tx, flow), &msg) {
        return;
    }
    let refused = core
        .cfg
        .trunks
        .iter()
        .find(|t| t.name == call.trunk)
        .is_some_and(|t| t.transfer == Transfer::Refuse);
    if refused || !matches!(call.state, CallState::Established) {
        // RFC 3515: a REFER the recipient will not act on is refused; 403 names the policy.
        return core.reply(now, tx, &msg, 403, reason_phrase(403));
    }
    let rewritten = refer_to(&msg, call.legs.get(leg.other()), replacing);
    match rewritten {
        Ok(v) => {
            debug!(
                call = call.key,
                attended = matches!(replacing, Replacing::Mapped(_)),
                "REFER relayed"
            );
            msg.headers.set(HeaderName::ReferTo, v);
            in_dialog::relay_request(core, call, now, (leg, tx), msg);
        }
        Err(status) => core.reply(now, tx, &msg, status, reason_phrase(status)),
    }
}

/// What a REFER's `Replaces` names, mapped to the far side of the call it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    call_id: String,
    /// The far party's tag (the `to-tag` from its point of view).
    to_tag: String,
    /// Sluice's tag in that dialog.
    from_tag: String,
    /// Where the far party is reached.
    target: String,
}

/// What the engine found for a REFER's `Replaces` before the call handles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replacing {
    /// A blind transfer.
    None,
    /// A dialog of a call through Sluice.
    Mapped(Mapped),
    /// Malformed, or a dialog Sluice does not carry.
    Unknown,
}

/// `Replaces` of a REFER's `Refer-To`, decoded: (Call-ID, to-tag, from-tag).
fn replaces_of(refer: &Message) -> Option<Option<(String, String, String)>> {
    let refer_to = refer.header(&HeaderName::ReferTo)?;
    let na = NameAddr::parse(refer_to)?;
    let uri = Uri::parse(na.uri)?;
    let value = uri
        .headers
        .trim_start_matches('?')
        .split('&')
        .find_map(|h| {
            let (k, v) = h.split_once('=')?;
            k.eq_ignore_ascii_case("replaces").then_some(v)
        })?;
    let decoded = percent_decode(value)?;
    let mut parts = decoded.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => {
                to_tag = Some(v.trim().to_string());
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => {
                from_tag = Some(v.trim().to_string());
            }
            _ => {}
        }
    }
    Some(match (to_tag, from_tag) {
        (Some(t), Some(f)) if !call_id.is_empty() => Some((call_id, t, f)),
        _ => None,
    })
}

/// Find the dialog a REFER's `Replaces` names among the calls: its to-tag is Sluice's tag in
/// that dialog, its from-tag the referrer's.
pub fn lookup(calls: &Calls, refer: &Message) -> Replacing {
    let Some(found) = replaces_of(refer) else {
        return Replacing::None;
    };
    let Some((call_id, to_tag, from_tag)) = found else {
        return Replacing::Unknown;
    };
    let Some((key, leg)) = calls.by_tag(&to_tag) else {
        return Replacing::Unknown;
    };
    let Some(call) = calls.get(key) else {
        return Replacing::Unknown;
    };
    let named = call.legs.get(leg);
    if named.call_id != call_id || named.remote_tag.as_deref() != Some(from_tag.as_str()) {
        return Replacing::Unknown;
    }
    let other = call.legs.get(leg.other());
    let Some(far_tag) = other.remote_tag.clone() else {
        return Replacing::Unknown;
    };
    Replacing::Mapped(Mapped {
        call_id: other.call_id.clone(),
        to_tag: far_tag,
        from_tag: other.local_tag.clone(),
        target: other.remote_target.clone(),
    })
}

/// The `Refer-To` of a REFER relayed to leg `to`; `Err(status)` when it cannot cross.
pub fn refer_to(refer: &Message, to: &Dialog, replacing: &Replacing) -> Result<String, u16> {
    let value = refer.header(&HeaderName::ReferTo).ok_or(400_u16)?;
    let na = NameAddr::parse(value).ok_or(400_u16)?;
    match replacing {
        Replacing::Unknown => Err(403),
        Replacing::Mapped(m) => {
            let target = Uri::parse(&m.target)
                .map(|u| {
                    m.target
                        .get(..m.target.len().saturating_sub(u.headers.len()))
                })
                .unwrap_or(Some(m.target.as_str()))
                .unwrap_or(m.target.as_str());
            let replaces = format!("{};to-tag={};from-tag={}", m.call_id, m.to_tag, m.from_tag);
            Ok(format!("<{target}?Replaces={}>", percent_encode(&replaces)))
        }
        Replacing::None => {
            let uri = Uri::parse(na.uri).ok_or(400_u16)?;
            if uri.scheme.eq_ignore_ascii_case("tel") {
                return Ok(format!("<{}>", na.uri));
            }
            if !uri.is_sip() {
                return Err(400);
            }
            let user = uri.user.map(|u| format!("{u}@")).unwrap_or_default();
            let host = local_uri_host(to.flow.local);
            // The target's own parameters stay (user=phone); its headers do not cross.
            Ok(format!("<{}:{user}{host}{}>", uri.scheme, uri.params))
        }
    }
}

/// Characters that stay as they are in a URI header value (RFC 3261 `hnv-unreserved` and
/// `unreserved`).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:+$".contains(&b)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i.checked_add(1)?..i.checked_add(3)?)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i = i.checked_add(3)?;
        } else {
            out.push(b);
            i = i.checked_add(1)?;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_is_decoded_and_encoded_back() {
        let m = sluice_sip::parse_message(
            b"REFER sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              Refer-To: <sip:c@10.0.0.5?Replaces=abc%40pbx%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            replaces_of(&m),
            Some(Some(("abc@pbx".into(), "t1".into(), "f1".into())))
        );
        let enc = percent_encode("x@y;to-tag=1;from-tag=2");
        assert_eq!(enc, "x%40y%3Bto-tag%3D1%3Bfrom-tag%3D2");
        assert_eq!(
            percent_decode(&enc).as_deref(),
            Some("x@y;to-tag=1;from-tag=2")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
