//! The SHAKEN PASSporT (RFC 8225 with RFC 8588's extension), signed with ES256 (ECDSA over
//! P-256 with SHA-256, the signature as `r || s`), and the `Identity` header that carries it
//! in its full form (RFC 8224 §4.1):
//! `Identity: <header>.<claims>.<signature>;info=<x5u>;alg=ES256;ppt=shaken`.
//!
//! The JSON objects are written with their keys in lexicographic order (RFC 8225 §9), so
//! what Sluice signs is also the deterministic form a compact-form verifier rebuilds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use ring::signature::{KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};
use std::fmt;

/// SHAKEN attestation (ATIS-1000074 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attest {
    /// Full: the signer knows the customer and that it may use the calling number.
    A,
    /// Partial: it knows the customer, not the number.
    B,
    /// Gateway: it only knows where the call entered its network.
    C,
}

impl Attest {
    pub fn as_str(self) -> &'static str {
        match self {
            Attest::A => "A",
            Attest::B => "B",
            Attest::C => "C",
        }
    }

    pub fn parse(s: &str) -> Option<Attest> {
        match s {
            "A" => Some(Attest::A),
            "B" => Some(Attest::B),
            "C" => Some(Attest::C),
            _ => None,
        }
    }
}

/// The protected header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppt: Option<String>,
    pub typ: String,
    pub x5u: String,
}

/// `orig`: one number (or URI).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Orig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// `dest`: numbers (or URIs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tn: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uri: Vec<String>,
}

/// The claims of a SHAKEN PASSporT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub attest: String,
    pub dest: Dest,
    pub iat: u64,
    pub orig: Orig,
    pub origid: String,
}

impl Claims {
    /// Claims for a call from `orig` to `dest` (canonical numbers) at `iat` (UNIX seconds),
    /// with a new `origid`.
    pub fn new(attest: Attest, orig: &str, dest: &str, iat: u64) -> Claims {
        Claims {
            attest: attest.as_str().to_string(),
            dest: Dest {
                tn: vec![dest.to_string()],
                uri: Vec::new(),
            },
            iat,
            orig: Orig {
                tn: Some(orig.to_string()),
                uri: None,
            },
            origid: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// A decoded PASSporT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passport {
    pub header: Header,
    pub claims: Claims,
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerError {
    /// Neither a PKCS#8 nor a SEC1 (`EC PRIVATE KEY`) P-256 key in PEM.
    NotAP256Key,
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a P-256 private key in PEM (PKCS#8 or SEC1)")
    }
}

impl std::error::Error for SignerError {}

/// The signing key and the certificate URL it goes with. Its key never leaves it.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    x5u: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("x5u", &self.x5u)
            .field("key", &"<hidden>")
            .finish()
    }
}

/// The first PEM block labelled `label` in `pem`, with its armour (an OpenSSL key file may
/// carry `EC PARAMETERS` before the key).
fn block<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let rest = pem.get(start..)?;
    let stop = rest.find(&end)?.checked_add(end.len())?;
    rest.get(..stop)
}

impl Signer {
    /// A P-256 key from PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), for certificates
    /// at `x5u`.
    pub fn from_pem(pem: &str, x5u: &str) -> Result<Signer, SignerError> {
        use p256::pkcs8::DecodePrivateKey;
        use p256::pkcs8::EncodePrivateKey;
        let secret = if let Some(b) = block(pem, "PRIVATE KEY") {
            p256::SecretKey::from_pkcs8_pem(b).map_err(|_| SignerError::NotAP256Key)?
        } else if let Some(b) = block(pem, "EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(b).map_err(|_| SignerError::NotAP256Key)?
        } else {
            return Err(SignerError::NotAP256Key);
        };
        let der = secret
            .to_pkcs8_der()
            .map_err(|_| SignerError::NotAP256Key)?;
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes(), &rng)
            .map_err(|_| SignerError::NotAP256Key)?;
        Ok(Signer {
            key,
            rng,
            x5u: x5u.to_string(),
        })
    }

    pub fn x5u(&self) -> &str {
        &self.x5u
    }

    /// The public key (SEC1, uncompressed), to compare with a certificate's.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// The protected header for this signer's certificate.
    pub fn header(&self) -> Header {
        Header {
            alg: "ES256".into(),
            ppt: Some("shaken".into()),
            typ: "passport".into(),
            x5u: self.x5u.clone(),
        }
    }

    /// The PASSporT for `claims`, signed: `header.claims.signature` (JWS compact serialization).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::to_vec(&self.header()).unwrap_or_default();
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut jws = String::with_capacity(
            header
                .len()
                .saturating_add(payload.len())
                .saturating_mul(2)
                .saturating_add(100),
        );
        B64.encode_string(header, &mut jws);
        jws.push('.');
        B64.encode_string(payload, &mut jws);
        // ring signs with a random nonce; it fails only if the system's RNG does, and then
        // the PASSporT carries no signature and fails every verification.
        let signature = self.key.sign(&self.rng, jws.as_bytes());
        jws.push('.');
        if let Ok(sig) = signature {
            B64.encode_string(sig.as_ref(), &mut jws);
        }
        jws
    }

    /// The value of the `Identity` header for `claims`.
    pub fn identity(&self, claims: &Claims) -> String {
        format!(
            "{};info=<{}>;alg=ES256;ppt=shaken",
            self.sign(claims),
            self.x5u
        )
    }
}

/// An `Identity` header's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The PASSporT in JWS compact serialization.
    pub jws: String,
    /// The `info` parameter without its angle brackets.
    pub info: Option<String>,
    pub alg: Option<String>,
    pub ppt: Option<String>,
}

/// Why an `Identity` header or its PASSporT was not accepted, with the response RFC 8224
/// prescribes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// Not an Identity header, a JWS, or the JSON of a SHAKEN PASSporT.
    Malformed(&'static str),
    /// An algorithm or PASSporT type other than ES256 and shaken.
    Unsupported(&'static str),
    /// The signature does not verify with the certificate's key.
    BadSignature,
    /// `iat` older than the allowed age.
    Stale,
    /// `iat` in the future.
    Future,
    /// `orig` is not the calling number.
    OrigMismatch,
    /// `dest` does not name the called number.
    DestMismatch,
}

impl IdentityError {
    /// The status RFC 8224 gives this failure when calls failing it are refused.
    pub fn status(self) -> u16 {
        match self {
            IdentityError::Stale | IdentityError::Future => 403,
            IdentityError::Unsupported(_) => 437,
            _ => 438,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            IdentityError::Malformed(why) | IdentityError::Unsupported(why) => why,
            IdentityError::BadSignature => "signature does not verify",
            IdentityError::Stale => "iat too old",
            IdentityError::Future => "iat in the future",
            IdentityError::OrigMismatch => "orig is not the calling number",
            IdentityError::DestMismatch => "dest is not the called number",
        }
    }

    /// The reason phrase of the response.
    pub fn phrase(self) -> &'static str {
        match self.status() {
            403 => "Stale Date",
            437 => "Unsupported Credential",
            _ => "Invalid Identity Header",
        }
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Parse an `Identity` header value.
pub fn parse_identity(value: &str) -> Result<Identity, IdentityError> {
    let value = value.trim();
    let (jws, mut rest) = value.split_once(';').unwrap_or((value, ""));
    let jws = jws.trim();
    if jws.split('.').count() != 3 {
        return Err(IdentityError::Malformed("not a JWS"));
    }
    let mut id = Identity {
        jws: jws.to_string(),
        info: None,
        alg: None,
        ppt: None,
    };
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').unwrap_or((rest, ""));
        let after = after.trim_start();
        let (v, next) = if let Some(inner) = after.strip_prefix('<') {
            let (v, tail) = inner
                .split_once('>')
                .ok_or(IdentityError::Malformed("unterminated info"))?;
            (v, tail.split_once(';').map_or("", |(_, n)| n))
        } else {
            after.split_once(';').unwrap_or((after, ""))
        };
        let v = v.trim().trim_matches('"').to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "info" => id.info = Some(v),
            "alg" => id.alg = Some(v),
            "ppt" => id.ppt = Some(v),
            _ => {}
        }
        rest = next;
    }
    Ok(id)
}

/// What an inbound call's numbers and time are, to check a PASSporT against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Now, in UNIX seconds.
    pub now: u64,
    /// The oldest `iat` accepted, in seconds before `now`.
    pub max_age: u64,
    /// The calling and the called numbers, canonical.
    pub orig: &'a str,
    pub dest: &'a str,
}

/// The outcome of a check, for the PBX (`verstat`) and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed(Box<Passport>),
    Failed(IdentityError),
}

impl Passport {
    /// Decode a PASSporT in JWS compact serialization, without checking its signature: the
    /// certificate it names is to be fetched first.
    pub fn decode(jws: &str) -> Result<Passport, IdentityError> {
        let mut parts = jws.split('.');
        let (Some(h), Some(c), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::Malformed("not a JWS"));
        };
        if h.is_empty() || c.is_empty() {
            return Err(IdentityError::Unsupported(
                "compact form (SHAKEN uses the full form)",
            ));
        }
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(IdentityError::Malformed("unreadable PASSporT header"))?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(IdentityError::Malformed("unreadable PASSporT claims"))?;
        if header.alg != "ES256" {
            return Err(IdentityError::Unsupported("alg other than ES256"));
        }
        if header.ppt.as_deref() != Some("shaken") {
            return Err(IdentityError::Unsupported("ppt other than shaken"));
        }
        if Attest::parse(&claims.attest).is_none() {
            return Err(IdentityError::Malformed("attest other than A, B or C"));
        }
        Ok(Passport { header, claims })
    }
}

/// Check `identity` against the certificate key `key` (SEC1 point) and what the call says.
pub fn check(identity: &Identity, key: &[u8], expect: Expect<'_>) -> Verdict {
    match check_inner(identity, key, expect) {
        Ok(p) => Verdict::Passed(Box::new(p)),
        Err(e) => Verdict::Failed(e),
    }
}

fn check_inner(
    identity: &Identity,
    key: &[u8],
    expect: Expect<'_>,
) -> Result<Passport, IdentityError> {
    if identity.alg.as_deref().is_some_and(|a| a != "ES256") {
        return Err(IdentityError::Unsupported("alg other than ES256"));
    }
    let passport = Passport::decode(&identity.jws)?;
    for (_, step) in steps(identity, &passport, key, expect) {
        step?;
    }
    Ok(passport)
}

/// How far ahead of this clock a signer's may be: an `iat` later than that is refused.
pub const FUTURE_SKEW: u64 = 5;

/// Each check of a decoded PASSporT, named, in the order they apply: the signature with the
/// certificate's key, `iat` not in the future and not too old, `orig` and `dest`.
pub fn steps(
    identity: &Identity,
    passport: &Passport,
    key: &[u8],
    expect: Expect<'_>,
) -> [(&'static str, Result<(), IdentityError>); 5] {
    let iat = passport.claims.iat;
    let orig = passport
        .claims
        .orig
        .tn
        .as_deref()
        .and_then(crate::tn::canonical);
    let dest_ok = passport
        .claims
        .dest
        .tn
        .iter()
        .filter_map(|t| crate::tn::canonical(t))
        .any(|t| t == expect.dest);
    let ok_or = |ok: bool, e: IdentityError| if ok { Ok(()) } else { Err(e) };
    [
        (
            "signature (ES256, the certificate's key)",
            signature(identity, key),
        ),
        (
            "iat not in the future",
            ok_or(
                iat <= expect.now.saturating_add(FUTURE_SKEW),
                IdentityError::Future,
            ),
        ),
        (
            "iat fresh",
            ok_or(
                expect.now.saturating_sub(iat) <= expect.max_age,
                IdentityError::Stale,
            ),
        ),
        (
            "orig is the calling number",
            ok_or(
                orig.as_deref() == Some(expect.orig),
                IdentityError::OrigMismatch,
            ),
        ),
        (
            "dest names the called number",
            ok_or(dest_ok, IdentityError::DestMismatch),
        ),
    ]
}

/// The JWS signature verifies with `key` (a P-256 point).
fn signature(identity: &Identity, key: &[u8]) -> Result<(), IdentityError> {
    let (input, sig) = identity
        .jws
        .rsplit_once('.')
        .ok_or(IdentityError::Malformed("not a JWS"))?;
    let sig = B64.decode(sig).map_err(|_| IdentityError::BadSignature)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| IdentityError::BadSignature)
}
