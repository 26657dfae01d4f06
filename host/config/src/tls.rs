//! `[tls]`: SIP over TLS. The certificate chain and key Sluice presents on its `tls` listeners
//! (PEM files, paths relative to the configuration file), and the certificate authorities it
//! trusts for TLS trunks besides the system's.

use crate::validate::{Checked, Problem};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The chain presented on `tls` listeners, leaf first (PEM).
    pub certificate: Option<Spanned<String>>,
    /// Its private key (PEM).
    pub key: Option<Spanned<String>>,
    /// Certificate authorities (PEM) trusted for trunks' certificates besides the system's.
    pub ca: Option<Spanned<String>>,
}

impl TlsSettings {
    /// `tls_listeners`: whether any side listens on `tls`.
    pub fn check(&self, tls_listeners: bool) -> Checked {
        match (&self.certificate, &self.key) {
            (Some(_), None) | (None, Some(_)) => Err(Problem::new(
                "tls.certificate and tls.key go together: set both or neither",
            )),
            (None, None) if tls_listeners => Err(Problem::new(
                "a `tls` listener needs tls.certificate and tls.key",
            )),
            _ => Ok(()),
        }
    }
}
