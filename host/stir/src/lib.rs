//! STIR/SHAKEN without I/O: what the host needs to sign an outbound call and to check an
//! inbound one, given the bytes of keys and certificates and the time.
//!
//! - [`tn`]: telephone numbers in their canonical form (RFC 8224 §8.3);
//! - [`passport`]: the SHAKEN PASSporT (RFC 8225, RFC 8588), its signing with ES256 and the
//!   `Identity` header that carries it (RFC 8224), and their parsing and checking;
//! - [`cert`]: the signer's certificate: its public key, validity and TNAuthList;
//! - [`verify`]: an inbound call's Identity checked, around the certificate fetch.
//!
//! The private key lives in a [`Signer`]: nothing reads it back (its `Debug` shows none of it).

pub mod cert;
pub mod passport;
pub mod tn;
pub mod verify;

pub use cert::{CertError, Certificate};
pub use passport::{
    check, parse_identity, Attest, Claims, Expect, Header, Identity, IdentityError, Passport,
    Signer, SignerError, Verdict,
};
