//! `tel-uri-to`: a new call's INVITE toward the trunk carries a `tel:` URI in its To header
//! (`To: <tel:+12345678>`). The dialog keeps that To for its later requests.

use sluice_sdk::{export_plugin, uri, CallContext, Interest, Message, Plugin, Verdict};

pub struct TelUriTo;

impl Plugin for TelUriTo {
    fn interest(&self) -> Interest {
        // A new call's INVITE is all it rewrites.
        Interest::none().requests(&["INVITE"])
    }

    fn new() -> Result<Self, String> {
        Ok(TelUriTo)
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        if !ctx.toward_trunk() || msg.method().as_deref() != Some("INVITE") {
            return Verdict::Continue;
        }
        let Some(to) = msg.header("To") else {
            return Verdict::Continue;
        };
        if uri::param(&to, "tag").is_some() {
            return Verdict::Continue;
        }
        let new = uri::name_addr_uri(&to)
            .and_then(uri::to_tel)
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
}
