//! `tel-uri-request`: a new call's INVITE toward the trunk carries a `tel:` URI in its
//! Request-Line (`INVITE tel:+12345678 SIP/2.0`), for providers that route on it. Requests
//! inside a dialog go to the far side's Contact and are left alone.
//!
//! Only valid `tel:` URIs are written (RFC 3966): a global number (`+` and digits) as it is, a
//! national number of `default_country` (setting, `1` by default) made global, any other local
//! number with `;phone-context=` from the `phone_context` setting (a domain or a `+` prefix);
//! without one, such a number is left in its `sip:` URI.

use sluice_sdk::{export_plugin, CallContext, Interest, Message, Plugin, Verdict};

pub struct TelUriRequest {
    tel: sluice_sdk::uri::TelSettings,
}

impl Plugin for TelUriRequest {
    fn interest(&self) -> Interest {
        // A new call's INVITE is all it rewrites.
        Interest::none().requests(&["INVITE"])
    }

    fn new() -> Result<Self, String> {
        Ok(TelUriRequest {
            tel: sluice_sdk::uri::TelSettings::from_settings()?,
        })
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        // Only INVITEs reach it (its interest): one without a To tag starts a call.
        if ctx.toward_trunk() && msg.is_initial() {
            if let Some(tel) = msg.request_uri().and_then(|u| self.tel.to_tel(&u)) {
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
