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
//! trust_anchors = "sti-ca-roots.pem"              # verification: the STI-CAs trusted
//! max_age_seconds = 60                            # oldest iat accepted
//! x5u_hosts = [".sti-provider.example"]           # certificate hosts allowed (empty: any)
//! fetch_timeout_ms = 3000                         # a call waits this long for its certificate
//! cache_entries = 1000                            # certificates kept (for their max-age)
//! # x5u_ca = "https-roots.pem"                    # roots for the HTTPS fetch besides the system's
//!
//! [trunk.stir]
//! sign = true            # add an Identity header to the calls sent to this trunk
//! attestation = "B"      # when no plugin chooses: A, B, C or none
//! verify = true          # check the Identity of the calls from this trunk
//! on_failure = "mark"    # mark (verstat=TN-Validation-Failed) or reject (RFC 8224's 403/436/437/438)
//! # key, x5u, certificate: this trunk's own, instead of [stir]'s
//! ```

use crate::validate::Problem;
use serde::Deserialize;
use toml::Spanned;

/// The signing credentials: `[stir]`, or a trunk's own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StirSettings {
    pub key: Option<Spanned<String>>,
    pub x5u: Option<Spanned<String>>,
    pub certificate: Option<Spanned<String>>,
    /// Verification: the trusted root certificates (PEM).
    pub trust_anchors: Option<Spanned<String>>,
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
    #[serde(default)]
    pub x5u_hosts: Vec<String>,
    /// Accept `http://` certificate URLs (closed networks, tests).
    #[serde(default)]
    pub x5u_allow_http: bool,
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_ms: u64,
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Extra roots for the HTTPS certificate fetch.
    pub x5u_ca: Option<Spanned<String>>,
}

impl Default for StirSettings {
    fn default() -> Self {
        StirSettings {
            key: None,
            x5u: None,
            certificate: None,
            trust_anchors: None,
            max_age_seconds: default_max_age(),
            x5u_hosts: Vec::new(),
            x5u_allow_http: false,
            fetch_timeout_ms: default_fetch_timeout(),
            cache_entries: default_cache_entries(),
            x5u_ca: None,
        }
    }
}

fn default_max_age() -> u64 {
    60
}
fn default_fetch_timeout() -> u64 {
    3000
}
fn default_cache_entries() -> usize {
    1000
}

/// What a failed verification does to the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Passed on with `verstat=TN-Validation-Failed`.
    #[default]
    Mark,
    /// Refused with RFC 8224's status.
    Reject,
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
    #[serde(default)]
    pub verify: bool,
    #[serde(default)]
    pub on_failure: OnFailure,
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
        check_x5u(&self.x5u)?;
        crate::validate::in_range("stir.max_age_seconds", self.max_age_seconds, 1, 86_400)?;
        crate::validate::in_range("stir.fetch_timeout_ms", self.fetch_timeout_ms, 100, 30_000)?;
        if self.cache_entries > 1_000_000 {
            return Err(Problem::new("stir.cache_entries: at most 1000000"));
        }
        Ok(())
    }
}

impl TrunkStir {
    pub fn check(&self, global: &StirSettings, name: &str) -> Result<(), Problem> {
        check_x5u(&self.x5u)?;
        if self.verify && global.trust_anchors.is_none() {
            return Err(Problem::new(format!(
                "trunk `{name}` verifies calls (stir.verify) but [stir] has no trust_anchors"
            )));
        }
        self.signing(global, name).map(|_| ())
    }
}
