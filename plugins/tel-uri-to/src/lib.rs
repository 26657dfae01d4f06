//! `tel-uri-to`: a new call's INVITE toward the trunk carries a `tel:` URI in its To header
//! (`To: <tel:+12345678>`). The dialog keeps that To for its later requests.
//!
//! Only valid `tel:` URIs are written (RFC 3966): a global number (`+` and digits) as it is, a
//! national number of `default_country` (setting, `1` by default) made global, any other local
//! number with `;phone-context=` from the `phone_context` setting (a domain or a `+` prefix);
//! without one, such a number is left in its `sip:` URI.

use sluice_sdk::{export_plugin, uri, CallContext, Interest, Message, Plugin, Verdict};

pub struct TelUriTo {
    tel: uri::TelSettings,
}

impl Plugin for TelUriTo {
    fn interest(&self) -> Interest {
        // A new call's INVITE is all it rewrites.
        Interest::none().requests(&["INVITE"])
    }

    fn new() -> Result<Self, String> {
        Ok(TelUriTo {
            tel: uri::TelSettings::from_settings()?,
        })
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        if !ctx.toward_trunk() || !msg.is_initial_invite() {
            return Verdict::Continue;
        }
        let Some(to) = msg.header("To") else {
            return Verdict::Continue;
        };
        let new = uri::name_addr_uri(&to)
            .and_then(|u| self.tel.to_tel(u))
            .and_then(|tel| uri::with_name_addr_uri(&to, &tel));
        if let Some(new) = new {
            if let Err(e) = msg.set_header("To", &new) {
                sluice_sdk::warn!("cannot write To {new}: {e}");
            }
        }
        Verdict::Continue
    }
}

export_plugin!(TelUriTo);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};

    #[test]
    fn tel_uri_in_to() {
        let mut h = Harness::<TelUriTo>::new();
        let out = h.run(&CallContext::outbound("loop"), &invite("+12345678", "100"));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.header("To"), Some("<tel:+12345678>"));
        assert_eq!(out.request_uri(), Some("sip:+12345678@trunk.example.com"));
        let inbound = h.run(&CallContext::inbound("loop"), &invite("+12345678", "100"));
        assert_eq!(
            inbound.header("To"),
            Some("<sip:+12345678@trunk.example.com>")
        );
    }

    #[test]
    fn only_valid_tel_uris_are_written() {
        // (called number, settings, the To the trunk gets)
        for (called, settings, to) in [
            ("4155550123", vec![], "<tel:+14155550123>"),
            ("14155550123", vec![], "<tel:+14155550123>"),
            ("+1-415-555-0123", vec![], "<tel:+14155550123>"),
            (
                "02079460018",
                vec![("default_country", "44")],
                "<tel:+442079460018>",
            ),
            // No tel: form without a phone-context: left as it is.
            ("100", vec![], "<sip:100@trunk.example.com>"),
            ("1235551234", vec![], "<sip:1235551234@trunk.example.com>"),
            (
                "100",
                vec![("phone_context", "pbx.example.com")],
                "<tel:100;phone-context=pbx.example.com>",
            ),
            (
                "*72",
                vec![("phone_context", "+1")],
                "<tel:*72;phone-context=+1>",
            ),
        ] {
            let mut h = Harness::<TelUriTo>::new();
            for (k, v) in &settings {
                h = h.setting(k, v);
            }
            let out = h.run(&CallContext::outbound("loop"), &invite(called, "100"));
            assert!(out.errors.is_empty(), "{called}: {:?}", out.errors);
            assert_eq!(out.header("To"), Some(to), "{called} {settings:?}");
        }
        // A bad setting is refused at load.
        let mut bad = Harness::<TelUriTo>::new().setting("phone_context", "not a domain");
        assert!(bad.init().is_err());
    }
}
