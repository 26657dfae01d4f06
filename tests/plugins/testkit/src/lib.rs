//! A plugin for Sluice's tests. Settings:
//!
//! - `mode`: `tag` (default), `loop`, `trap`, `membomb`, `garbage`, `reject`, `every-loop`,
//!   `edit-then-trap` and `edit-then-loop` (valid edits first, then a failure: fail-open must
//!   roll them back), and `fs`, `net`, `env`, which try to reach a file, the network and the
//!   environment.
//! - `reject` refuses with 403 `Testkit Says No`, or with the status's standard phrase when the
//!   To user ends in `0`.
//! - `trigger`: misbehave only on messages whose To user starts with this (default `666`), so
//!   that the plugin passes Sluice's self-check and fails on the calls a test chooses.
//!   `every-loop` loops on every message, self-check included.
//! - `label`: what `tag` writes.
//!
//! `show-kind` writes `X-Kind: request` from the request hook and `X-Kind: response` from the
//! response hook; `only` (`requests` or `responses`) narrows the interest to that kind of
//! message (every hook and message by default).
//!
//! `show-source` writes the call context's source address into `X-Source` of every message.
//!
//! `show-context` writes the whole call context into `X-Context` of every message
//! (`call=7;direction=outbound;leg=external;trunk=t;brand=generic;tenant=-;source=…;transport=udp`),
//! and traps on a message whose To user starts with the trigger, so that a test sees what a
//! fresh instance is told.
//!
//! `show-crypto` writes the first `a=crypto` line of the body it was lent (or `none`) into
//! `X-Crypto` of every message, so that a test can see what a plugin is shown of SRTP keys.
//!
//! `tag` adds `X-Testkit: <label> v1` (or `v2` when built with the `v2` feature) to every
//! message, so a test can see which version handled which message.
//!
//! `number_country`: declare the number policy E.164 both ways with this country code (checked
//! by Sluice, not here). Its number hook writes `+999` whenever it is called, so a test sees
//! whether Sluice wrote a declared number itself or called the hook.
//!
//! `declare`: header edits to declare (`add NAME: VALUE`, `set NAME: VALUE`, `remove NAME`),
//! passed to Sluice as they are (checked by Sluice, not here). With the `tag` mode, a test sees
//! whether Sluice made them itself (no `X-Testkit` line from the hook) or called the hook.

use sluice_sdk::e164::{Format, NumberPolicy};
use sluice_sdk::{
    export_plugin, uri, CallContext, HeaderEdit, Interest, Message, NumberContext, Plugin, Verdict,
};

const GENERATION: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

pub struct Testkit {
    mode: String,
    trigger: String,
    label: String,
    hoard: Vec<Vec<u8>>,
    number_country: Option<String>,
    only: Option<String>,
    declare: Option<Vec<HeaderEdit>>,
}

/// `add NAME: VALUE`, `set NAME: VALUE` or `remove NAME`.
fn header_edit(rule: &str) -> Result<HeaderEdit, String> {
    let bad = || format!("declare: `{rule}` is not `add|set NAME: VALUE` nor `remove NAME`");
    let (verb, rest) = rule.split_once(' ').ok_or_else(bad)?;
    let line = || {
        rest.split_once(':')
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .ok_or_else(bad)
    };
    match verb {
        "add" => line().map(|(n, v)| HeaderEdit::Add(n, v)),
        "set" => line().map(|(n, v)| HeaderEdit::Set(n, v)),
        "remove" => Ok(HeaderEdit::Remove(rest.trim().to_string())),
        _ => Err(bad()),
    }
}

/// The user part of the To URI (empty when there is none).
fn to_user(msg: &Message) -> String {
    msg.header("To")
        .and_then(|to| {
            uri::name_addr_uri(&to)
                .and_then(uri::user)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

impl Testkit {
    fn triggered(&self, msg: &Message) -> bool {
        to_user(msg).starts_with(&self.trigger)
    }

    fn act(&mut self, msg: &mut Message) -> Verdict {
        if self.mode == "every-loop" {
            spin();
        }
        if self.mode == "tag" {
            let _ = msg.add_header("X-Testkit", &format!("{} {GENERATION}", self.label));
            return Verdict::Continue;
        }
        if self.mode == "show-crypto" {
            let body = msg.body();
            let text = String::from_utf8_lossy(&body);
            let line = text.lines().find(|l| l.starts_with("a=crypto:"));
            let _ = msg.set_header("X-Crypto", line.unwrap_or("none").trim());
            return Verdict::Continue;
        }
        if !self.triggered(msg) {
            return Verdict::Continue;
        }
        match self.mode.as_str() {
            "loop" => spin(),
            "trap" => panic!("testkit: trap on purpose"),
            "membomb" => loop {
                // Grow until the host refuses memory (reserving is enough to grow it).
                self.hoard.push(Vec::with_capacity(4 << 20));
            },
            "garbage" => {
                let _ = msg.set_header("X-Garbage", "a\r\nVia: SIP/2.0/UDP 6.6.6.6");
                Verdict::Continue
            }
            // A To user ending in 0 gets no reason phrase: the status's own.
            "reject" if to_user(msg).ends_with('0') => Verdict::reject(403, ""),
            "reject" => Verdict::reject(403, "Testkit Says No"),
            "log-flood" => {
                for i in 0..3000 {
                    sluice_sdk::log(sluice_sdk::Level::Info, &format!("testkit flood line {i}"));
                    println!("testkit flood print {i}");
                }
                Verdict::Continue
            }
            "edit-then-trap" | "edit-then-loop" => {
                let _ = msg.add_header("X-Partial", "leaked");
                let _ = msg.set_header("Subject", "leaked");
                let _ = msg.remove_header("Supported");
                if msg.is_request() {
                    let _ = msg.set_request_uri("sip:leaked@partial.invalid");
                }
                if self.mode == "edit-then-trap" {
                    panic!("testkit: trap after editing, on purpose");
                }
                spin()
            }
            "fs" => {
                let found = std::fs::read_to_string("/etc/hostname").is_ok();
                let _ = msg.set_header("X-Fs", if found { "read" } else { "refused" });
                Verdict::Continue
            }
            "net" => {
                let ok = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
                let _ = msg.set_header("X-Net", if ok { "connected" } else { "refused" });
                Verdict::Continue
            }
            "env" => {
                let seen = std::env::vars().count() + std::env::args().count();
                let _ = msg.set_header("X-Env", &seen.to_string());
                println!("testkit saw {seen} environment entries");
                Verdict::Continue
            }
            _ => Verdict::Continue,
        }
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl Plugin for Testkit {
    fn new() -> Result<Self, String> {
        let mode = sluice_sdk::setting("mode").unwrap_or_else(|| "tag".into());
        let known = [
            "tag",
            "loop",
            "trap",
            "membomb",
            "garbage",
            "reject",
            "every-loop",
            "edit-then-trap",
            "edit-then-loop",
            "fs",
            "net",
            "env",
            "log-flood",
            "show-crypto",
            "show-source",
            "show-context",
            "show-kind",
        ];
        if !known.contains(&mode.as_str()) {
            return Err(format!("mode = \"{mode}\": expected one of {known:?}"));
        }
        Ok(Testkit {
            mode,
            trigger: sluice_sdk::setting("trigger").unwrap_or_else(|| "666".into()),
            label: sluice_sdk::setting("label").unwrap_or_else(|| "testkit".into()),
            hoard: Vec::new(),
            number_country: sluice_sdk::setting("number_country"),
            only: sluice_sdk::setting("only"),
            declare: match sluice_sdk::setting_list("declare") {
                l if l.is_empty() => None,
                l => Some(l.iter().map(|r| header_edit(r)).collect::<Result<_, _>>()?),
            },
        })
    }

    fn interest(&self) -> Interest {
        match self.only.as_deref() {
            Some("requests") => Interest::none().requests(&["*"]).numbers(),
            Some("responses") => Interest::none().responses(&["*"]).numbers(),
            _ => Interest::all(),
        }
    }

    fn number_policy(&self) -> Option<NumberPolicy> {
        self.number_country.as_ref().map(|cc| NumberPolicy {
            outbound: Format::Plus,
            inbound: Format::Plus,
            default_country: cc.clone(),
        })
    }

    fn header_edits(&self) -> Option<Vec<HeaderEdit>> {
        self.declare.clone()
    }

    fn normalize_number(&mut self, _: &NumberContext, _: &str) -> Option<String> {
        self.number_country.as_ref().map(|_| "+999".to_string())
    }

    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        match self.mode.as_str() {
            "show-source" => {
                let _ = msg.set_header("X-Source", &ctx.source);
                Verdict::Continue
            }
            "show-kind" => {
                let _ = msg.set_header("X-Kind", "request");
                Verdict::Continue
            }
            "show-context" => {
                self.show_context(ctx, msg);
                Verdict::Continue
            }
            _ => self.act(msg),
        }
    }

    fn on_response(&mut self, ctx: &CallContext, msg: &mut Message) {
        match self.mode.as_str() {
            "show-kind" => {
                let _ = msg.set_header("X-Kind", "response");
            }
            "show-context" => self.show_context(ctx, msg),
            _ => {
                let _ = self.act(msg);
            }
        }
    }
}

impl Testkit {
    fn show_context(&self, ctx: &CallContext, msg: &mut Message) {
        let lower = |d: &dyn std::fmt::Debug| format!("{d:?}").to_lowercase();
        let text = format!(
            "call={};direction={};leg={};trunk={};brand={};tenant={};source={};transport={}",
            ctx.call,
            lower(&ctx.direction),
            lower(&ctx.leg),
            ctx.trunk,
            ctx.brand,
            ctx.tenant.as_deref().unwrap_or("-"),
            ctx.source,
            lower(&ctx.transport),
        );
        let _ = msg.set_header("X-Context", &text);
        if self.triggered(msg) {
            panic!("show-context: triggered");
        }
    }
}

#[cfg(feature = "v2")]
export_plugin!(Testkit, version = "2.0.0");
#[cfg(not(feature = "v2"))]
export_plugin!(Testkit, version = "1.0.0");

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, Harness};

    #[test]
    fn tags_and_rejects() {
        let mut h = Harness::<Testkit>::new().setting("label", "x");
        let out = h.run(&CallContext::outbound("loop"), &invite("1555", "100"));
        assert_eq!(out.header("X-Testkit"), Some("x v1"));
        let mut h = Harness::<Testkit>::new().setting("mode", "reject");
        let out = h.run(&CallContext::outbound("loop"), &invite("6661", "100"));
        assert_eq!(out.verdict, Verdict::reject(403, "Testkit Says No"));
        let out = h.run(&CallContext::outbound("loop"), &invite("1555", "100"));
        assert_eq!(out.verdict, Verdict::Continue);
        let mut h = Harness::<Testkit>::new().setting("mode", "garbage");
        let out = h.run(&CallContext::outbound("loop"), &invite("6661", "100"));
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(Harness::<Testkit>::new()
            .setting("mode", "nope")
            .init()
            .is_err());
    }
}
