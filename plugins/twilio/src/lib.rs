//! `twilio`: the brand plugin for Twilio Elastic SIP Trunking. Twilio signals and expects
//! E.164 numbers with `+` everywhere (Request-URI, To, From), so numbers are written as
//! `+CC…` toward Twilio, and toward the PBX as E.164 too (settings as for `generic`).
//! Twilio signs outbound calls itself; this plugin has no attestation opinion.

use sluice_sdk::e164::{Format, NumberPolicy};
use sluice_sdk::{export_plugin, Interest, Plugin};

pub struct Twilio {
    numbers: NumberPolicy,
}

impl Plugin for Twilio {
    fn interest(&self) -> Interest {
        // Nothing but the numbers, which are declared: no message of a call reaches it.
        Interest::none()
    }

    fn new() -> Result<Self, String> {
        Ok(Twilio {
            numbers: NumberPolicy::from_settings(Format::Plus, Format::Plus)?,
        })
    }

    fn number_policy(&self) -> Option<NumberPolicy> {
        // Formats only: Sluice writes the numbers without calling the plugin.
        Some(self.numbers.clone())
    }
}

export_plugin!(Twilio);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};
    use sluice_sdk::{CallContext, NumberContext, NumberKind};

    #[test]
    fn e164_with_plus_toward_twilio() {
        let mut h = Harness::<Twilio>::new();
        let out = h.invite(
            &CallContext::outbound("twilio"),
            &invite("5552234567", "15557654321"),
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            out.request_uri(),
            Some("sip:+15552234567@trunk.example.com")
        );
        assert_eq!(
            out.header("To"),
            Some("<sip:+15552234567@trunk.example.com>")
        );
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:+15557654321@192.0.2.1:5080>;tag=sluice1")
        );
        assert_eq!(
            out.header("P-Asserted-Identity"),
            Some("<sip:+15557654321@192.0.2.1:5080>")
        );
    }

    #[test]
    fn extensions_and_international_numbers() {
        let mut h = Harness::<Twilio>::new();
        let called = NumberContext::outbound("twilio", NumberKind::Called);
        assert_eq!(h.number(&called, "100"), Ok(None));
        assert_eq!(h.number(&called, "+15552234567"), Ok(None));
        assert_eq!(
            h.number(&called, "011442079460018"),
            Ok(Some("+442079460018".into()))
        );
        let inbound = NumberContext::inbound("twilio", NumberKind::Called);
        assert_eq!(h.number(&inbound, "+15552234567"), Ok(None));
    }
}
