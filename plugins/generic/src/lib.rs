//! `generic`: the brand plugin for providers without one of their own. It writes numbers as
//! the settings say and leaves them as they are by default, and chooses the STIR/SHAKEN
//! attestation of outbound calls when told how:
//!
//! ```toml
//! [plugin.generic.settings]
//! outbound_format = "as-is"   # as-is | e164 | digits: numbers toward the provider
//! inbound_format = "as-is"    # numbers toward the PBX
//! default_country = "1"       # country code of national numbers
//! attestation = "B"           # A | B | C | none; absent: no opinion (the trunk's default)
//! full_attestation_numbers = ["1555201"]  # calling numbers (prefixes) attested A
//! ```

use sluice_sdk::e164::{Format, NumberPolicy};
use sluice_sdk::{export_plugin, Attestation, CallContext, Interest, Message, Plugin};

pub struct Generic {
    numbers: NumberPolicy,
    /// The attestation of an outbound call, and the calling numbers (prefixes, digits only)
    /// that get A instead.
    attestation: Option<Attestation>,
    full: Vec<String>,
}

fn attestation_setting() -> Result<Option<Attestation>, String> {
    match sluice_sdk::setting("attestation").as_deref() {
        None => Ok(None),
        Some("A") => Ok(Some(Attestation::A)),
        Some("B") => Ok(Some(Attestation::B)),
        Some("C") => Ok(Some(Attestation::C)),
        Some("none") => Ok(Some(Attestation::None)),
        Some(v) => Err(format!("attestation = \"{v}\": expected A, B, C or none")),
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

impl Plugin for Generic {
    fn interest(&self) -> Interest {
        // The attestation when configured (numbers are declared): the messages of a call
        // never reach it.
        let i = Interest::none();
        if self.attestation.is_some() || !self.full.is_empty() {
            i.attestation()
        } else {
            i
        }
    }

    fn new() -> Result<Self, String> {
        let full: Vec<String> = sluice_sdk::setting_list("full_attestation_numbers")
            .iter()
            .map(|n| digits(n))
            .collect();
        if full.iter().any(String::is_empty) {
            return Err("full_attestation_numbers: every entry needs digits".into());
        }
        Ok(Generic {
            numbers: NumberPolicy::from_settings(Format::AsIs, Format::AsIs)?,
            attestation: attestation_setting()?,
            full,
        })
    }

    fn number_policy(&self) -> Option<NumberPolicy> {
        // Formats only: Sluice writes the numbers without calling the plugin.
        Some(self.numbers.clone())
    }

    fn attestation(&mut self, _: &CallContext, msg: &Message) -> Option<Attestation> {
        let calling = msg
            .header_user("P-Asserted-Identity")
            .or_else(|| msg.header_user("From"))
            .map(|u| digits(&u))
            .unwrap_or_default();
        if !calling.is_empty() && self.full.iter().any(|p| calling.starts_with(p.as_str())) {
            return Some(Attestation::A);
        }
        self.attestation
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
    fn attestation_from_settings() {
        let mut h = Harness::<Generic>::new()
            .setting("attestation", "B")
            .setting_list("full_attestation_numbers", &["+1 555 2234"]);
        let ctx = CallContext::outbound("loop");
        // `invite(called, calling)`.
        assert_eq!(
            h.invite(&ctx, &invite("+15557654321", "+15552234567"))
                .attestation,
            Some(Attestation::A)
        );
        assert_eq!(
            h.invite(&ctx, &invite("+15557654321", "+15559990000"))
                .attestation,
            Some(Attestation::B)
        );
        let mut h = Harness::<Generic>::new().setting("attestation", "D");
        assert!(h.init().unwrap_err().contains("attestation"));
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
