//! `[[trunk]]`: the providers Sluice sends calls to and accepts calls from: how they are
//! recognised and authenticated (type, credentials, associated addresses), where calls go
//! (destinations with priority and weight, failover), whether they are alive (OPTIONS), how
//! many calls they take, their media, and their plugin chain.

use crate::sides::{default_port, default_transport, TransportName};
use crate::validate::{
    check_host, check_host_port, check_name, in_range, is_host, is_host_port, Checked, Problem,
};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::net::IpAddr;
use toml::Spanned;

/// How a trunk is recognised and authenticated (the reference's trunk types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkKind {
    /// Recognised by source address (its host and `associated` addresses); nobody registers.
    #[default]
    Ip,
    /// Sluice registers to the provider with the trunk's credentials.
    Register,
    /// Credentials only to answer the provider's challenges (Twilio): no REGISTER.
    Credentials,
    /// A gateway or provider registers to Sluice with the credentials Sluice holds.
    AcceptRegister,
}

/// An address or a block of them: `198.51.100.7`, `198.51.100.0/24`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from));
        parsed.map(Cidr).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not an IP address or a CIDR block (e.g. 198.51.100.0/24)"
            ))
        })
    }
}

/// Where calls to a trunk may go. Lower priority first; among equal priorities, by weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub host: Spanned<String>,
    /// Absent with a host name: the port SRV gives (RFC 3263), else 5060.
    pub port: Option<u16>,
    /// Default: the trunk's transport.
    pub transport: Option<TransportName>,
    #[serde(default = "default_priority")]
    pub priority: u16,
    #[serde(default = "default_weight")]
    pub weight: u16,
}

fn default_priority() -> u16 {
    10
}
fn default_weight() -> u16 {
    1
}
fn default_expires() -> u32 {
    3600
}
fn default_failover_seconds() -> u64 {
    30
}
fn default_destination_timeout() -> u64 {
    4000
}
fn default_keepalive_seconds() -> u64 {
    360
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: Spanned<String>,
    pub host: Spanned<String>,
    /// Absent with a host name: the port SRV gives (RFC 3263), else 5060.
    pub port: Option<u16>,
    /// Absent with a host name: the transport NAPTR/SRV give (RFC 3263), else UDP.
    pub transport: Option<TransportName>,
    /// The brand plugin (`generic` when the provider has none; empty for no brand plugin).
    #[serde(default = "default_brand")]
    pub brand: Spanned<String>,
    /// Rule-set plugins for messages sent to the trunk, in order (they run before the brand).
    #[serde(default)]
    pub outbound_rules: Vec<Spanned<String>>,
    /// Rule-set plugins for messages received from the trunk, in order (after the brand).
    #[serde(default)]
    pub inbound_rules: Vec<Spanned<String>>,
    /// Whether Sluice anchors the media of the trunk's calls.
    #[serde(default)]
    pub media: MediaMode,
    /// Codecs (encoding names, in order of preference) an offer sent to the trunk may carry;
    /// absent: all. DTMF (`telephone-event`) is always kept.
    pub codecs: Option<Vec<Spanned<String>>>,
    /// SRTP (SDES keys) on the trunk's leg, with plain RTP toward the PBX.
    #[serde(default)]
    pub srtp: SrtpOption,
    /// The crypto-suites offered and accepted, in order of preference (default: all three of
    /// [`SRTP_SUITES`]).
    pub srtp_suites: Option<Vec<Spanned<String>>>,
    /// How the trunk is recognised and authenticated.
    #[serde(default, rename = "type")]
    pub kind: TrunkKind,
    /// Authentication ID and secret (register, credentials, accept-register).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The domain of the address of record and the realm (default: the host).
    pub domain: Option<Spanned<String>>,
    /// The expiry Sluice asks for when it registers, in seconds.
    #[serde(default = "default_expires")]
    pub register_expires: u32,
    /// Further addresses the provider sends from (IPs and CIDR blocks).
    #[serde(default)]
    pub associated: Vec<Spanned<Cidr>>,
    /// Match the source port too, not only the address.
    #[serde(default)]
    pub verify_port: bool,
    /// Destinations for calls to the trunk; absent: `host`, `port`, `transport`.
    #[serde(default)]
    pub destinations: Vec<Destination>,
    /// Statuses besides 408, 503 and transport errors that move a call to the next destination.
    #[serde(default)]
    pub failover_on: Vec<u16>,
    /// How long a call may spend trying destinations before the PBX gets the last failure.
    #[serde(default = "default_failover_seconds")]
    pub failover_seconds: u64,
    /// A destination that answers nothing (not even 100 Trying) for this long is given up for
    /// the next one.
    #[serde(default = "default_destination_timeout")]
    pub destination_timeout_ms: u64,
    /// OPTIONS keep-alive: a trunk that stops answering is down and skipped.
    #[serde(default)]
    pub keepalive: bool,
    #[serde(default = "default_keepalive_seconds")]
    pub keepalive_seconds: u64,
    /// Only a 2xx to OPTIONS proves the trunk alive (default: any response).
    #[serde(default)]
    pub keepalive_strict: bool,
    /// Calls at once, both directions; 0 for no limit.
    #[serde(default)]
    pub max_calls: usize,
    /// The longest an answered call may last, in seconds (0: no limit): a guard against hung
    /// calls, which billing depends on.
    #[serde(default)]
    pub max_call_seconds: u64,
    /// Send every request to this proxy (`host:port`) instead of the destination.
    pub outbound_proxy: Option<Spanned<String>>,
    /// Write the external side's private address in Contact and Via toward this trunk, not
    /// its `public_address`.
    #[serde(default)]
    pub use_private_address: bool,
    /// Write the public address in the Via header too (it is always in Contact).
    #[serde(default)]
    pub via_public_address: bool,
    /// The trunk takes TCP on its UDP destinations' addresses: a new call's INVITE larger than
    /// 1,300 bytes goes over TCP instead (RFC 3261 §18.1.1).
    #[serde(default)]
    pub tcp_for_large_requests: bool,
    /// A REFER inside this trunk's calls: `relay` it to the other leg (topology hidden) or
    /// `refuse` it (403).
    #[serde(default)]
    pub transfer: TransferPolicy,
    /// A forwarded call's `Diversion` and `History-Info` reach this trunk (rehosted); `false`
    /// removes them.
    #[serde(default = "yes")]
    pub forward_history: bool,
    /// The scheme of the URIs naming the trunk (Request-URI, To, Sluice's Contact): `sip`
    /// (with `transport=tls` over TLS), or `sips` (TLS only).
    #[serde(default)]
    pub uri_scheme: UriScheme,
    /// STIR/SHAKEN signing of the calls sent to this trunk (see [`crate::stir`]).
    #[serde(default)]
    pub stir: crate::stir::TrunkStir,
    /// TLS destinations: the name the provider's certificate must carry (and SNI); default
    /// the trunk's host.
    pub tls_server_name: Option<String>,
    /// TLS destinations: the client certificate chain and key Sluice presents to this provider
    /// (mutual TLS; PEM, relative to the configuration file); both or neither.
    pub tls_certificate: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    /// TLS destinations: the only certificate authorities trusted for this provider (PEM);
    /// default the system's roots and `[tls] ca`.
    pub tls_ca: Option<Spanned<String>>,
    /// With tenants: the country the trunk's numbers are read in (ISO 3166 code; default
    /// `routing.country`): its national forms and international prefix.
    pub country: Option<Spanned<String>>,
    /// With tenants: how numbers are written toward the trunk (`e164`, `digits`,
    /// `national`); its brand plugin may still rewrite them.
    pub number_format: Option<crate::tenant::NumberFormat>,
    /// With tenants: where the called DID of the trunk's calls is read, in order: the
    /// `request-uri`, `to`, or a header naming a number (`P-Called-Party-ID`, `Diversion`).
    #[serde(default = "default_called_from")]
    pub called_number_from: Vec<Spanned<String>>,
}

fn default_called_from() -> Vec<Spanned<String>> {
    ["request-uri", "to"]
        .map(|s| Spanned::new(0..0, s.to_string()))
        .to_vec()
}

fn yes() -> bool {
    true
}

/// What a REFER inside a trunk's calls gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TransferPolicy {
    #[default]
    Relay,
    Refuse,
    Handle,
}

/// A destination as configured: port and transport absent when DNS (RFC 3263) is to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSpec {
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<TransportName>,
    pub priority: u16,
    pub weight: u16,
}

impl Trunk {
    /// The trunk's transport: as configured, else UDP.
    pub fn transport(&self) -> TransportName {
        self.transport.unwrap_or_else(default_transport)
    }

    /// The trunk's port: as configured, else 5061 over TLS and 5060 otherwise.
    pub fn port(&self) -> u16 {
        match (self.port, self.transport()) {
            (Some(p), _) => p,
            (None, TransportName::Tls) => 5061,
            (None, _) => default_port(),
        }
    }

    /// The destinations calls go to: the list, or the trunk's host, port and transport.
    pub fn destination_list(&self) -> Vec<DestinationSpec> {
        if self.destinations.is_empty() {
            return vec![DestinationSpec {
                host: self.host.get_ref().clone(),
                port: self.port,
                transport: self.transport,
                priority: 10,
                weight: 1,
            }];
        }
        self.destinations
            .iter()
            .map(|d| DestinationSpec {
                host: d.host.get_ref().clone(),
                port: d.port,
                transport: d.transport.or(self.transport),
                priority: d.priority,
                weight: d.weight,
            })
            .collect()
    }

    /// The realm and address-of-record domain.
    pub fn domain(&self) -> &str {
        self.domain
            .as_ref()
            .map_or(self.host.get_ref().as_str(), |d| d.get_ref().as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MediaMode {
    /// Sluice relays the RTP and rewrites the SDP (topology hiding, NAT).
    #[default]
    Anchor,
    /// The SDP crosses untouched; media flows between the PBX and the provider directly.
    SignallingOnly,
}

/// The scheme of the URIs Sluice writes toward a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UriScheme {
    #[default]
    Sip,
    Sips,
}

/// SRTP on a trunk's leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SrtpOption {
    /// No SRTP of Sluice's own: an SDP's keys, if any, cross end to end.
    #[default]
    Off,
    /// Best effort: offered with `RTP/AVP` and `a=crypto`; a peer without SRTP stays plain.
    Optional,
    /// `RTP/SAVP` only: a peer without SRTP is refused.
    Required,
}

/// The SRTP crypto-suites Sluice speaks, in its default order of preference.
pub const SRTP_SUITES: [&str; 3] = [
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
];

fn default_brand() -> Spanned<String> {
    Spanned::new(0..0, "generic".to_string())
}

impl Trunk {
    fn check(&self) -> Checked {
        check_name(&self.name, "trunk name")?;
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err(Problem::at(
                self.name.span(),
                format!(
                    "trunk `{}`: tls_certificate and tls_key go together",
                    self.name.get_ref()
                ),
            ));
        }
        if let Some(c) = &self.country {
            if sluice_routing::Numbering::new(c.get_ref()).is_none() {
                return Err(Problem::at(
                    c.span(),
                    format!(
                        "trunk `{}`: `{}` is no ISO 3166 country code",
                        self.name.get_ref(),
                        c.get_ref()
                    ),
                ));
            }
        }
        for f in &self.called_number_from {
            let v = f.get_ref();
            let token = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !token {
                return Err(Problem::at(
                    f.span(),
                    format!("called_number_from: `{v}` is not request-uri, to or a header name"),
                ));
            }
        }
        if matches!(self.name.get_ref().as_str(), "pbx" | "unknown") {
            return Err(Problem::at(
                self.name.span(),
                format!(
                    "trunk name `{}` is reserved (metrics label the PBX's and strangers' \
                     messages with it)",
                    self.name.get_ref()
                ),
            ));
        }
        check_host(&self.host, "trunk host")?;
        if let Some(p) = &self.outbound_proxy {
            check_host_port(
                p,
                &format!("trunk `{}`: outbound_proxy", self.name.get_ref()),
            )?;
        }
        let name = self.name.get_ref();
        in_range(&format!("port of trunk `{name}`"), self.port(), 1, u16::MAX)?;
        // An empty brand runs no brand plugin.
        if !self.brand.get_ref().is_empty() {
            check_name(&self.brand, "brand")?;
        }
        for r in self.outbound_rules.iter().chain(&self.inbound_rules) {
            check_name(r, "rule set")?;
        }
        self.check_auth()?;
        self.check_calls()?;
        self.check_secure()?;
        self.check_codecs()
    }
}

impl Trunk {
    /// `codecs`: not empty, encoding names, and only where media is anchored.
    fn check_codecs(&self) -> Checked {
        let Some(codecs) = &self.codecs else {
            return Ok(());
        };
        let name = self.name.get_ref();
        if codecs.is_empty() {
            return Err(Problem::new(format!(
                "codecs of trunk `{name}` is empty: leave it out to allow every codec"
            )));
        }
        if self.media == MediaMode::SignallingOnly {
            return Err(Problem::new(format!(
                "trunk `{name}` has codecs but media = \"signalling-only\": Sluice filters \
                 codecs only for media it anchors"
            )));
        }
        for c in codecs {
            let v = c.get_ref();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
            if v.is_empty() || v.len() > 32 || !v.bytes().all(token) {
                return Err(Problem::at(
                    c.span(),
                    format!("codec `{v}` must be an encoding name such as PCMU or opus"),
                ));
            }
        }
        Ok(())
    }

    fn check_secure(&self) -> Checked {
        let name = self.name.get_ref();
        let all_tls = self
            .destination_list()
            .iter()
            .all(|d| d.transport.unwrap_or_else(default_transport) == TransportName::Tls);
        if self.uri_scheme == UriScheme::Sips && !all_tls {
            return Err(Problem::at(
                self.name.span(),
                format!(
                    "trunk `{name}` has uri_scheme = \"sips\": its destinations must all be tls"
                ),
            ));
        }
        if self.srtp != SrtpOption::Off && self.media == MediaMode::SignallingOnly {
            return Err(Problem::at(
                self.name.span(),
                format!(
                    "trunk `{name}` has srtp but media = \"signalling-only\": Sluice terminates \
                     SRTP only for media it anchors"
                ),
            ));
        }
        let Some(suites) = &self.srtp_suites else {
            return Ok(());
        };
        if self.srtp == SrtpOption::Off {
            return Err(Problem::new(format!(
                "trunk `{name}` has srtp_suites but srtp = \"off\""
            )));
        }
        if suites.is_empty() {
            return Err(Problem::new(format!(
                "srtp_suites of trunk `{name}` is empty: leave it out for every suite"
            )));
        }
        for s in suites {
            if !SRTP_SUITES.contains(&s.get_ref().as_str()) {
                return Err(Problem::at(
                    s.span(),
                    format!(
                        "trunk `{name}`: unknown SRTP suite `{}` (known: {})",
                        s.get_ref(),
                        SRTP_SUITES.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_auth(&self) -> Checked {
        let name = self.name.get_ref();
        let needs = matches!(
            self.kind,
            TrunkKind::Register | TrunkKind::Credentials | TrunkKind::AcceptRegister
        );
        let has = self.username.as_deref().is_some_and(|u| !u.is_empty())
            && self.password.as_deref().is_some_and(|p| !p.is_empty());
        if needs && !has {
            return Err(Problem::new(format!(
                "trunk `{name}` of type {:?} needs username and password",
                self.kind
            )));
        }
        // A register trunk's domain goes into the REGISTER's URIs (the trunk's host when
        // unset, already checked).
        if let (TrunkKind::Register, Some(d)) = (self.kind, &self.domain) {
            // The host, when no domain is set, is checked already.
            let domain = d.get_ref();
            if !(is_host(domain) || is_host_port(domain)) {
                return Err(Problem::at(
                    d.span(),
                    format!(
                        "trunk `{name}`: domain `{domain}` is not host[:port] or [IPv6][:port] \
                         (it goes into the REGISTER's URIs)"
                    ),
                ));
            }
        }
        let domain = self.domain.as_ref().map(|d| d.get_ref());
        for v in [self.username.as_ref(), self.password.as_ref(), domain]
            .into_iter()
            .flatten()
        {
            if v.len() > 256 || v.chars().any(|c| c.is_control()) {
                return Err(Problem::new(format!(
                    "trunk `{name}`: username, password and domain must be at most 256 \
                     characters, without control characters"
                )));
            }
        }
        in_range(
            &format!("register_expires of trunk `{name}`"),
            self.register_expires,
            60,
            86_400,
        )
    }

    fn check_calls(&self) -> Checked {
        let name = self.name.get_ref();
        in_range(
            &format!("failover_seconds of trunk `{name}`"),
            self.failover_seconds,
            1,
            300,
        )?;
        in_range(
            &format!("destination_timeout_ms of trunk `{name}`"),
            self.destination_timeout_ms,
            100,
            64_000,
        )?;
        in_range(
            &format!("keepalive_seconds of trunk `{name}`"),
            self.keepalive_seconds,
            1,
            86_400,
        )?;
        in_range(
            &format!("max_calls of trunk `{name}`"),
            self.max_calls,
            0,
            10_000_000,
        )?;
        in_range(
            &format!("max_call_seconds of trunk `{name}`"),
            self.max_call_seconds,
            0,
            604_800,
        )?;
        for s in &self.failover_on {
            in_range(&format!("failover_on of trunk `{name}`"), *s, 300, 699)?;
        }
        for d in &self.destinations {
            check_host(&d.host, "destination host")?;
            in_range(
                &format!("a destination port of trunk `{name}`"),
                d.port.unwrap_or(1),
                1,
                u16::MAX,
            )?;
            in_range(
                &format!("a destination weight of trunk `{name}`"),
                d.weight,
                1,
                1000,
            )?;
        }
        if self.kind == TrunkKind::AcceptRegister && !self.destinations.is_empty() {
            return Err(Problem::new(format!(
                "trunk `{name}` is accept-register: its calls go to where it registers, not to \
                 destinations"
            )));
        }
        Ok(())
    }
}

/// Every trunk, and their names unique.
pub fn check_trunks(trunks: &[Trunk]) -> Checked {
    for (i, t) in trunks.iter().enumerate() {
        t.check()?;
        let name = t.name.get_ref();
        let earlier = || trunks.iter().take(i);
        if earlier().any(|o| o.name.get_ref() == name) {
            return Err(Problem::at(
                t.name.span(),
                format!("trunk name `{name}` is used twice"),
            ));
        }
        let registers = |k: TrunkKind| matches!(k, TrunkKind::Register | TrunkKind::AcceptRegister);
        if registers(t.kind) {
            let same = earlier().find(|o| {
                registers(o.kind)
                    && o.host.get_ref().eq_ignore_ascii_case(t.host.get_ref())
                    && o.username == t.username
            });
            if let Some(o) = same {
                return Err(Problem::at(
                    t.name.span(),
                    format!(
                        "trunks `{}` and `{name}` register with the same host and \
                         authentication ID",
                        o.name.get_ref()
                    ),
                ));
            }
        }
        let clash = |accept: &Trunk, other: &Trunk| {
            accept.kind == TrunkKind::AcceptRegister
                && accept.name.get_ref() != other.name.get_ref()
                && accept
                    .host
                    .get_ref()
                    .eq_ignore_ascii_case(other.host.get_ref())
        };
        if let Some(o) = earlier().find(|o| clash(t, o) || clash(o, t)) {
            return Err(Problem::at(
                t.host.span(),
                format!(
                    "the host domain `{}` of accept-register trunk `{}` is also the host of \
                     trunk `{}`",
                    t.host.get_ref(),
                    if t.kind == TrunkKind::AcceptRegister {
                        name
                    } else {
                        o.name.get_ref()
                    },
                    if t.kind == TrunkKind::AcceptRegister {
                        o.name.get_ref()
                    } else {
                        name
                    },
                ),
            ));
        }
    }
    Ok(())
}

/// `[routing]`: where calls go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Without tenants, calls from the PBX go to this trunk (calls from a trunk go to the
    /// PBX). With tenants, their routes say.
    pub outbound_trunk: Option<Spanned<String>>,
    /// The country numbers are read in (ISO 3166 code) where a tenant names none, and the
    /// trunks' numbers.
    #[serde(default = "default_country")]
    pub country: Spanned<String>,
    /// Numbers routed as dialled, whatever the caller ID.
    #[serde(default = "default_emergency")]
    pub emergency_numbers: Vec<String>,
}

fn default_country() -> Spanned<String> {
    Spanned::new(0..0, "US".to_string())
}

fn default_emergency() -> Vec<String> {
    ["911", "933", "112", "999", "000", "110", "119"]
        .map(String::from)
        .to_vec()
}

impl Routing {
    pub fn check(&self, trunks: &[Trunk], tenants: bool) -> Checked {
        if sluice_routing::Numbering::new(self.country.get_ref()).is_none() {
            return Err(Problem::at(
                self.country.span(),
                format!(
                    "routing.country `{}` is no ISO 3166 country code",
                    self.country.get_ref()
                ),
            ));
        }
        if let Some(e) = self
            .emergency_numbers
            .iter()
            .find(|e| e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Problem::new(format!(
                "routing.emergency_numbers: `{e}` must be digits"
            )));
        }
        if let (Some(t), true) = (&self.outbound_trunk, tenants) {
            return Err(Problem::at(
                t.span(),
                "routing.outbound_trunk is not used with tenants (their routes say where PBX \
                 calls go): remove it",
            ));
        }
        let Some(target) = &self.outbound_trunk else {
            if tenants {
                return Ok(());
            }
            return Err(Problem::new(
                "routing.outbound_trunk is needed: without tenants, it is where the PBX's calls go",
            ));
        };
        if trunks.iter().any(|t| t.name.get_ref() == target.get_ref()) {
            Ok(())
        } else {
            Err(Problem::at(
                target.span(),
                format!(
                    "routing.outbound_trunk names `{}`, but no trunk has that name",
                    target.get_ref()
                ),
            ))
        }
    }
}
