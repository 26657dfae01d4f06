//! `tel-uri-request`: a new call's INVITE toward the trunk carries a `tel:` URI in its
//! Request-Line (`INVITE tel:+12345678 SIP/2.0`), for providers that route on it. Requests
//! inside a dialog go to the far side's Contact and are left alone.

use sluice_sdk::{export_plugin, uri, CallContext, Interest, Message, Plugin, Verdict};

pub struct TelUriRequest;

/// A new call's INVITE toward the trunk (no To tag yet).
pub fn is_initial_invite_toward_trunk(ctx: &CallContext, msg: &Message) -> bool {
    ctx.toward_trunk()
        && msg.method().as_deref() == Some("INVITE")
        && msg
            .header("To")
            .is_some_and(|to| uri::param(&to, "tag").is_none())
}

impl Plugin for TelUriRequest {
    fn interest(&self) -> Interest {
        // A new call's INVITE is all it rewrites.
        Interest::none().requests(&["INVITE"])
    }

    fn new() -> Result<Self, String> {
        Ok(TelUriRequest)
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        if is_initial_invite_toward_trunk(ctx, msg) {
            if let Some(tel) = msg.request_uri().and_then(|u| uri::to_tel(&u)) {
                if let Err(e) = msg.set_request_uri(&tel) {
                    sluice_sdk::warn!("cannot write {tel}: {e}");
                }
            }
        }
        Verdict::Continue
    }
}

export_plugin!(TelUriRequest);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};

    #[test]
    fn tel_uri_in_the_request_line() {
        let mut h = Harness::<TelUriRequest>::new();
        let out = h.run(&CallContext::outbound("loop"), &invite("+12345678", "100"));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(
            out.text().starts_with("INVITE tel:+12345678 SIP/2.0\r\n"),
            "{}",
            out.text()
        );
        // Nothing else changes.
        assert_eq!(out.header("To"), Some("<sip:+12345678@trunk.example.com>"));
    }

    #[test]
    fn leaves_other_messages_alone() {
        let mut h = Harness::<TelUriRequest>::new();
        let text = invite("+12345678", "100");
        let toward_pbx = h.run(&CallContext::inbound("loop"), &text);
        assert_eq!(
            toward_pbx.request_uri(),
            Some("sip:+12345678@trunk.example.com")
        );
        let in_dialog = text.replace(
            "To: <sip:+12345678@trunk.example.com>",
            "To: <sip:+12345678@trunk.example.com>;tag=far",
        );
        let reinvite = h.run(&CallContext::outbound("loop"), &in_dialog);
        assert_eq!(
            reinvite.request_uri(),
            Some("sip:+12345678@trunk.example.com")
        );
        let bye = text.replace("INVITE sip:", "BYE sip:");
        assert_eq!(
            h.run(&CallContext::outbound("loop"), &bye).request_uri(),
            Some("sip:+12345678@trunk.example.com")
        );
    }
}
