//! `a=crypto` (RFC 4568, SDES): the keys an end of an SRTP stream sends with, offered and
//! answered in SDP. Only what Sluice needs is modelled: the tag, the crypto-suite and the first
//! key's `inline:` parameter (key and salt, base64; an optional lifetime and MKI are read past).

use crate::model::{Media, Sdp};

/// One `a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]` line of a section.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    pub tag: u32,
    /// As written, e.g. `AES_CM_128_HMAC_SHA1_80`.
    pub suite: String,
    /// The base64 of the first key's master key and salt (the part after `inline:` up to `|`).
    pub key_b64: String,
    /// An MKI (`|<value>:<length>`) or session parameters: Sluice offers neither, and leaves
    /// such an offer unused.
    pub has_mki: bool,
    pub has_session_params: bool,
}

// Key material is never printed, even in a debug log.
impl std::fmt::Debug for CryptoAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoAttr")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key_b64", &"<hidden>")
            .field("has_mki", &self.has_mki)
            .field("has_session_params", &self.has_session_params)
            .finish()
    }
}

/// Read the value of an `a=crypto:` attribute (the part after the colon).
pub fn parse_crypto(value: &str) -> Option<CryptoAttr> {
    let mut words = value.split_ascii_whitespace();
    let tag = words.next()?.parse::<u32>().ok()?;
    let suite = words.next()?.to_string();
    let key_params = words.next()?;
    let has_session_params = words.next().is_some();
    // Several keys are joined by `;`: the first one is used.
    let first = key_params.split(';').next()?;
    let inline = first.strip_prefix("inline:")?;
    let mut parts = inline.split('|');
    let key_b64 = parts.next()?.to_string();
    if key_b64.is_empty() || tag > 999_999_999 {
        return None;
    }
    // `|<lifetime>` is a number or `2^n`; an MKI has a colon.
    let has_mki = parts.any(|p| p.contains(':'));
    Some(CryptoAttr {
        tag,
        suite,
        key_b64,
        has_mki,
        has_session_params,
    })
}

/// The value of an `a=crypto:` attribute Sluice writes: tag, suite and key, nothing else.
pub fn format_crypto(tag: u32, suite: &str, key_b64: &str) -> String {
    format!("{tag} {suite} inline:{key_b64}")
}

impl Sdp {
    /// The `a=crypto` lines of a section that Sluice can read, in their order.
    pub fn crypto_of(&self, m: &Media) -> Vec<CryptoAttr> {
        self.lines
            .get(m.line..m.end)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l.strip_prefix("a=crypto:"))
            .filter_map(parse_crypto)
            .collect()
    }
}

/// The RTP profile of a section carries SRTP (`RTP/SAVP`, `RTP/SAVPF`).
pub fn is_secure_proto(proto: &str) -> bool {
    matches!(proto, "RTP/SAVP" | "RTP/SAVPF")
}

/// The profile with or without SRTP, keeping AVPF feedback: `RTP/AVP` ⇄ `RTP/SAVP`,
/// `RTP/AVPF` ⇄ `RTP/SAVPF`. Other profiles are returned as they are.
pub fn with_srtp(proto: &str, secure: bool) -> &str {
    match (proto, secure) {
        ("RTP/AVP" | "RTP/SAVP", true) => "RTP/SAVP",
        ("RTP/AVPF" | "RTP/SAVPF", true) => "RTP/SAVPF",
        ("RTP/AVP" | "RTP/SAVP", false) => "RTP/AVP",
        ("RTP/AVPF" | "RTP/SAVPF", false) => "RTP/AVPF",
        (other, _) => other,
    }
}

/// Whether a section carries RTP (an SRTP candidate): not T.38 over UDPTL, not a data channel.
pub fn is_rtp_proto(proto: &str) -> bool {
    matches!(proto, "RTP/AVP" | "RTP/SAVP" | "RTP/AVPF" | "RTP/SAVPF")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_carriers_send() {
        let a = parse_crypto(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
        )
        .unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(a.key_b64, "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR");
        assert!(a.has_mki);
        assert!(!a.has_session_params);
        let b = parse_crypto(
            "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^31",
        )
        .unwrap();
        assert!(!b.has_mki);
        let c = parse_crypto("3 AEAD_AES_128_GCM inline:abcd UNENCRYPTED_SRTCP").unwrap();
        assert!(c.has_session_params);
        assert!(!format!("{c:?}").contains("abcd"), "keys are not printed");
    }

    #[test]
    fn refuses_what_is_not_a_crypto_line() {
        for bad in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:abc",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES_CM_128_HMAC_SHA1_80 uri:abc",
            "1 AES_CM_128_HMAC_SHA1_80 inline:",
            "1 AES_CM_128_HMAC_SHA1_80 inline:|2^20",
            "99999999999 AES_CM_128_HMAC_SHA1_80 inline:abc",
        ] {
            assert_eq!(parse_crypto(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn profiles_toggle_srtp_keeping_feedback() {
        assert_eq!(with_srtp("RTP/AVP", true), "RTP/SAVP");
        assert_eq!(with_srtp("RTP/SAVPF", false), "RTP/AVPF");
        assert_eq!(with_srtp("RTP/AVPF", true), "RTP/SAVPF");
        assert_eq!(with_srtp("udptl", true), "udptl");
        assert!(is_secure_proto("RTP/SAVP"));
        assert!(!is_rtp_proto("udptl"));
    }
}
