//! `telnyx`: the brand plugin for Telnyx SIP trunking. Telnyx takes and sends E.164 numbers
//! with `+`; numbers are written that way toward Telnyx and toward the PBX (settings as for
//! `generic`).

use sluice_sdk::e164::{Format, NumberPolicy};
use sluice_sdk::{export_plugin, Interest, Plugin};

pub struct Telnyx {
    numbers: NumberPolicy,
}

impl Plugin for Telnyx {
    fn interest(&self) -> Interest {
        // Nothing but the numbers, which are declared: no message of a call reaches it.
        Interest::none()
    }

    fn new() -> Result<Self, String> {
        Ok(Telnyx {
            numbers: NumberPolicy::from_settings(Format::Plus, Format::Plus)?,
        })
    }

    fn number_policy(&self) -> Option<NumberPolicy> {
        // Formats only: Sluice writes the numbers without calling the plugin.
        Some(self.numbers.clone())
    }
}

export_plugin!(Telnyx);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};
    use sluice_sdk::CallContext;

    #[test]
    fn e164_both_ways() {
        let mut h = Harness::<Telnyx>::new();
        let out = h.invite(
            &CallContext::outbound("telnyx"),
            &invite("15552234567", "100"),
        );
        assert_eq!(
            out.request_uri(),
            Some("sip:+15552234567@trunk.example.com")
        );
        // An extension is not a phone number: left as it is.
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:100@192.0.2.1:5080>;tag=sluice1")
        );
        let out = h.invite(
            &CallContext::inbound("telnyx"),
            &invite("15552234567", "+442079460018"),
        );
        assert_eq!(
            out.request_uri(),
            Some("sip:+15552234567@trunk.example.com")
        );
        assert!(out.errors.is_empty());
    }
}
