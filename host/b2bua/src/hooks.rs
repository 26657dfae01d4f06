//! Where plugins touch a message: the engine calls a [`Hooks`] implementation for every request
//! and response it sends on after building it for the far leg, and for the numbers and the
//! attestation of a new call. The engine stays sans-IO: the WebAssembly host lives in
//! `sluice-plugins` and implements this trait; tests use their own.
//!
//! Calls pin the hooks generation that was current when they started, so that a reload does
//! not change the plugins of a call in progress: new calls use the new generation.
//!
//! SRTP keys never reach a plugin: every message lent to one has the `inline:` key of each
//! `a=crypto` line replaced by a placeholder ([`with_keys_hidden`]), and the keys are put back
//! into the message that leaves.

use crate::call::{CallKey, Direction};
use crate::config::Side;
use sluice_sip::{edit, Message};
use sluice_transaction::Transport;
use std::net::SocketAddr;

/// A generation of the plugin configuration (plugins and per-trunk chains).
pub type Generation = u64;

pub use sluice_sip::edit::NumberKind;

/// STIR/SHAKEN attestation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    A,
    B,
    C,
    /// Do not sign.
    None,
}

impl Attestation {
    pub fn as_str(self) -> &'static str {
        match self {
            Attestation::A => "A",
            Attestation::B => "B",
            Attestation::C => "C",
            Attestation::None => "none",
        }
    }
}

/// What a hook knows of a message's call.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    pub call: CallKey,
    pub direction: Direction,
    /// The leg the message is sent on.
    pub leg: Side,
    pub trunk: &'a str,
    /// The call's tenant, once routing has attributed the call to one (with tenants only; a
    /// trunk's call is attributed by its called DID, so its number hooks run before it is).
    pub tenant: Option<&'a str>,
    /// Where the message it was built from came from.
    pub source: SocketAddr,
    pub transport: Transport,
}

/// What the number hook made of a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberVerdict {
    /// Leave it as it is.
    Keep,
    /// Write this instead.
    Replace(String),
    /// A fail-closed plugin failed on it: refuse the call with this status.
    Refuse { status: u16 },
}

/// The outcome of running a chain over a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookVerdict {
    Continue,
    /// Answer the request with this status instead of sending it on.
    Reject {
        status: u16,
        reason: String,
    },
}

/// One loaded plugin, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStatus {
    pub name: String,
    pub module: String,
    pub version: String,
    pub sha256: String,
    /// Where the module came from: a file path or `bundled`.
    pub origin: String,
    pub policy: &'static str,
    pub generation: Generation,
    /// Whether new calls use this generation.
    pub current: bool,
    /// Calls in progress pinned to this generation.
    pub calls: usize,
    /// Trunks whose chains use it.
    pub trunks: Vec<String>,
    /// The last failure of this version, when it has failed.
    pub last_failure: Option<String>,
}

/// The plugin chains, as the engine sees them.
pub trait Hooks: Send {
    /// What is loaded, for the admin API.
    fn status(&self) -> Vec<PluginStatus> {
        Vec::new()
    }
    /// The generation new calls start with.
    fn current(&self) -> Generation;
    /// A call started with `generation`; it stays loaded until released.
    fn pin(&mut self, generation: Generation);
    /// A call of `generation` ended.
    fn release(&mut self, generation: Generation);
    /// Whether any plugin runs for this trunk in this generation (lets the engine skip work).
    fn active(&self, generation: Generation, trunk: &str) -> bool;
    /// Whether a plugin of the chain toward `ctx.leg` takes `msg` (its interest): when none
    /// does, the engine skips preparing the message for the chain at all.
    fn wants_message(&self, generation: Generation, ctx: &HookContext<'_>, msg: &Message) -> bool {
        let _ = (generation, ctx, msg);
        true
    }
    /// Normalise a number of a new call.
    fn number(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        kind: NumberKind,
        number: &str,
    ) -> NumberVerdict;
    /// Run the chain over a message leaving on `ctx.leg`. `original` is the message it was
    /// built from. Both are only borrowed mutably so that the host can lend them to a plugin
    /// without copying; `original` comes back unchanged.
    fn message(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
        original: &mut Message,
    ) -> HookVerdict;
    /// The attestation of an outbound call, after the chain ran over its INVITE.
    fn attestation(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
    ) -> Option<Attestation>;
}

/// No plugins: every message continues unchanged.
#[derive(Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn current(&self) -> Generation {
        0
    }
    fn pin(&mut self, _: Generation) {}
    fn release(&mut self, _: Generation) {}
    fn active(&self, _: Generation, _: &str) -> bool {
        false
    }
    fn wants_message(&self, _: Generation, _: &HookContext<'_>, _: &Message) -> bool {
        false
    }
    fn number(
        &mut self,
        _: Generation,
        _: &HookContext<'_>,
        _: NumberKind,
        _: &str,
    ) -> NumberVerdict {
        NumberVerdict::Keep
    }
    fn message(
        &mut self,
        _: Generation,
        _: &HookContext<'_>,
        _: &mut Message,
        _: &mut Message,
    ) -> HookVerdict {
        HookVerdict::Continue
    }
    fn attestation(
        &mut self,
        _: Generation,
        _: &HookContext<'_>,
        _: &mut Message,
    ) -> Option<Attestation> {
        None
    }
}

/// The number hook over a new call's called and calling numbers; the status to refuse the call
/// with when a fail-closed plugin failed.
pub fn run_number_hooks<H: Hooks + ?Sized>(
    hooks: &mut H,
    generation: Generation,
    ctx: &HookContext<'_>,
    invite: &mut Message,
) -> Result<(), u16> {
    let mut refused = None;
    edit::normalize_numbers(invite, |kind, n| {
        match hooks.number(generation, ctx, kind, n) {
            NumberVerdict::Keep => None,
            NumberVerdict::Replace(n) => Some(n),
            NumberVerdict::Refuse { status } => {
                refused.get_or_insert(status);
                None
            }
        }
    });
    match refused.filter(|&s| edit::check_rejectable(invite, s).is_ok()) {
        Some(status) => Err(status),
        None => Ok(()),
    }
}

/// What the plugins made of a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewCallOutcome {
    /// Send the INVITE on, with the attestation chosen for an outbound call.
    Continue { attestation: Option<Attestation> },
    /// Refuse the call with this status and reason.
    Refuse { status: u16, reason: String },
}

/// A new call's hook sequence, the one place it is written: the numbers (called and calling),
/// then the message chain over the INVITE, then, for an outbound call, the attestation. Used
/// by the engine, by `sluice plugin test` and by the plugin host's tests.
pub fn run_new_call<H: Hooks + ?Sized>(
    hooks: &mut H,
    generation: Generation,
    ctx: &HookContext<'_>,
    invite: &mut Message,
    original: &mut Message,
) -> NewCallOutcome {
    run_new_call_with(hooks, generation, ctx, (invite, original), NumberHooks::Run)
}

/// Whether a new call's sequence runs the number hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberHooks {
    Run,
    /// They ran already, before routing (a trunk's call with tenants: the numbers the hook
    /// made are those looked up, and the PBX gets them in its own format).
    RanBeforeRouting,
}

/// [`run_new_call`], with the number hooks run or not.
pub fn run_new_call_with<H: Hooks + ?Sized>(
    hooks: &mut H,
    generation: Generation,
    ctx: &HookContext<'_>,
    (invite, original): (&mut Message, &mut Message),
    numbers: NumberHooks,
) -> NewCallOutcome {
    if numbers == NumberHooks::Run {
        if let Err(status) = run_number_hooks(hooks, generation, ctx, invite) {
            return NewCallOutcome::Refuse {
                status,
                reason: "Plugin Failure".into(),
            };
        }
    }
    with_keys_hidden(invite, original, |invite, original| {
        if let HookVerdict::Reject { status, reason } =
            hooks.message(generation, ctx, invite, original)
        {
            return NewCallOutcome::Refuse { status, reason };
        }
        let attestation = if ctx.direction == Direction::Outbound {
            hooks.attestation(generation, ctx, invite)
        } else {
            None
        };
        NewCallOutcome::Continue { attestation }
    })
}

/// What plugins see instead of an SRTP key: one prefix for the message that leaves, another
/// for the message it was built from, so that a plugin copying the original's body into the
/// outgoing one gets placeholders there, never the other side's keys.
const HIDDEN_KEY: &[u8] = b"SLUICE-HIDDEN-KEY-";
const HIDDEN_ORIGINAL_KEY: &[u8] = b"SLUICE-HIDDEN-ORIGINAL-KEY-";

/// Run `f` over `msg` and `original` with the SRTP keys of their bodies hidden; each gets its
/// own keys back afterwards (wherever the plugins left their placeholders).
pub fn with_keys_hidden<R>(
    msg: &mut Message,
    original: &mut Message,
    f: impl FnOnce(&mut Message, &mut Message) -> R,
) -> R {
    let keys = hide_keys(msg, HIDDEN_KEY);
    let original_keys = hide_keys(original, HIDDEN_ORIGINAL_KEY);
    let r = f(msg, original);
    restore_keys(msg, HIDDEN_KEY, &keys);
    restore_keys(original, HIDDEN_ORIGINAL_KEY, &original_keys);
    r
}

/// Replace the key of every `inline:` parameter of `msg`'s body by `prefix` and a number;
/// the keys, in that order. Works on bytes: a body need not be UTF-8 (a multipart with binary
/// parts) for its keys to be hidden.
fn hide_keys(msg: &mut Message, prefix: &[u8]) -> Vec<Vec<u8>> {
    static INLINE: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    let inline = INLINE.get_or_init(|| memchr::memmem::Finder::new(b"inline:"));
    let mut keys = Vec::new();
    if msg.body.is_empty() || inline.find(&msg.body).is_none() {
        return keys;
    }
    let body = &msg.body[..];
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = inline.find(rest) {
        let (before, after) = rest.split_at(at);
        let after = after.get(b"inline:".len()..).unwrap_or_default();
        let end = after
            .iter()
            .position(|&c| c == b'|' || c == b';' || c.is_ascii_whitespace())
            .unwrap_or(after.len());
        let (key, tail) = after.split_at(end);
        out.extend_from_slice(before);
        out.extend_from_slice(b"inline:");
        out.extend_from_slice(prefix);
        out.extend_from_slice(keys.len().to_string().as_bytes());
        keys.push(key.to_vec());
        rest = tail;
    }
    out.extend_from_slice(rest);
    msg.body = bytes::Bytes::from(out);
    keys
}

/// Put `keys` back where `prefix` placeholders stand; other text stays as it is.
fn restore_keys(msg: &mut Message, prefix: &[u8], keys: &[Vec<u8>]) {
    if keys.is_empty() || memchr::memmem::find(&msg.body, prefix).is_none() {
        return;
    }
    let body = &msg.body[..];
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = memchr::memmem::find(rest, prefix) {
        let (before, after) = rest.split_at(at);
        let after = after.get(prefix.len()..).unwrap_or_default();
        let end = after
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let (n, tail) = after.split_at(end);
        out.extend_from_slice(before);
        let key = std::str::from_utf8(n)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|i| keys.get(i));
        match key {
            Some(k) => out.extend_from_slice(k),
            // A placeholder a plugin wrote itself stays as it is.
            None => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(n);
            }
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
    msg.body = bytes::Bytes::from(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_body(body: &[u8]) -> Message {
        let mut m = sluice_sip::parse_message(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\n\
              CSeq: 1 INVITE\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        m.body = bytes::Bytes::copy_from_slice(body);
        m
    }

    #[test]
    fn plugins_see_placeholders_and_each_message_gets_its_own_keys_back() {
        let ours = b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OURKEYOURKEY|2^31\r\n".to_vec();
        // Not UTF-8, as a multipart with a binary part may be.
        let mut theirs =
            b"\xff\xfe a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:THEIRKEY\r\n".to_vec();
        theirs.push(0x80);
        let (mut msg, mut original) = (with_body(&ours), with_body(&theirs));
        let seen = with_keys_hidden(&mut msg, &mut original, |m, o| {
            let seen = (m.body.to_vec(), o.body.to_vec());
            // The plugin copies the original's body into the message that leaves.
            m.body = o.body.clone();
            seen
        });
        for (body, key) in [(&seen.0, &b"OURKEY"[..]), (&seen.1, &b"THEIRKEY"[..])] {
            assert!(
                memchr::memmem::find(body, key).is_none(),
                "a plugin saw a key"
            );
        }
        assert!(memchr::memmem::find(&seen.0, b"inline:SLUICE-HIDDEN-KEY-0|2^31").is_some());
        assert!(
            memchr::memmem::find(&msg.body, b"THEIRKEY").is_none(),
            "the original's key never lands in the message that leaves"
        );
        assert_eq!(
            original.body.to_vec(),
            theirs,
            "the original gets its own key back"
        );
        // A message whose plugins left it alone leaves with its own key.
        let (mut msg, mut original) = (with_body(&ours), with_body(b""));
        with_keys_hidden(&mut msg, &mut original, |_, _| ());
        assert_eq!(msg.body.to_vec(), ours);
    }
}
