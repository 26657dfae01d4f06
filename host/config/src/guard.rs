//! `[guard]`: flood protection. Requests are counted per source address (an IPv6 source per
//! /64); a source over the limit, or failing authentication too often, is banned and its
//! packets dropped unread. The PBX, the trunks and the `exempt` blocks are never counted.

use crate::trunk::Cidr;
use crate::validate::{in_range, Problem};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    /// `false` counts nothing and bans no one.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Requests are counted over windows this long ...
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// ... and more than this many in one window ban the source.
    #[serde(default = "default_max_requests")]
    pub max_requests: u32,
    #[serde(default = "default_ban")]
    pub ban_seconds: u64,
    /// Failed digest authentications (and REGISTERs for a domain no trunk has) within
    /// `auth_window_seconds` that ban the source when exceeded.
    #[serde(default = "default_auth_failures")]
    pub max_auth_failures: u32,
    #[serde(default = "default_auth_window")]
    pub auth_window_seconds: u64,
    /// Sources tracked at once (memory: about 100 bytes each).
    #[serde(default = "default_max_sources")]
    pub max_sources: usize,
    /// Addresses and blocks never counted, besides the PBX and the trunks.
    #[serde(default)]
    pub exempt: Vec<Cidr>,
    /// Answer a stranger's OPTIONS with `Allow`, `Supported`, `Accept` and `Server` (what
    /// scanners fingerprint); by default they get a bare 200.
    #[serde(default)]
    pub fingerprint_strangers: bool,
}

fn yes() -> bool {
    true
}
fn default_window() -> u64 {
    2
}
fn default_max_requests() -> u32 {
    40
}
fn default_ban() -> u64 {
    300
}
fn default_auth_failures() -> u32 {
    5
}
fn default_auth_window() -> u64 {
    60
}
fn default_max_sources() -> usize {
    100_000
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            enabled: true,
            window_seconds: default_window(),
            max_requests: default_max_requests(),
            ban_seconds: default_ban(),
            max_auth_failures: default_auth_failures(),
            auth_window_seconds: default_auth_window(),
            max_sources: default_max_sources(),
            exempt: Vec::new(),
            fingerprint_strangers: false,
        }
    }
}

impl GuardSettings {
    pub(crate) fn check(&self) -> Result<(), Problem> {
        in_range("guard.window_seconds", self.window_seconds, 1, 60)?;
        in_range("guard.max_requests", self.max_requests, 1, 1_000_000)?;
        in_range("guard.ban_seconds", self.ban_seconds, 1, 86_400)?;
        in_range("guard.max_auth_failures", self.max_auth_failures, 1, 1000)?;
        in_range(
            "guard.auth_window_seconds",
            self.auth_window_seconds,
            1,
            86_400,
        )?;
        in_range("guard.max_sources", self.max_sources, 100, 10_000_000)?;
        Ok(())
    }
}
