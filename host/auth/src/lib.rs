//! SIP digest authentication, sans-IO (RFC 3261 §22 with RFC 7616's algorithms):
//!
//! - [`challenge`]: a `WWW-Authenticate` / `Proxy-Authenticate` value read into a
//!   [`Challenge`], and a server's challenge written;
//! - [`client`]: the answer to a challenge ([`Credentials::authorize`]) for MD5, SHA-256 and
//!   their `-sess` forms, with `qop=auth`, the nonce count, `opaque`, and `stale`;
//! - [`server`]: nonces Sluice issues (stateless, MAC-protected, with an expiry) and the check of
//!   an `Authorization` value, with replay protection by nonce count.
//!
//! No clock, no sockets: times are given by the caller.

// The workspace lints forbid panicking slicing and arithmetic in code that handles input; tests
// index into data they built themselves.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )
)]

pub mod challenge;
pub mod client;
pub mod params;
pub mod server;

pub use challenge::{Algorithm, Challenge};
pub use client::{Authorization, Credentials};
pub use server::{Check, NonceIssuer, Verdict};

use std::fmt::Write;

/// `H(data)` of an algorithm, as lowercase hex.
pub(crate) fn hash(alg: Algorithm, parts: &[&str]) -> String {
    use sha2::Digest as _;
    let joined = parts.join(":");
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => hex(&md5::Md5::digest(joined.as_bytes())),
        Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&sha2::Sha256::digest(joined.as_bytes())),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The digest `response` (RFC 7616 §3.4.1), given `HA1` already computed.
pub(crate) fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = hash(alg, &[method, uri]);
    match qop {
        Some((nc, cnonce, qop)) => hash(alg, &[ha1, nonce, nc, cnonce, qop, &ha2]),
        // RFC 2069 compatibility: no qop.
        None => hash(alg, &[ha1, nonce, &ha2]),
    }
}

/// `HA1`, with the `-sess` forms folding in the nonces.
pub(crate) fn ha1(
    alg: Algorithm,
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
) -> String {
    let base = hash(alg, &[user, realm, password]);
    if alg.is_sess() {
        hash(alg, &[&base, nonce, cnonce])
    } else {
        base
    }
}
