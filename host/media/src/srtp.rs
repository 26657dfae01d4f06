//! SRTP (RFC 3711) on the legs that use it, with SDES keys (RFC 4568): the crypto-suites Sluice
//! speaks, its master keys, and the packet transform the relay runs for an end that sends and
//! receives SRTP.
//!
//! The ciphers are the `webrtc-srtp` crate's (pure Rust over the RustCrypto AES, HMAC-SHA1 and
//! AES-GCM implementations, maintained by the webrtc-rs project): Sluice writes no cipher code.
//! Keys are made from the operating system's random source, printed nowhere (their `Debug`
//! hides them) and never leave the process.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::fmt;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// An SRTP crypto-suite of RFC 4568 / RFC 7714 that Sluice offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
}

impl Suite {
    /// Every suite, in Sluice's default order of preference.
    pub const ALL: [Suite; 3] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
    ];

    /// The name SDP uses.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }

    /// Master key and master salt lengths, in bytes.
    fn lengths(self) -> (usize, usize) {
        let p = self.profile();
        (p.key_len(), p.salt_len())
    }
}

/// The longest master key and salt of the suites above (16 + 14).
const MAX_KEY: usize = 30;

/// A master key and salt of one suite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey {
    suite: Suite,
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <hidden>)", self.suite.name())
    }
}

/// A key Sluice could not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64, or not the suite's length.
    Malformed,
    /// The operating system gave no random bytes.
    NoRandom,
}

impl MasterKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(suite: Suite) -> Result<MasterKey, KeyError> {
        let (k, s) = suite.lengths();
        let len = k.saturating_add(s).min(MAX_KEY);
        let mut bytes = [0u8; MAX_KEY];
        getrandom::fill(bytes.get_mut(..len).ok_or(KeyError::NoRandom)?)
            .map_err(|_| KeyError::NoRandom)?;
        Ok(MasterKey { suite, bytes, len })
    }

    /// The key of an `inline:` parameter (base64 of key then salt).
    pub fn from_base64(suite: Suite, b64: &str) -> Result<MasterKey, KeyError> {
        let decoded = B64.decode(b64).map_err(|_| KeyError::Malformed)?;
        let (k, s) = suite.lengths();
        if decoded.len() != k.saturating_add(s) || decoded.len() > MAX_KEY {
            return Err(KeyError::Malformed);
        }
        let mut bytes = [0u8; MAX_KEY];
        bytes
            .get_mut(..decoded.len())
            .ok_or(KeyError::Malformed)?
            .copy_from_slice(&decoded);
        Ok(MasterKey {
            suite,
            bytes,
            len: decoded.len(),
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The `inline:` form, for Sluice's own SDP only.
    pub fn to_base64(&self) -> String {
        B64.encode(self.material())
    }

    fn material(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn split(&self) -> (&[u8], &[u8]) {
        let (k, _) = self.suite.lengths();
        self.material().split_at(k.min(self.len))
    }
}

/// The keys of an end that speaks SRTP: what it sends with (Sluice decrypts with it) and what
/// Sluice sends to it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The end's own key, from its SDP.
    pub theirs: MasterKey,
    /// Sluice's key toward the end, from Sluice's SDP.
    pub ours: MasterKey,
}

/// Why a packet from an SRTP end was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its authentication tag is wrong, it is a replay, or it cannot be SRTP at all.
    Authentication,
    /// It could not be protected toward the other end.
    Protect,
}

/// The replay windows (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;

/// SRTP state of one end of a stream: a context that checks and decrypts what the end sends
/// (replay protection on), and one that protects what Sluice sends it. Each keeps the rollover
/// counters of the SSRCs it has seen (RFC 3711 §3.3.1).
pub struct EndSrtp {
    keys: SrtpKeys,
    inbound: Context,
    outbound: Context,
    /// Which SSRCs may reach each context (see [`SsrcGate`]).
    inbound_gate: SsrcGate,
    outbound_gate: SsrcGate,
}

/// The SRTP library keeps state for every SSRC a packet names, made before the packet's tag
/// is checked and never dropped: forged packets with ever new SSRCs would grow it without
/// end. SSRCs that passed once go through; a new one spends a token, of which there are
/// [`NEW_SSRC_TOKENS`] at first and one more for every [`PACKETS_PER_TOKEN`] packets that
/// passed. Without a token, a packet with a new SSRC is refused before the library sees it.
/// The library's tables thus grow with the stream's own traffic at most.
#[derive(Debug, Clone)]
struct SsrcGate {
    known: Vec<u32>,
    tokens: u32,
    passed: u32,
}

const NEW_SSRC_TOKENS: u32 = 16;
const PACKETS_PER_TOKEN: u32 = 256;
/// SSRCs remembered as passed (a stream has one or two at a time; older ones are forgotten).
const KNOWN_SSRCS: usize = 8;

impl SsrcGate {
    fn new() -> SsrcGate {
        SsrcGate {
            known: Vec::new(),
            tokens: NEW_SSRC_TOKENS,
            passed: 0,
        }
    }

    /// Whether a packet of `ssrc` may be tried; spends a token for a new one.
    fn admit(&mut self, ssrc: u32) -> bool {
        if self.known.contains(&ssrc) {
            return true;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens = self.tokens.saturating_sub(1);
        true
    }

    /// A packet of `ssrc` passed.
    fn passed(&mut self, ssrc: u32) {
        if !self.known.contains(&ssrc) {
            if self.known.len() >= KNOWN_SSRCS {
                self.known.remove(0);
            }
            self.known.push(ssrc);
        }
        self.passed = self.passed.saturating_add(1);
        if self.passed >= PACKETS_PER_TOKEN {
            self.passed = 0;
            self.tokens = self.tokens.saturating_add(1).min(NEW_SSRC_TOKENS);
        }
    }
}

/// The SSRC a packet names: bytes 8-11 of RTP, 4-7 of RTCP.
fn ssrc_of(rtcp: bool, packet: &[u8]) -> Option<u32> {
    let at = if rtcp { 4usize } else { 8 };
    let b = packet.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

impl fmt::Debug for EndSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndSrtp").field("keys", &self.keys).finish()
    }
}

fn context(key: &MasterKey, replay: bool) -> Option<Context> {
    let (k, salt) = key.split();
    let (rtp, rtcp) = if replay {
        (
            webrtc_srtp::option::srtp_replay_protection(REPLAY_WINDOW),
            webrtc_srtp::option::srtcp_replay_protection(REPLAY_WINDOW),
        )
    } else {
        (
            webrtc_srtp::option::srtp_no_replay_protection(),
            webrtc_srtp::option::srtcp_no_replay_protection(),
        )
    };
    Context::new(k, salt, key.suite.profile(), Some(rtp), Some(rtcp)).ok()
}

impl EndSrtp {
    pub fn new(keys: SrtpKeys) -> Option<EndSrtp> {
        Some(EndSrtp {
            inbound: context(&keys.theirs, true)?,
            outbound: context(&keys.ours, false)?,
            keys,
            inbound_gate: SsrcGate::new(),
            outbound_gate: SsrcGate::new(),
        })
    }

    pub fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// New keys from a new offer or answer: a context whose key did not change keeps its
    /// rollover counters and replay window.
    pub fn rekey(&mut self, keys: SrtpKeys) -> bool {
        if keys.theirs != self.keys.theirs {
            match context(&keys.theirs, true) {
                Some(c) => {
                    self.inbound = c;
                    self.inbound_gate = SsrcGate::new();
                }
                None => return false,
            }
        }
        if keys.ours != self.keys.ours {
            match context(&keys.ours, false) {
                Some(c) => {
                    self.outbound = c;
                    self.outbound_gate = SsrcGate::new();
                }
                None => return false,
            }
        }
        self.keys = keys;
        true
    }

    /// Check and decrypt an SRTP (`rtcp`: SRTCP) packet the end sent, into `out`.
    pub fn unprotect(
        &mut self,
        rtcp: bool,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Refused> {
        if rtcp && !plausible_srtcp(self.keys.theirs.suite, packet) {
            return Err(Refused::Authentication);
        }
        let ssrc = ssrc_of(rtcp, packet).ok_or(Refused::Authentication)?;
        if !self.inbound_gate.admit(ssrc) {
            return Err(Refused::Authentication);
        }
        let inbound = &mut self.inbound;
        let plain = contained(|| {
            if rtcp {
                inbound.decrypt_rtcp(packet)
            } else {
                inbound.decrypt_rtp(packet)
            }
        })
        .ok_or(Refused::Authentication)?;
        self.inbound_gate.passed(ssrc);
        out.clear();
        out.extend_from_slice(&plain);
        Ok(())
    }

    /// Encrypt and authenticate an RTP (`rtcp`: RTCP) packet for the end, into `out`.
    pub fn protect(&mut self, rtcp: bool, packet: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        let ssrc = ssrc_of(rtcp, packet).ok_or(Refused::Protect)?;
        if !self.outbound_gate.admit(ssrc) {
            return Err(Refused::Protect);
        }
        let outbound = &mut self.outbound;
        let sealed = contained(|| {
            if rtcp {
                outbound.encrypt_rtcp(packet)
            } else {
                outbound.encrypt_rtp(packet)
            }
        })
        .ok_or(Refused::Protect)?;
        self.outbound_gate.passed(ssrc);
        out.clear();
        out.extend_from_slice(&sealed);
        Ok(())
    }
}

/// Run a call into the SRTP library on a packet from the network: an error, or a panic the
/// checks above did not foresee, is the packet's refusal, never the relay's end. The context
/// stays usable: a refused packet moves neither a rollover counter nor a replay window (it
/// may leave an entry for its SSRC, which [`SsrcGate`] bounds).
fn contained(f: impl FnOnce() -> Result<bytes::Bytes, webrtc_srtp::Error>) -> Option<bytes::Bytes> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .ok()
        .and_then(Result::ok)
}

/// Whether an SRTCP packet is long enough for its header, E flag and index and tag, and has
/// its E flag set. Checked before the library sees it: its SRTCP path subtracts these lengths
/// unchecked, and returns a packet whose E flag is clear without checking its tag at all.
/// Sluice never agrees to unencrypted SRTCP (it refuses session parameters), so such a packet
/// can only be forged.
fn plausible_srtcp(suite: Suite, packet: &[u8]) -> bool {
    // The trailer: E flag and index (4 bytes), then the tag for AES-CM (always 80 bits for
    // SRTCP, RFC 3711 §4.2); for AEAD the tag is inside the ciphertext and the trailer last.
    let (tag, trailer_from_end) = match suite {
        Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => (10usize, 14usize),
        Suite::AeadAes128Gcm => (16, 4),
    };
    let min = 8usize.saturating_add(4).saturating_add(tag);
    if packet.len() < min {
        return false;
    }
    packet
        .len()
        .checked_sub(trailer_from_end)
        .and_then(|i| packet.get(i))
        .is_some_and(|e| e & 0x80 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
        p
    }

    fn pair(suite: Suite) -> (EndSrtp, EndSrtp) {
        let a = MasterKey::generate(suite).unwrap();
        let b = MasterKey::generate(suite).unwrap();
        (
            EndSrtp::new(SrtpKeys { theirs: a, ours: b }).unwrap(),
            EndSrtp::new(SrtpKeys { theirs: b, ours: a }).unwrap(),
        )
    }

    #[test]
    fn each_suite_round_trips_rtp_and_rtcp_and_refuses_a_bad_tag_and_a_replay() {
        for suite in Suite::ALL {
            let (mut sluice, mut peer) = pair(suite);
            let (mut sealed, mut opened) = (Vec::new(), Vec::new());
            for seq in [65532u16, 65533, 65535, 0, 1, 3] {
                let p = rtp(seq, 7);
                peer.protect(false, &p, &mut sealed).unwrap();
                assert_ne!(sealed, p, "{suite:?}: encrypted");
                sluice.unprotect(false, &sealed, &mut opened).unwrap();
                assert_eq!(opened, p, "{suite:?}: seq {seq} across the rollover");
            }
            // A replay of the last packet is refused.
            assert_eq!(
                sluice.unprotect(false, &sealed, &mut opened),
                Err(Refused::Authentication)
            );
            let p = rtp(4, 7);
            peer.protect(false, &p, &mut sealed).unwrap();
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
            assert_eq!(
                sluice.unprotect(false, &sealed, &mut opened),
                Err(Refused::Authentication),
                "{suite:?}: a flipped tag bit"
            );
            let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 7];
            sluice.protect(true, &rr, &mut sealed).unwrap();
            peer.unprotect(true, &sealed, &mut opened).unwrap();
            assert_eq!(opened, rr, "{suite:?}: SRTCP");
            // SRTCP with its E flag cleared (unencrypted SRTCP, never agreed) is refused.
            sluice.protect(true, &rr, &mut sealed).unwrap();
            let e = if suite == Suite::AeadAes128Gcm {
                sealed.len() - 4
            } else {
                sealed.len() - 14
            };
            sealed[e] &= 0x7f;
            assert_eq!(
                peer.unprotect(true, &sealed, &mut opened),
                Err(Refused::Authentication),
                "{suite:?}: E flag cleared"
            );
        }
    }

    #[test]
    fn keys_read_from_sdp_are_checked_and_never_printed() {
        let k = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let b64 = k.to_base64();
        assert_eq!(b64.len(), 40);
        assert_eq!(
            MasterKey::from_base64(Suite::AesCm128HmacSha1_80, &b64),
            Ok(k)
        );
        assert_eq!(
            MasterKey::from_base64(Suite::AeadAes128Gcm, &b64),
            Err(KeyError::Malformed),
            "GCM keys are 28 bytes"
        );
        assert_eq!(
            MasterKey::from_base64(Suite::AesCm128HmacSha1_80, "not base64!"),
            Err(KeyError::Malformed)
        );
        let shown = format!("{k:?} {:?}", SrtpKeys { theirs: k, ours: k });
        assert!(!shown.contains(&b64[..8]), "{shown}");
        assert_ne!(k, MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap());
    }

    #[test]
    fn rekeying_keeps_an_unchanged_direction() {
        let (mut sluice, mut peer) = pair(Suite::AesCm128HmacSha1_80);
        let (mut sealed, mut opened) = (Vec::new(), Vec::new());
        peer.protect(false, &rtp(10, 1), &mut sealed).unwrap();
        sluice.unprotect(false, &sealed, &mut opened).unwrap();
        // The peer re-offers with a new key of its own; Sluice's stays.
        let new_theirs = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let keys = SrtpKeys {
            theirs: new_theirs,
            ours: sluice.keys().ours,
        };
        assert!(sluice.rekey(keys));
        let mut peer2 = EndSrtp::new(SrtpKeys {
            theirs: keys.ours,
            ours: new_theirs,
        })
        .unwrap();
        peer2.protect(false, &rtp(11, 1), &mut sealed).unwrap();
        sluice.unprotect(false, &sealed, &mut opened).unwrap();
        assert_eq!(opened, rtp(11, 1));
    }

    #[test]
    fn forged_packets_with_new_ssrcs_reach_the_library_a_bounded_number_of_times() {
        let (mut sluice, mut peer) = pair(Suite::AesCm128HmacSha1_80);
        let (mut sealed, mut opened) = (Vec::new(), Vec::new());
        // The stream's own SSRC passes.
        peer.protect(false, &rtp(1, 7), &mut sealed).unwrap();
        sluice.unprotect(false, &sealed, &mut opened).unwrap();
        // A flood of forged packets, each with a new SSRC: only the first tokens are tried.
        let mut forged = sealed.clone();
        for ssrc in 1000..3000u32 {
            forged[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let _ = sluice.unprotect(false, &forged, &mut opened);
        }
        assert_eq!(sluice.inbound_gate.tokens, 0, "spent");
        // The stream's own SSRC still passes; a genuine new one waits for a token, which the
        // stream's traffic earns.
        for seq in 2..(2 + PACKETS_PER_TOKEN as u16) {
            peer.protect(false, &rtp(seq, 7), &mut sealed).unwrap();
            sluice.unprotect(false, &sealed, &mut opened).unwrap();
        }
        peer.protect(false, &rtp(1, 8), &mut sealed).unwrap();
        sluice.unprotect(false, &sealed, &mut opened).unwrap();
        assert_eq!(opened, rtp(1, 8), "a new SSRC after a token was earned");
    }

    #[test]
    fn garbage_never_panics() {
        let mut out = Vec::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for suite in Suite::ALL {
            let (mut sluice, _) = pair(suite);
            for _ in 0..30_000 {
                let len = rng.usize(0..120);
                let mut p: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                if len > 1 && rng.bool() {
                    // Version 2, and an RTCP packet type half of the time.
                    p[0] = 0x80 | (p[0] & 0x3f);
                    if rng.bool() {
                        p[1] = rng.u8(192..=223);
                    }
                }
                if len >= 12 && rng.bool() {
                    // A known SSRC (RTP and RTCP places), so that the library itself is
                    // reached past the SSRC gate.
                    p[4..8].copy_from_slice(&7u32.to_be_bytes());
                    p[8..12].copy_from_slice(&7u32.to_be_bytes());
                }
                if len > 4 && rng.bool() {
                    // The E flag where either trailer has it.
                    let at = len - if rng.bool() { 4 } else { 14.min(len) };
                    p[at] |= 0x80;
                }
                let _ = sluice.unprotect(rng.bool(), &p, &mut out);
                let _ = sluice.protect(rng.bool(), &p, &mut out);
            }
        }
    }
}
