//! `generic`: the brand plugin for providers without one of their own. It writes numbers as
//! the settings say and leaves them as they are by default:
//!
//! ```toml
//! [plugin.generic.settings]
//! outbound_format = "as-is"   # as-is | e164 | digits: numbers toward the provider
//! inbound_format = "as-is"    # numbers toward the PBX
//! default_country = "1"       # country code of national numbers
//! ```

use sluice_sdk::e164::{Format, NumberPolicy};
use sluice_sdk::{export_plugin, Interest, NumberContext, Plugin};

pub struct Generic {
    numbers: NumberPolicy,
}

impl Plugin for Generic {
    fn interest(&self) -> Interest {
        // Numbers only: the messages of a call never reach it.
        Interest::none().numbers()
    }

    fn new() -> Result<Self, String> {
        Ok(Generic {
            numbers: NumberPolicy::from_settings(Format::AsIs, Format::AsIs)?,
        })
    }

    fn normalize_number(&mut self, ctx: &NumberContext, number: &str) -> Option<String> {
        self.numbers.normalize(ctx, number)
    }
}

export_plugin!(Generic);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};
    use sluice_sdk::{CallContext, Verdict};

    #[test]
    fn changes_nothing_by_default() {
        let mut h = Harness::<Generic>::new();
        let text = invite("+15552234567", "100");
        let out = h.invite(&CallContext::outbound("loop"), &text);
        assert_eq!(out.verdict, Verdict::Continue);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.message, sluice_sdk::testing::parse(&text));
        assert_eq!(out.attestation, None);
    }

    #[test]
    fn formats_from_settings() {
        let mut h = Harness::<Generic>::new()
            .setting("outbound_format", "digits")
            .setting("inbound_format", "e164");
        let out = h.invite(
            &CallContext::outbound("loop"),
            &invite("+15552234567", "100"),
        );
        assert_eq!(out.request_uri(), Some("sip:15552234567@trunk.example.com"));
        let out = h.invite(
            &CallContext::inbound("loop"),
            &invite("5552234567", "15557654321"),
        );
        assert_eq!(
            out.request_uri(),
            Some("sip:+15552234567@trunk.example.com")
        );
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:+15557654321@192.0.2.1:5080>;tag=sluice1")
        );
    }

    #[test]
    fn refuses_bad_settings() {
        let mut h = Harness::<Generic>::new().setting("outbound_format", "hex");
        let err = h.init().unwrap_err();
        assert!(err.contains("outbound_format"), "{err}");
        let mut h = Harness::<Generic>::new().setting("default_country", "+1");
        assert!(h.init().is_err());
    }
}
