//! `acme`: an example rule set for a carrier we call Acme, written the way a third party would
//! write a Sluice plugin. Acme wants, on calls sent to it:
//!
//! - the called number with its technical prefix in front (`prefix` setting, `1010` by default);
//! - our account in an `X-Acme-Account` header (`account` setting, required);
//! - no calls to premium-rate numbers (+1 900): those are refused with 403 before they leave.

use sluice_sdk::{
    e164, export_plugin, CallContext, Direction, Interest, Message, NumberContext, NumberKind,
    Plugin, Verdict,
};

pub struct Acme {
    prefix: String,
    account: String,
}

impl Plugin for Acme {
    fn interest(&self) -> Interest {
        // The called number, and the INVITE it refuses or marks.
        Interest::none().numbers().requests(&["INVITE"])
    }

    fn new() -> Result<Self, String> {
        let account = sluice_sdk::setting("account").ok_or("the `account` setting is required")?;
        let prefix = sluice_sdk::setting("prefix").unwrap_or_else(|| "1010".into());
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("prefix = \"{prefix}\": digits only"));
        }
        Ok(Acme { prefix, account })
    }

    fn normalize_number(&mut self, ctx: &NumberContext, number: &str) -> Option<String> {
        // Only the called number, only toward Acme.
        if ctx.direction != Direction::Outbound || ctx.kind != NumberKind::Called {
            return None;
        }
        let n = e164::E164::parse(number, "1")?;
        Some(format!("{}{}", self.prefix, n.to_digits()))
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        // A new call's INVITE toward Acme (not a re-INVITE inside the call).
        if !ctx.toward_trunk() || !msg.is_initial_invite() {
            return Verdict::Continue;
        }
        // Numbers were normalised before this hook: the called number has the prefix.
        let called = msg.request_uri_user().unwrap_or_default();
        let national = called.strip_prefix(&self.prefix).unwrap_or(&called);
        if national.starts_with("1900") {
            sluice_sdk::counter("premium_refused", 1);
            return Verdict::reject(403, "Premium Numbers Not Allowed");
        }
        if let Err(e) = msg.set_header("X-Acme-Account", &self.account) {
            sluice_sdk::warn!("cannot add the account header: {e}");
        }
        Verdict::Continue
    }
}

export_plugin!(Acme);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};

    fn acme() -> Harness<Acme> {
        Harness::<Acme>::new().setting("account", "AC-42")
    }

    #[test]
    fn prefix_and_account_toward_acme() {
        let mut h = acme();
        let out = h.invite(
            &CallContext::outbound("acme"),
            &invite("+15552234567", "100"),
        );
        assert_eq!(out.verdict, Verdict::Continue);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            out.request_uri(),
            Some("sip:101015552234567@trunk.example.com")
        );
        assert_eq!(out.header("X-Acme-Account"), Some("AC-42"));
    }

    #[test]
    fn premium_numbers_are_refused() {
        let mut h = acme();
        let out = h.invite(
            &CallContext::outbound("acme"),
            &invite("+19005550000", "100"),
        );
        assert_eq!(
            out.verdict,
            Verdict::reject(403, "Premium Numbers Not Allowed")
        );
        assert_eq!(h.counter("premium_refused"), 1);
    }

    #[test]
    fn the_account_is_required() {
        let err = Harness::<Acme>::new().init().unwrap_err();
        assert!(err.contains("account"), "{err}");
    }
}
