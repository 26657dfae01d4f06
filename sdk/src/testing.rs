//! A native test harness: run a [`Plugin`] on SIP messages with `cargo test`, no WebAssembly
//! needed. Edits go through the same rules as in Sluice (`sluice_sip::edit`), so an edit the
//! host would refuse is refused here too and shows in [`Outcome::errors`].
//!
//! ```
//! use sluice_sdk::testing::Harness;
//! use sluice_sdk::{CallContext, Message, Plugin, Verdict};
//!
//! struct Tag;
//! impl Plugin for Tag {
//!     fn new() -> Result<Self, String> {
//!         Ok(Tag)
//!     }
//!     fn on_request(&mut self, _: &CallContext, msg: &mut Message) -> Verdict {
//!         let value = sluice_sdk::setting("value").unwrap_or_default();
//!         msg.set_header("X-Tag", &value).unwrap();
//!         Verdict::Continue
//!     }
//! }
//!
//! let mut h = Harness::<Tag>::new().setting("value", "blue");
//! let out = h.run(
//!     &CallContext::outbound("loop"),
//!     "INVITE sip:+15552234567@192.0.2.1 SIP/2.0\r\n\
//!      Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK1\r\n\
//!      From: <sip:100@192.0.2.2>;tag=a\r\n\
//!      To: <sip:+15552234567@192.0.2.1>\r\n\
//!      Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n",
//! );
//! assert_eq!(out.verdict, Verdict::Continue);
//! assert_eq!(out.header("X-Tag"), Some("blue"));
//! ```

use crate::{Attestation, CallContext, Direction, Level, Message, NumberContext, Plugin, Verdict};
use sluice_sip::declared::DeclaredEdits;
use sluice_sip::{edit, HeaderName, Message as SipMessage};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// The host side of a test: settings, clock, what the plugin logged and counted.
#[derive(Default)]
struct HostState {
    settings: BTreeMap<String, Vec<String>>,
    clock_ms: Option<u64>,
    logs: Vec<(Level, String)>,
    counters: BTreeMap<String, u64>,
}

thread_local! {
    static HOST: RefCell<HostState> = RefCell::new(HostState::default());
}

pub(crate) mod host {
    use super::HOST;
    use crate::Level;

    pub fn log(level: Level, message: &str) {
        HOST.with(|h| h.borrow_mut().logs.push((level, message.to_string())));
    }
    pub fn counter(name: &str, delta: u64) {
        HOST.with(|h| *h.borrow_mut().counters.entry(name.to_string()).or_default() += delta);
    }
    pub fn setting(key: &str) -> Option<String> {
        HOST.with(|h| h.borrow().settings.get(key).map(|v| v.join("\n")))
    }
    pub fn setting_list(key: &str) -> Vec<String> {
        HOST.with(|h| h.borrow().settings.get(key).cloned().unwrap_or_default())
    }
    pub fn now_ms() -> u64 {
        HOST.with(|h| h.borrow().clock_ms).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
    }
}

/// The native backend of [`Message`]: a parsed message, the original it was built from, and
/// the refused edits.
pub struct LocalMessage<'a> {
    msg: &'a mut SipMessage,
    original: &'a SipMessage,
    errors: &'a mut Vec<String>,
}

fn get(msg: &SipMessage, name: &str) -> Option<String> {
    msg.headers
        .get(&HeaderName::parse(name))
        .map(str::to_string)
}

fn get_all(msg: &SipMessage, name: &str) -> Vec<String> {
    msg.headers
        .get_all(&HeaderName::parse(name))
        .map(str::to_string)
        .collect()
}

impl LocalMessage<'_> {
    fn record<T>(&mut self, r: Result<T, edit::EditError>) -> Result<T, String> {
        r.map_err(|e| {
            let e = e.to_string();
            self.errors.push(e.clone());
            e
        })
    }
    pub fn is_request(&self) -> bool {
        self.msg.is_request()
    }
    pub fn method(&self) -> Option<String> {
        self.msg.method().map(|m| m.as_str().to_string())
    }
    pub fn is_initial(&self) -> bool {
        self.msg.is_initial()
    }
    pub fn status(&self) -> Option<u16> {
        self.msg.status()
    }
    pub fn reason(&self) -> Option<String> {
        self.msg.reason().map(str::to_string)
    }
    pub fn request_uri(&self) -> Option<String> {
        self.msg.request_uri().map(str::to_string)
    }
    pub fn set_request_uri(&mut self, uri: &str) -> Result<(), String> {
        let r = edit::set_request_uri(self.msg, uri);
        self.record(r)
    }
    pub fn get(&self, name: &str) -> Option<String> {
        get(self.msg, name)
    }
    pub fn get_all(&self, name: &str) -> Vec<String> {
        get_all(self.msg, name)
    }
    pub fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for h in &self.msg.headers {
            if !names.iter().any(|n| n == h.name.as_str()) {
                names.push(h.name.as_str().to_string());
            }
        }
        names
    }
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let r = edit::set_header(self.msg, name, value);
        self.record(r)
    }
    pub fn add(&mut self, name: &str, value: &str) -> Result<(), String> {
        let r = edit::add_header(self.msg, name, value);
        self.record(r)
    }
    pub fn remove(&mut self, name: &str) -> Result<u32, String> {
        let r = edit::remove_header(self.msg, name);
        self.record(r)
    }
    pub fn body(&self) -> Vec<u8> {
        self.msg.body.to_vec()
    }
    pub fn content_type(&self) -> Option<String> {
        get(self.msg, "Content-Type")
    }
    pub fn set_body(&mut self, content_type: &str, body: &[u8]) -> Result<(), String> {
        let r = edit::set_body(self.msg, content_type, body);
        self.record(r)
    }
    pub fn original_get(&self, name: &str) -> Option<String> {
        get(self.original, name)
    }
    pub fn original_get_all(&self, name: &str) -> Vec<String> {
        get_all(self.original, name)
    }
    pub fn original_request_uri(&self) -> Option<String> {
        self.original.request_uri().map(str::to_string)
    }
}

/// Parse a SIP message written in a test: `\n` line ends are accepted, and a missing
/// Content-Length is computed.
pub fn parse(text: &str) -> SipMessage {
    let text = if text.contains("\r\n") {
        text.to_string()
    } else {
        text.replace('\n', "\r\n")
    };
    match sluice_sip::parse_message(text.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("not a SIP message ({}):\n{text}", e.reason),
    }
}

/// What a hook did to a message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The message as it would leave Sluice.
    pub message: SipMessage,
    /// Edits Sluice would refuse, and verdicts it would not accept. Sluice cuts a plugin off
    /// for a message where this is not empty.
    pub errors: Vec<String>,
    /// The attestation chosen (only from [`Harness::invite`] on an outbound call).
    pub attestation: Option<Attestation>,
}

impl Outcome {
    pub fn request_uri(&self) -> Option<&str> {
        self.message.request_uri()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.message.headers.get(&HeaderName::parse(name))
    }
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let h = HeaderName::parse(name);
        self.message
            .headers
            .iter()
            .filter(|x| x.name == h)
            .map(|x| x.value.as_str())
            .collect()
    }
    /// The message as text, as it would go on the wire.
    pub fn text(&self) -> String {
        self.message.to_string()
    }
}

/// Runs a plugin natively, with the settings a test gives it.
pub struct Harness<P: Plugin> {
    plugin: Option<P>,
    settings: BTreeMap<String, Vec<String>>,
    clock_ms: Option<u64>,
    /// The plugin's declared header edits, checked.
    edits: Option<DeclaredEdits>,
    _p: PhantomData<P>,
}

impl<P: Plugin> Default for Harness<P> {
    fn default() -> Self {
        Harness::new()
    }
}

impl<P: Plugin> Harness<P> {
    pub fn new() -> Self {
        Harness {
            plugin: None,
            settings: BTreeMap::new(),
            clock_ms: None,
            edits: None,
            _p: PhantomData,
        }
    }

    /// A string setting, as `key = "value"` under `[plugin.NAME.settings]`.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings
            .insert(key.to_string(), vec![value.to_string()]);
        self
    }

    /// A list setting, as `key = ["a", "b"]`.
    pub fn setting_list(mut self, key: &str, values: &[&str]) -> Self {
        self.settings.insert(
            key.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        self
    }

    /// Fix the clock the plugin sees.
    pub fn clock_ms(mut self, ms: u64) -> Self {
        self.clock_ms = Some(ms);
        self
    }

    fn install(&self) {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            h.settings = self.settings.clone();
            h.clock_ms = self.clock_ms;
        });
    }

    /// Build the plugin from its settings, as Sluice does at load.
    pub fn init(&mut self) -> Result<(), String> {
        self.install();
        let p = P::new()?;
        // As in Sluice: declared edits that could fail on a message refuse the plugin.
        self.edits = p
            .header_edits()
            .map(|e| DeclaredEdits::new(&e))
            .transpose()?;
        self.plugin = Some(p);
        Ok(())
    }

    fn plugin(&mut self) -> &mut P {
        if self.plugin.is_none() {
            if let Err(e) = self.init() {
                panic!("the plugin refused its settings: {e}");
            }
        }
        self.install();
        match self.plugin.as_mut() {
            Some(p) => p,
            None => unreachable!("initialised above"),
        }
    }

    /// Run `on_request` or `on_response` on a message leaving Sluice, built from itself.
    pub fn run(&mut self, ctx: &CallContext, message: &str) -> Outcome {
        self.run_with_original(ctx, message, message)
    }

    /// Run the message hook with the original message it was built from (what arrived on the
    /// other leg, which [`Message::original_header`] reads).
    pub fn run_with_original(
        &mut self,
        ctx: &CallContext,
        message: &str,
        original: &str,
    ) -> Outcome {
        let mut msg = parse(message);
        let original = parse(original);
        let mut errors = Vec::new();
        let verdict = self.message_hook(ctx, &mut msg, &original, &mut errors);
        Outcome {
            verdict,
            message: msg,
            errors,
            attestation: None,
        }
    }

    fn message_hook(
        &mut self,
        ctx: &CallContext,
        msg: &mut SipMessage,
        original: &SipMessage,
        errors: &mut Vec<String>,
    ) -> Verdict {
        let is_request = msg.is_request();
        // As in Sluice: a message the plugin has no interest in does not reach it.
        if !self.plugin().interest().wants(msg) {
            return Verdict::Continue;
        }
        // As in Sluice: declared edits are made without calling the hooks.
        if let Some(edits) = &self.edits {
            if let Err(e) = edits.apply(msg) {
                errors.push(e.to_string());
            }
            return Verdict::Continue;
        }
        let verdict = {
            let plugin = self.plugin();
            let mut m = Message::from_inner(LocalMessage {
                msg: &mut *msg,
                original,
                errors: &mut *errors,
            });
            if is_request {
                plugin.on_request(ctx, &mut m)
            } else {
                plugin.on_response(ctx, &mut m);
                Verdict::Continue
            }
        };
        if let Verdict::Reject { status, .. } = &verdict {
            if let Err(e) = edit::check_rejectable(msg, *status) {
                errors.push(e.to_string());
            }
        }
        verdict
    }

    /// Normalise a number; an `Err` is a number Sluice would refuse.
    pub fn number(&mut self, ctx: &NumberContext, number: &str) -> Result<Option<String>, String> {
        // As in Sluice: a declared policy is applied without calling the plugin.
        if let Some(policy) = self.plugin().number_policy() {
            return Ok(policy.normalize(ctx, number));
        }
        if !self.plugin().interest().numbers {
            return Ok(None);
        }
        match self.plugin().normalize_number(ctx, number) {
            Some(n) => edit::check_number(&n)
                .map(|_| Some(n))
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// The attestation the plugin chooses for an outbound INVITE.
    pub fn attestation(&mut self, ctx: &CallContext, message: &str) -> Option<Attestation> {
        let mut msg = parse(message);
        let original = msg.clone();
        self.attestation_of(ctx, &mut msg, &original, &mut Vec::new())
    }

    fn attestation_of(
        &mut self,
        ctx: &CallContext,
        msg: &mut SipMessage,
        original: &SipMessage,
        errors: &mut Vec<String>,
    ) -> Option<Attestation> {
        if !self.plugin().interest().attestation {
            return None;
        }
        let m = Message::from_inner(LocalMessage {
            msg,
            original,
            errors,
        });
        self.plugin().attestation(ctx, &m)
    }

    /// What Sluice does to a new call's INVITE leaving on `ctx.leg`: numbers, then the message
    /// hook, then (outbound) the attestation.
    pub fn invite(&mut self, ctx: &CallContext, message: &str) -> Outcome {
        let mut msg = parse(message);
        let original = msg.clone();
        let nctx = |kind| NumberContext {
            direction: ctx.direction,
            leg: ctx.leg,
            trunk: ctx.trunk.clone(),
            brand: ctx.brand.clone(),
            tenant: ctx.tenant.clone(),
            kind,
        };
        let mut errors = Vec::new();
        edit::normalize_numbers(&mut msg, |kind, n| {
            let kind = match kind {
                edit::NumberKind::Called => crate::NumberKind::Called,
                edit::NumberKind::Calling => crate::NumberKind::Calling,
            };
            match self.number(&nctx(kind), n) {
                Ok(n) => n,
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        });
        let verdict = self.message_hook(ctx, &mut msg, &original, &mut errors);
        let attestation = if ctx.direction == Direction::Outbound && verdict == Verdict::Continue {
            self.attestation_of(ctx, &mut msg, &original, &mut errors)
        } else {
            None
        };
        Outcome {
            verdict,
            message: msg,
            errors,
            attestation,
        }
    }

    /// What the plugin logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        HOST.with(|h| h.borrow().logs.clone())
    }

    /// A counter's value.
    pub fn counter(&self, name: &str) -> u64 {
        HOST.with(|h| h.borrow().counters.get(name).copied().unwrap_or(0))
    }
}

/// A typical INVITE as Sluice sends it toward a trunk: `called` in the Request-URI and To,
/// `calling` in From and P-Asserted-Identity, an SDP offer.
pub fn invite(called: &str, calling: &str) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:{called}@trunk.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKtest;rport\r\n\
         Max-Forwards: 69\r\n\
         From: \"Alice\" <sip:{calling}@192.0.2.1:5080>;tag=sluice1\r\n\
         To: <sip:{called}@trunk.example.com>\r\n\
         Call-ID: 0123456789abcdef\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{calling}@192.0.2.1:5080>\r\n\
         P-Asserted-Identity: <sip:{calling}@192.0.2.1:5080>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// A response to [`invite`] as Sluice relays it.
pub fn response(status: u16, reason: &str) -> String {
    format!(
        "SIP/2.0 {status} {reason}\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKtest;rport\r\n\
         From: \"Alice\" <sip:100@192.0.2.1:5080>;tag=sluice1\r\n\
         To: <sip:+15552234567@trunk.example.com>;tag=far\r\n\
         Call-ID: 0123456789abcdef\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
