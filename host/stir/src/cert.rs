//! The signer's certificate, read with `x509-parser`: its public key (to match the signing
//! key, and to check signatures), its validity and whether it carries a TNAuthList (RFC 8226).

use std::fmt;
use x509_parser::prelude::*;

/// The TNAuthList extension (RFC 8226 §9).
const TN_AUTH_LIST: &str = "1.3.6.1.5.5.7.1.26";

/// What Sluice keeps of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    /// Validity, in UNIX seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The subject's public key: a P-256 point (SEC1), or empty for another kind of key.
    pub public_key: Vec<u8>,
    pub has_tn_auth_list: bool,
    /// basicConstraints CA, and keyUsage allowing certificate signing (or no keyUsage).
    pub is_ca: bool,
    /// The certificate itself (DER).
    pub der: Vec<u8>,
}

/// Why certificates could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    NoCertificate,
    Unreadable(String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::NoCertificate => f.write_str("no certificate in the PEM"),
            CertError::Unreadable(why) => write!(f, "unreadable certificate: {why}"),
        }
    }
}

impl std::error::Error for CertError {}

impl Certificate {
    /// Every certificate of a PEM file, in order (the signer's first, then its issuers).
    pub fn chain_from_pem(pem: &[u8]) -> Result<Vec<Certificate>, CertError> {
        let mut out = Vec::new();
        for block in Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| CertError::Unreadable(e.to_string()))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            out.push(Certificate::from_der(&block.contents)?);
        }
        if out.is_empty() {
            return Err(CertError::NoCertificate);
        }
        Ok(out)
    }

    pub fn from_der(der: &[u8]) -> Result<Certificate, CertError> {
        let (_, x509) =
            X509Certificate::from_der(der).map_err(|e| CertError::Unreadable(e.to_string()))?;
        let spki = x509.public_key();
        let p256 = spki.algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1";
        let public_key = if p256 {
            spki.subject_public_key.data.to_vec()
        } else {
            Vec::new()
        };
        let has_tn_auth_list = x509
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == TN_AUTH_LIST);
        let ca = x509
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca);
        let signs_certificates = match x509.key_usage() {
            Ok(Some(k)) => k.value.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        Ok(Certificate {
            is_ca: ca && signs_certificates,
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            public_key,
            has_tn_auth_list,
            der: der.to_vec(),
        })
    }

    /// Valid at `unix` seconds.
    pub fn valid_at(&self, unix: i64) -> bool {
        self.not_before <= unix && unix <= self.not_after
    }

    /// This certificate's signature verifies with `issuer`'s public key.
    pub fn signed_by(&self, issuer: &Certificate) -> bool {
        let (Ok((_, me)), Ok((_, them))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(them.public_key())).is_ok()
    }

    /// The certificate's key is the signer's.
    pub fn matches(&self, signer: &crate::Signer) -> bool {
        !self.public_key.is_empty() && self.public_key == signer.public_key()
    }
}
