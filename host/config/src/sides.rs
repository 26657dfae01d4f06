//! `[internal]`, `[external]` and `[pbx]`: where Sluice listens on each side, and the PBX.

use crate::address::SocketAddress;
use crate::validate::{check_host, in_range, Checked, Problem};
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    Udp,
    Tcp,
    /// TCP with TLS on it (`sips:`; default port 5061).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub transport: TransportName,
    pub address: Spanned<SocketAddress>,
}

impl Listener {
    pub fn addr(&self) -> SocketAddr {
        self.address.get_ref().0
    }
}

/// One side of Sluice: the PBX's (internal) or the trunks' (external).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    pub listen: Vec<Listener>,
    /// The address peers on this side reach Sluice at, when Sluice is behind NAT: written in
    /// Contact (and, per trunk, Via) instead of the listen address.
    pub public_address: Option<std::net::IpAddr>,
}

impl Side {
    pub fn check(&self, name: &str) -> Checked {
        if self.listen.is_empty() {
            return Err(Problem::new(format!(
                "{name}: a side needs at least one `listen` entry"
            )));
        }
        for (i, l) in self.listen.iter().enumerate() {
            let same = |o: &Listener| o.transport == l.transport && o.addr() == l.addr();
            if self.listen.iter().take(i).any(same) {
                return Err(Problem::at(
                    l.address.span(),
                    format!("{name}.listen has {} twice", l.addr()),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub host: Spanned<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_transport")]
    pub transport: TransportName,
    /// Further addresses (IPs, CIDR blocks) that may place calls besides `host`: a PBX
    /// cluster. Calls on the PBX side from anywhere else are refused with 403.
    #[serde(default)]
    pub associated: Vec<Spanned<crate::trunk::Cidr>>,
    /// The PBX takes TCP on its UDP address: an inbound call's INVITE larger than 1,300 bytes
    /// goes over TCP instead (RFC 3261 §18.1.1).
    #[serde(default)]
    pub tcp_for_large_requests: bool,
}

pub(crate) fn default_port() -> u16 {
    5060
}
pub(crate) fn default_transport() -> TransportName {
    TransportName::Udp
}

impl Peer {
    pub fn check(&self) -> Checked {
        check_host(&self.host, "pbx host")?;
        if self.transport == TransportName::Tls {
            return Err(Problem::at(
                self.host.span(),
                "the PBX is reached over udp or tcp (TLS is for trunks and listeners)",
            ));
        }
        in_range("pbx.port", self.port, 1, u16::MAX)
    }
}
