//! STIR/SHAKEN signing of outbound calls (RFC 8224, RFC 8588). For a trunk whose
//! configuration signs, the INVITE that leaves for it — after the plugins, so with the numbers
//! as the trunk receives them — gets an `Identity` header: a PASSporT with the attestation the
//! brand plugin chose (or the trunk's default), the calling number from P-Asserted-Identity
//! (else From) and the called number from To (else the Request-URI), signed with the trunk's
//! key. The key stays in the [`sluice_stir::Signer`]: plugins see the INVITE before it is
//! signed, and nothing logs or counts more than the attestation.

use crate::hooks::{Attestation, Hooks};
use sluice_sip::{HeaderName, Message, NameAddr};
use sluice_stir::{tn, Attest, Claims, Signer};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// How a trunk's calls are signed.
#[derive(Debug, Clone)]
pub struct Signing {
    pub signer: Arc<Signer>,
    /// When no plugin chooses.
    pub attestation: Attestation,
}

impl PartialEq for Signing {
    fn eq(&self, other: &Self) -> bool {
        self.attestation == other.attestation
            && self.signer.x5u() == other.signer.x5u()
            && self.signer.public_key() == other.signer.public_key()
    }
}

impl Eq for Signing {}

/// Wall-clock time as the engine sees it: UNIX seconds at an instant, so that `iat` follows
/// the engine's clock (a test's fake one too).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    unix: u64,
}

impl WallClock {
    pub fn new(at: Instant, unix: u64) -> WallClock {
        WallClock { at, unix }
    }

    pub(crate) fn system(at: Instant) -> WallClock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        WallClock { at, unix }
    }

    /// UNIX seconds at `now`.
    pub fn unix(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.at).as_secs();
        let before = self.at.saturating_duration_since(now).as_secs();
        self.unix.saturating_add(since).saturating_sub(before)
    }
}

/// UNIX seconds at `now`: the clock a test fixed, else the system's, read now.
pub(crate) fn unix<H: Hooks>(core: &crate::core::Core<H>, now: Instant) -> u64 {
    core.wall
        .unwrap_or_else(|| WallClock::system(now))
        .unix(now)
}

impl<H: Hooks> crate::Engine<H> {
    /// Fix the wall-clock time (UNIX seconds) at `now` (tests); by default the system's clock
    /// is read for every PASSporT, so that a clock stepped later (NTP) is followed.
    pub fn set_wall_clock(&mut self, now: Instant, unix: u64) {
        self.core.wall = Some(WallClock::new(now, unix));
    }
}

/// The number of a name-addr header's URI, canonical.
fn number_of(msg: &Message, name: &HeaderName) -> Option<String> {
    let v = msg.header(name)?;
    tn::of_uri(NameAddr::parse(v)?.uri)
}

/// The calling and called numbers of an INVITE as PASSporTs name them, canonical: from
/// P-Asserted-Identity (else From), and from To (else the Request-URI).
pub fn call_numbers(msg: &Message) -> (Option<String>, Option<String>) {
    let orig = number_of(msg, &HeaderName::PAssertedIdentity)
        .or_else(|| number_of(msg, &HeaderName::From));
    let dest = number_of(msg, &HeaderName::To).or_else(|| msg.request_uri().and_then(tn::of_uri));
    (orig, dest)
}

/// Sign `invite`, about to leave for trunk `trunk` on an outbound call, when the trunk signs;
/// `chosen` is the plugins' attestation. The attestation the call ends with.
pub fn sign<H: Hooks>(
    core: &mut crate::core::Core<H>,
    now: Instant,
    trunk: &str,
    invite: &mut Message,
    chosen: Option<Attestation>,
) -> Option<Attestation> {
    let Some(signing) = core
        .cfg
        .trunks
        .iter()
        .find(|t| &*t.name == trunk)
        .and_then(|t| t.identity.clone())
    else {
        return chosen;
    };
    let attestation = chosen.unwrap_or(signing.attestation);
    let attest = match attestation {
        Attestation::A => Attest::A,
        Attestation::B => Attest::B,
        Attestation::C => Attest::C,
        Attestation::None => {
            count_unsigned(trunk, "attestation-none");
            return Some(attestation);
        }
    };
    let (Some(orig), Some(dest)) = call_numbers(invite) else {
        debug!(
            trunk,
            "not signed: no telephone number in the calling or called party"
        );
        count_unsigned(trunk, "no-number");
        return Some(attestation);
    };
    let claims = Claims::new(attest, &orig, &dest, unix(core, now));
    invite.headers.remove(&HeaderName::Identity);
    invite
        .headers
        .push(HeaderName::Identity, signing.signer.identity(&claims));
    metrics::counter!(
        "sluice_stir_signed_total",
        "trunk" => trunk.to_string(),
        "attestation" => attest.as_str()
    )
    .increment(1);
    Some(attestation)
}

fn count_unsigned(trunk: &str, reason: &'static str) {
    metrics::counter!(
        "sluice_stir_unsigned_total",
        "trunk" => trunk.to_string(),
        "reason" => reason
    )
    .increment(1);
}
