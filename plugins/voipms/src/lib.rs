//! `voipms`: the brand plugin for VoIP.ms. VoIP.ms signals NANP numbers as 11 digits without
//! `+` (`1NXXNXXXXXX`) and dials every other country as North American carriers do, `011` +
//! country code + number: numbers toward VoIP.ms are written so (format `nanp`), numbers toward
//! the PBX become E.164 with `+` (settings as for `generic`).

use sluice_sdk::e164::{Format, NumberPolicy};
use sluice_sdk::{export_plugin, Interest, Plugin};

pub struct Voipms {
    numbers: NumberPolicy,
}

impl Plugin for Voipms {
    fn interest(&self) -> Interest {
        // Nothing but the numbers, which are declared: no message of a call reaches it.
        Interest::none()
    }

    fn new() -> Result<Self, String> {
        Ok(Voipms {
            numbers: NumberPolicy::from_settings(Format::Nanp, Format::Plus)?,
        })
    }

    fn number_policy(&self) -> Option<NumberPolicy> {
        // Formats only: Sluice writes the numbers without calling the plugin.
        Some(self.numbers.clone())
    }
}

export_plugin!(Voipms);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};
    use sluice_sdk::{CallContext, NumberContext, NumberKind};

    #[test]
    fn nanp_digits_toward_voipms() {
        let mut h = Harness::<Voipms>::new();
        let out = h.invite(
            &CallContext::outbound("voipms"),
            &invite("+15552234567", "+15557654321"),
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.request_uri(), Some("sip:15552234567@trunk.example.com"));
        assert_eq!(
            out.header("To"),
            Some("<sip:15552234567@trunk.example.com>")
        );
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:15557654321@192.0.2.1:5080>;tag=sluice1")
        );
        let ten = NumberContext::outbound("voipms", NumberKind::Called);
        assert_eq!(h.number(&ten, "5552234567"), Ok(Some("15552234567".into())));
    }

    #[test]
    fn international_numbers_get_011_toward_voipms() {
        let mut h = Harness::<Voipms>::new();
        let called = NumberContext::outbound("voipms", NumberKind::Called);
        for (number, out) in [
            ("011442079460018", None),
            ("+442079460018", Some("011442079460018")),
            ("+33142685300", Some("01133142685300")),
            ("0033142685300", Some("01133142685300")),
            ("+14155550123", Some("14155550123")),
            // Not a NANP number (exchange 123): left as dialled.
            ("1235551234", None),
            ("100", None),
        ] {
            assert_eq!(
                h.number(&called, number),
                Ok(out.map(String::from)),
                "{number}"
            );
        }
    }

    #[test]
    fn e164_toward_the_pbx() {
        let mut h = Harness::<Voipms>::new();
        let out = h.invite(
            &CallContext::inbound("voipms"),
            &invite("15552234567", "15557654321"),
        );
        assert_eq!(
            out.request_uri(),
            Some("sip:+15552234567@trunk.example.com")
        );
        assert_eq!(
            out.header("P-Asserted-Identity"),
            Some("<sip:+15557654321@192.0.2.1:5080>")
        );
    }
}
