//! `[stir]` and a trunk's `stir` table: STIR/SHAKEN signing of outbound calls. The key and the
//! certificate are files (relative to the configuration file); the key is read by the host
//! and never shown to plugins, logs, metrics or the admin API.
//!
//! ```toml
//! [stir]
//! key = "shaken-key.pem"                          # P-256, PKCS#8 or SEC1 PEM
//! x5u = "https://certs.example.net/shaken.pem"    # where verifiers fetch the certificate
//! certificate = "shaken.pem"                      # a local copy of it, checked against the key
//!
//! [trunk.stir]
//! sign = true            # add an Identity header to the calls sent to this trunk
//! attestation = "B"      # when no plugin chooses: A, B, C or none
//! # key, x5u, certificate: this trunk's own, instead of [stir]'s
//! ```

use crate::validate::Problem;
use serde::Deserialize;
use toml::Spanned;

/// The signing credentials: `[stir]`, or a trunk's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StirSettings {
    pub key: Option<Spanned<String>>,
    pub x5u: Option<Spanned<String>>,
    pub certificate: Option<Spanned<String>>,
}

/// A trunk's `stir` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkStir {
    #[serde(default)]
    pub sign: bool,
    #[serde(default)]
    pub attestation: AttestationName,
    pub key: Option<Spanned<String>>,
    pub x5u: Option<Spanned<String>>,
    pub certificate: Option<Spanned<String>>,
}

/// An attestation level in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AttestationName {
    A,
    B,
    #[default]
    C,
    #[serde(rename = "none")]
    None,
}

/// What a trunk signs with: its own settings over `[stir]`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    pub key: String,
    pub x5u: String,
    pub certificate: Option<String>,
    pub attestation: AttestationName,
}

impl TrunkStir {
    /// The signing settings of trunk `name` when it signs; a missing key or URL is a problem.
    pub fn signing(&self, global: &StirSettings, name: &str) -> Result<Option<Signing>, Problem> {
        if !self.sign {
            return Ok(None);
        }
        let pick = |own: &Option<Spanned<String>>, global: &Option<Spanned<String>>| {
            own.as_ref()
                .or(global.as_ref())
                .map(|s| s.get_ref().clone())
        };
        let key = pick(&self.key, &global.key).ok_or_else(|| {
            Problem::new(format!(
                "trunk `{name}` signs calls (stir.sign) but has no key: set `key` in [stir] or in the trunk's stir table"
            ))
        })?;
        let x5u = pick(&self.x5u, &global.x5u).ok_or_else(|| {
            Problem::new(format!(
                "trunk `{name}` signs calls (stir.sign) but has no certificate URL: set `x5u` in [stir] or in the trunk's stir table"
            ))
        })?;
        Ok(Some(Signing {
            key,
            x5u,
            certificate: pick(&self.certificate, &global.certificate),
            attestation: self.attestation,
        }))
    }
}

fn check_x5u(x5u: &Option<Spanned<String>>) -> Result<(), Problem> {
    if let Some(u) = x5u {
        let v = u.get_ref();
        let ok = v
            .strip_prefix("https://")
            .or_else(|| v.strip_prefix("http://"));
        if ok.is_none_or(|rest| rest.is_empty() || rest.contains(char::is_whitespace)) {
            return Err(Problem::at(
                u.span(),
                format!("x5u `{v}` is not an http(s) URL"),
            ));
        }
    }
    Ok(())
}

impl StirSettings {
    pub fn check(&self) -> Result<(), Problem> {
        check_x5u(&self.x5u)
    }
}

impl TrunkStir {
    pub fn check(&self, global: &StirSettings, name: &str) -> Result<(), Problem> {
        check_x5u(&self.x5u)?;
        self.signing(global, name).map(|_| ())
    }
}
