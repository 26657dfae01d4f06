//! `single-via`: requests toward the trunk carry exactly one Via. Sluice is a B2BUA and always
//! sends its own Via only, so this rule set is a guard for trunks that refuse anything else:
//! a request that would leave with more than one Via is refused with 500 instead.

use sluice_sdk::{export_plugin, CallContext, Interest, Message, Plugin, Verdict};

pub struct SingleVia;

/// Via values in a message (lines may hold comma-separated values).
fn via_count(msg: &Message) -> usize {
    msg.headers("Via")
        .iter()
        .map(|line| line.split(',').filter(|v| !v.trim().is_empty()).count())
        .sum()
}

impl Plugin for SingleVia {
    fn interest(&self) -> Interest {
        Interest::none().requests(&["*"])
    }

    fn new() -> Result<Self, String> {
        Ok(SingleVia)
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        let method = msg.method().unwrap_or_default();
        if !ctx.toward_trunk() || via_count(msg) <= 1 || method == "ACK" || method == "BYE" {
            return Verdict::Continue;
        }
        sluice_sdk::counter("multiple_via", 1);
        sluice_sdk::warn!(
            "{method} toward {} would carry several Via headers",
            ctx.trunk
        );
        Verdict::reject(500, "Multiple Via")
    }
}

export_plugin!(SingleVia);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};

    #[test]
    fn one_via_passes_two_are_refused() {
        let mut h = Harness::<SingleVia>::new();
        let text = invite("+15552234567", "100");
        let out = h.run(&CallContext::outbound("loop"), &text);
        assert_eq!(out.verdict, Verdict::Continue);
        let two = text.replace(
            "Max-Forwards: 69\r\n",
            "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKinner\r\nMax-Forwards: 69\r\n",
        );
        let out = h.run(&CallContext::outbound("loop"), &two);
        assert_eq!(out.verdict, Verdict::reject(500, "Multiple Via"));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(h.counter("multiple_via"), 1);
        // Toward the PBX nothing is checked.
        let out = h.run(&CallContext::inbound("loop"), &two);
        assert_eq!(out.verdict, Verdict::Continue);
    }
}
