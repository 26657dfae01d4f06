//! `[dns]`: how trunk host names are resolved (RFC 3263: NAPTR, SRV, A/AAAA) and how often the
//! answers are looked up again.

use crate::validate::{in_range, Problem};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// Name servers (`address:port`); empty: the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
    /// Answers are looked up again when their TTL ends, but not sooner than this (a TTL of 0
    /// would otherwise ask for every call) ...
    #[serde(default = "default_min")]
    pub refresh_min_seconds: u64,
    /// ... and not later than this.
    #[serde(default = "default_max")]
    pub refresh_max_seconds: u64,
}

fn default_min() -> u64 {
    30
}

fn default_max() -> u64 {
    3600
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            refresh_min_seconds: default_min(),
            refresh_max_seconds: default_max(),
        }
    }
}

impl DnsSettings {
    pub(crate) fn check(&self) -> Result<(), Problem> {
        in_range(
            "dns.refresh_min_seconds",
            self.refresh_min_seconds,
            1,
            86_400,
        )?;
        in_range(
            "dns.refresh_max_seconds",
            self.refresh_max_seconds,
            self.refresh_min_seconds,
            86_400,
        )?;
        Ok(())
    }
}
