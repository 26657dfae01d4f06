//! Checking an inbound call's `Identity` (RFC 8224 §6.2, ATIS-1000074 §5.3), in two steps
//! around the one piece of I/O, the certificate fetch:
//!
//! 1. [`start`] reads the call's Identity headers and picks the SHAKEN one: either the outcome
//!    is known at once (no header, a malformed one, a certificate URL outside the allowed hosts)
//!    or the certificate at `x5u` is needed;
//! 2. [`finish`] takes the fetched certificates (PEM) and checks the chain to the trust anchors,
//!    the validity dates and the TNAuthList of the signer's certificate, then the PASSporT
//!    (signature, `iat`, `orig`, `dest`).
//!
//! The outcome is a [`Outcome`]: the `verstat` value the PBX gets and, for a failure, the
//! reason (for metrics and logs) and the status RFC 8224 gives it.

use crate::cert::Certificate;
use crate::passport::{check, parse_identity, Expect, Identity, IdentityError, Passport, Verdict};

/// What a verifier trusts and accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Root certificates (the STI-PA's trusted STI-CAs).
    pub anchors: Vec<Certificate>,
    /// The oldest `iat` accepted, in seconds.
    pub max_age: u64,
    /// Hosts `x5u` may name (exactly, or a parent domain written with a leading dot); empty
    /// allows any `https` host.
    pub allowed_hosts: Vec<String>,
    /// Accept `http://` certificate URLs too (tests, closed networks).
    pub allow_http: bool,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Verified: the attestation it carried.
    Passed { attest: String },
    /// No Identity header to verify.
    NoIdentity,
    /// Failed, for this reason.
    Failed(Failure),
}

impl Outcome {
    /// The `verstat` parameter value (ATIS-1000074 §5.3.2.1).
    pub fn verstat(&self) -> &'static str {
        match self {
            Outcome::Passed { .. } => "TN-Validation-Passed",
            Outcome::NoIdentity => "No-TN-Validation",
            Outcome::Failed(_) => "TN-Validation-Failed",
        }
    }

    /// A short name for metrics: `passed`, `no-identity` or the failure's.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Passed { .. } => "passed",
            Outcome::NoIdentity => "no-identity",
            Outcome::Failed(f) => f.label(),
        }
    }
}

/// Why a verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The header or its PASSporT.
    Identity(IdentityError),
    /// `x5u` is not an allowed https URL, or differs from `info`.
    CertificateUrl,
    /// The certificate could not be fetched (or not in time).
    Fetch,
    /// The certificates fetched are not PEM certificates.
    CertificateUnreadable,
    /// The chain does not lead to a trust anchor.
    Untrusted,
    /// A certificate of the chain is outside its validity.
    CertificateExpired,
    /// The signer's certificate has no TNAuthList (RFC 8226).
    NoTnAuthList,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Identity(e) => match e {
                IdentityError::Malformed(_) => "malformed",
                IdentityError::Unsupported(_) => "unsupported",
                IdentityError::BadSignature => "bad-signature",
                IdentityError::Stale => "stale",
                IdentityError::Future => "future",
                IdentityError::OrigMismatch => "orig-mismatch",
                IdentityError::DestMismatch => "dest-mismatch",
            },
            Failure::CertificateUrl => "certificate-url",
            Failure::Fetch => "fetch-failed",
            Failure::CertificateUnreadable => "certificate-unreadable",
            Failure::Untrusted => "untrusted",
            Failure::CertificateExpired => "certificate-expired",
            Failure::NoTnAuthList => "no-tnauthlist",
        }
    }

    /// The response RFC 8224 §6.2.2 gives a call failing this, when failures are refused.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Failure::Identity(e) => (e.status(), e.phrase()),
            Failure::CertificateUrl | Failure::Fetch | Failure::CertificateUnreadable => {
                (436, "Bad Identity Info")
            }
            Failure::Untrusted | Failure::CertificateExpired | Failure::NoTnAuthList => {
                (437, "Unsupported Credential")
            }
        }
    }
}

/// The first step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Done(Outcome),
    /// Fetch the certificates at `url`, then [`finish`].
    Fetch {
        url: String,
        identity: Box<Identity>,
    },
}

/// Whether `url` is a certificate URL the policy allows: parsed as the fetch will parse it
/// (WHATWG rules: `\` is a path separator), https (or http when allowed), no user
/// information, its host on the allow-list.
fn allowed(policy: &Policy, url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let scheme_ok = parsed.scheme() == "https" || (policy.allow_http && parsed.scheme() == "http");
    if !scheme_ok || !parsed.username().is_empty() || parsed.password().is_some() {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    policy.allowed_hosts.is_empty()
        || policy.allowed_hosts.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            match a.strip_prefix('.') {
                Some(parent) => host.ends_with(&format!(".{parent}")),
                None => host == a,
            }
        })
}

/// Step one, over the values of the call's Identity headers.
pub fn start<'a>(policy: &Policy, identities: impl IntoIterator<Item = &'a str>) -> Started {
    let mut first_error = None;
    for value in identities {
        let parsed = parse_identity(value).and_then(|id| {
            if id.ppt.as_deref().is_some_and(|p| p != "shaken") {
                return Err(IdentityError::Unsupported("ppt other than shaken"));
            }
            let p = Passport::decode(&id.jws)?;
            Ok((id, p))
        });
        match parsed {
            Ok((id, p)) => {
                let url = p.header.x5u.clone();
                if id.info.as_deref().is_some_and(|i| i != url) || !allowed(policy, &url) {
                    return Started::Done(Outcome::Failed(Failure::CertificateUrl));
                }
                return Started::Fetch {
                    url,
                    identity: Box::new(id),
                };
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Started::Done(match first_error {
        Some(e) => Outcome::Failed(Failure::Identity(e)),
        None => Outcome::NoIdentity,
    })
}

/// Step two: the certificates fetched from `x5u` (PEM, the signer's first), checked at `now`
/// against the calling and called numbers in `expect`.
pub fn finish(
    policy: &Policy,
    identity: &Identity,
    fetched: Result<&[u8], ()>,
    expect: Expect<'_>,
) -> Outcome {
    let Ok(pem) = fetched else {
        return Outcome::Failed(Failure::Fetch);
    };
    let Ok(chain) = Certificate::chain_from_pem(pem) else {
        return Outcome::Failed(Failure::CertificateUnreadable);
    };
    if let Err(f) = trusted(
        policy,
        &chain,
        i64::try_from(expect.now).unwrap_or(i64::MAX),
    ) {
        return Outcome::Failed(f);
    }
    let Some(signer) = chain.first() else {
        return Outcome::Failed(Failure::CertificateUnreadable);
    };
    let expect = Expect {
        max_age: policy.max_age,
        ..expect
    };
    match check(identity, &signer.public_key, expect) {
        Verdict::Passed(p) => Outcome::Passed {
            attest: p.claims.attest,
        },
        Verdict::Failed(e) => Outcome::Failed(Failure::Identity(e)),
    }
}

/// The chain leads from its first certificate to an anchor (each signed by the next, or the
/// last by an anchor), every certificate valid at `now`, the first with a TNAuthList.
pub fn trusted(policy: &Policy, chain: &[Certificate], now: i64) -> Result<(), Failure> {
    let Some(first) = chain.first() else {
        return Err(Failure::CertificateUnreadable);
    };
    if !first.has_tn_auth_list {
        return Err(Failure::NoTnAuthList);
    }
    // The signer is an end entity; everything above it must be a CA allowed to sign
    // certificates (else any certificate under an anchor could issue "SHAKEN" ones).
    if first.is_ca {
        return Err(Failure::Untrusted);
    }
    // Walk up: at each step the issuer is the next certificate of the chain, or an anchor.
    let mut current = first;
    let mut rest = chain.get(1..).unwrap_or(&[]).iter();
    for _ in 0..8 {
        if !current.valid_at(now) {
            return Err(Failure::CertificateExpired);
        }
        let issuers = || {
            policy
                .anchors
                .iter()
                .filter(|a| a.is_ca && a.subject == current.issuer && current.signed_by(a))
        };
        if issuers().any(|a| a.valid_at(now)) {
            return Ok(());
        }
        if issuers().next().is_some() {
            return Err(Failure::CertificateExpired);
        }
        // The certificate is itself an anchor (the same DER).
        if policy.anchors.iter().any(|a| a.der == current.der) {
            return Ok(());
        }
        match rest.next() {
            Some(next)
                if next.is_ca && next.subject == current.issuer && current.signed_by(next) =>
            {
                current = next;
            }
            _ => return Err(Failure::Untrusted),
        }
    }
    Err(Failure::Untrusted)
}
