//! `strip-plus`: remove the `+` from the called number of outbound calls
//! (`+15552234567` → `15552234567`), for trunks that refuse it.
//!
//! ```toml
//! [plugin.strip-plus.settings]
//! numbers = "called"   # called | calling | both
//! ```

use sluice_sdk::{e164, export_plugin, Direction, Interest, NumberContext, NumberKind, Plugin};

pub struct StripPlus {
    called: bool,
    calling: bool,
}

impl Plugin for StripPlus {
    fn interest(&self) -> Interest {
        // Numbers only: the messages of a call never reach it.
        Interest::none().numbers()
    }

    fn new() -> Result<Self, String> {
        let which = sluice_sdk::setting("numbers").unwrap_or_else(|| "called".into());
        let (called, calling) = match which.as_str() {
            "called" => (true, false),
            "calling" => (false, true),
            "both" => (true, true),
            other => {
                return Err(format!(
                    "numbers = \"{other}\": expected called, calling or both"
                ))
            }
        };
        Ok(StripPlus { called, calling })
    }

    fn normalize_number(&mut self, ctx: &NumberContext, number: &str) -> Option<String> {
        let wanted = match ctx.kind {
            NumberKind::Called => self.called,
            NumberKind::Calling => self.calling,
        };
        (wanted && ctx.direction == Direction::Outbound && number.starts_with('+'))
            .then(|| e164::strip_plus(number).to_string())
    }
}

export_plugin!(StripPlus);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};
    use sluice_sdk::CallContext;

    #[test]
    fn plus_removed_from_the_called_number() {
        let mut h = Harness::<StripPlus>::new();
        let out = h.invite(
            &CallContext::outbound("loop"),
            &invite("+15552234567", "+15557654321"),
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.request_uri(), Some("sip:15552234567@trunk.example.com"));
        assert_eq!(
            out.header("To"),
            Some("<sip:15552234567@trunk.example.com>")
        );
        // The calling number keeps its + unless asked.
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:+15557654321@192.0.2.1:5080>;tag=sluice1")
        );
        let inbound = h.invite(&CallContext::inbound("loop"), &invite("+15552234567", "1"));
        assert_eq!(
            inbound.request_uri(),
            Some("sip:+15552234567@trunk.example.com")
        );
    }

    #[test]
    fn both_numbers_when_configured() {
        let mut h = Harness::<StripPlus>::new().setting("numbers", "both");
        let out = h.invite(
            &CallContext::outbound("loop"),
            &invite("+15552234567", "+15557654321"),
        );
        assert_eq!(
            out.header("P-Asserted-Identity"),
            Some("<sip:15557654321@192.0.2.1:5080>")
        );
        assert!(Harness::<StripPlus>::new()
            .setting("numbers", "all")
            .init()
            .is_err());
    }
}
