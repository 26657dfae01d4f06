//! Socket addresses in the configuration: parsed once, when the file is read, with an error
//! that says what is expected (and, through the TOML parser, where).

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;

/// An IP address with a port (`127.0.0.1:5060`, `[::1]:5060`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketAddress(pub SocketAddr);

impl<'de> Deserialize<'de> for SocketAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(SocketAddress).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not an IP address with a port (e.g. 127.0.0.1:5060 or [::1]:5060)"
            ))
        })
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
