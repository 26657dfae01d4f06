//! `[admin]` and `[metrics]`: the admin HTTP API and a separate scrape address.

use crate::address::SocketAddress;
use crate::validate::{in_range, Checked, Problem};
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

/// The longest drain Sluice accepts, from the configuration, the command line or the admin API
/// (a day: longer is a mistake, and a deadline must stay far below what a clock can hold).
pub const MAX_DRAIN_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: Spanned<SocketAddress>,
    /// Bearer token for every admin route; required when `listen` is not a loopback address.
    pub token: Option<Spanned<String>>,
    /// Seconds a drain lets calls go on before ending them (default 30).
    #[serde(default = "default_drain")]
    pub drain_seconds: u64,
    /// After an upgrade (SIGUSR2), how long the old process lets its calls go on before
    /// ending them (default 14400: four hours).
    #[serde(default = "default_upgrade")]
    pub upgrade_seconds: u64,
    /// Serve the API over TLS with this certificate chain and key (PEM files, relative to the
    /// configuration file); both or neither.
    pub tls_certificate: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
}

fn default_drain() -> u64 {
    30
}

fn default_upgrade() -> u64 {
    14_400
}

impl Admin {
    pub fn addr(&self) -> SocketAddr {
        self.listen.get_ref().0
    }

    pub fn check(&self) -> Checked {
        let addr = self.addr();
        match &self.token {
            Some(t) if t.get_ref().len() < 16 => {
                return Err(Problem::at(
                    t.span(),
                    "admin.token must be at least 16 characters",
                ));
            }
            Some(t)
                if t.get_ref().len() > 1024
                    || !t.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(Problem::at(
                    t.span(),
                    "admin.token must be at most 1024 visible ASCII characters",
                ));
            }
            None if !addr.ip().is_loopback() => {
                return Err(Problem::at(
                    self.listen.span(),
                    format!("admin.listen `{addr}` is not a loopback address: set admin.token"),
                ));
            }
            _ => {}
        }
        match (&self.tls_certificate, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(Problem::new(
                    "admin.tls_certificate and admin.tls_key go together: set both or neither",
                ))
            }
            _ => {}
        }
        in_range(
            "admin.drain_seconds",
            self.drain_seconds,
            0,
            MAX_DRAIN_SECONDS,
        )?;
        in_range(
            "admin.upgrade_seconds",
            self.upgrade_seconds,
            0,
            MAX_DRAIN_SECONDS,
        )
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: Spanned<SocketAddress>,
}

impl Metrics {
    pub fn addr(&self) -> SocketAddr {
        self.listen.get_ref().0
    }
}
