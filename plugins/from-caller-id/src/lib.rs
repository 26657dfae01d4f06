//! `from-caller-id`: the From user of a new call's INVITE toward the trunk is set to the
//! caller's outbound caller ID. The caller ID is the `caller_id` setting when given, else the
//! number the PBX asserted (P-Asserted-Identity, then Remote-Party-ID), already normalised by
//! the brand; without one the From stays as it is.
//!
//! ```toml
//! [plugin.from-caller-id.settings]
//! caller_id = "+15552230000"     # optional: one caller ID for every call on the trunk
//! ```

use sluice_sdk::{export_plugin, uri, CallContext, Interest, Message, Plugin, Verdict};

pub struct FromCallerId {
    fixed: Option<String>,
}

impl FromCallerId {
    fn caller_id(&self, msg: &Message) -> Option<String> {
        if let Some(n) = &self.fixed {
            return Some(n.clone());
        }
        ["P-Asserted-Identity", "Remote-Party-ID"]
            .iter()
            .find_map(|h| msg.header_user(h))
    }
}

impl Plugin for FromCallerId {
    fn interest(&self) -> Interest {
        // A new call's INVITE is all it rewrites.
        Interest::none().requests(&["INVITE"])
    }

    fn new() -> Result<Self, String> {
        let fixed = sluice_sdk::setting("caller_id");
        if let Some(n) = &fixed {
            let digits = n.strip_prefix('+').unwrap_or(n);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "caller_id = \"{n}\": expected digits, optionally after +"
                ));
            }
        }
        Ok(FromCallerId { fixed })
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        if !ctx.toward_trunk() || msg.method().as_deref() != Some("INVITE") {
            return Verdict::Continue;
        }
        let Some(from) = msg.header("From") else {
            return Verdict::Continue;
        };
        // Only a new call: inside a dialog From must stay what it was.
        if msg
            .header("To")
            .is_some_and(|to| uri::param(&to, "tag").is_some())
        {
            return Verdict::Continue;
        }
        let Some(id) = self.caller_id(msg) else {
            return Verdict::Continue;
        };
        let new = uri::name_addr_uri(&from)
            .and_then(|u| uri::with_user(u, &id))
            .and_then(|u| uri::with_name_addr_uri(&from, &u));
        if let Some(new) = new {
            if let Err(e) = msg.set_header("From", &new) {
                sluice_sdk::warn!("cannot write From {new}: {e}");
            }
        }
        Verdict::Continue
    }
}

export_plugin!(FromCallerId);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};

    #[test]
    fn from_user_becomes_the_asserted_number() {
        let mut h = Harness::<FromCallerId>::new();
        let text = invite("+15552234567", "100").replace(
            "P-Asserted-Identity: <sip:100@192.0.2.1:5080>",
            "P-Asserted-Identity: \"Sales\" <sip:+15557654321@192.0.2.1:5080>",
        );
        let out = h.run(&CallContext::outbound("loop"), &text);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:+15557654321@192.0.2.1:5080>;tag=sluice1")
        );
    }

    #[test]
    fn fixed_caller_id_and_bad_settings() {
        let mut h = Harness::<FromCallerId>::new().setting("caller_id", "+15552000000");
        let out = h.run(
            &CallContext::outbound("loop"),
            &invite("+15552234567", "100"),
        );
        assert_eq!(
            out.header("From"),
            Some("\"Alice\" <sip:+15552000000@192.0.2.1:5080>;tag=sluice1")
        );
        let back = h.run(
            &CallContext::inbound("loop"),
            &invite("+15552234567", "100"),
        );
        assert_eq!(
            back.header("From"),
            Some("\"Alice\" <sip:100@192.0.2.1:5080>;tag=sluice1")
        );
        assert!(Harness::<FromCallerId>::new()
            .setting("caller_id", "abc")
            .init()
            .is_err());
    }
}
