//! `[sip]`: RFC 3261 timers, message size, call limit, the agent name Sluice writes.

use crate::validate::{in_range, Checked, Problem};
use serde::Deserialize;

/// The largest SIP message: what a UDP datagram can carry.
pub const MAX_MESSAGE_BYTES: usize = 65_535;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSettings {
    /// RFC 3261 T1 in milliseconds.
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
    /// Largest message accepted, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Most calls in progress at once; further INVITEs get 503.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Value of the User-Agent and Server headers Sluice writes; empty to write none.
    #[serde(default = "default_agent")]
    pub user_agent: String,
    /// What a new call from an address that may not call gets (a stranger on the PBX side, an
    /// address that is no trunk's): `refuse`, a 403 sent statelessly (no 100 Trying, no
    /// retransmission), or `drop`, nothing at all.
    #[serde(default)]
    pub strangers: StrangerPolicy,
    /// TCP connections accepted at once, in all and from one address; further ones are
    /// closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// An accepted TCP connection that has not sent one complete message within this is
    /// closed (later, 300 s of silence close it).
    #[serde(default = "default_first_message")]
    pub tcp_first_message_seconds: u64,
    /// Connections Sluice opened (TCP, TLS) that carried nothing for this long get a CRLF
    /// keep-alive ping (RFC 5626 §4.4.1); one not answered within 10 s is closed and its
    /// transactions fail over. 0: no pings.
    #[serde(default = "default_keepalive")]
    pub tcp_keepalive_seconds: u64,
    /// The largest INVITE sent over UDP; a larger new call is refused with 513 (no giant
    /// datagrams toward a peer).
    #[serde(default = "default_max_udp")]
    pub max_udp_bytes: usize,
    /// The longest header value accepted: a request with a longer one gets 513, a response
    /// with one is dropped (nothing that large is relayed to the other side).
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    /// One info line per call when it ends (both Call-IDs, status, durations).
    #[serde(default = "yes")]
    pub log_calls: bool,
    /// The session interval asked of a callee when the caller asked for none (RFC 4028).
    #[serde(default = "default_session_expires")]
    pub session_expires: u32,
    /// Requests asking for a shorter session get 422 with this as Min-SE (RFC 4028 says at
    /// least 90; less is for labs).
    #[serde(default = "default_min_session_expires")]
    pub min_session_expires: u32,
    /// NOTIFY and MESSAGE outside any dialog: `refuse` (403) or `accept` (200, dropped).
    #[serde(default)]
    pub unsolicited: Unsolicited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Unsolicited {
    #[default]
    Refuse,
    Accept,
}

fn default_session_expires() -> u32 {
    1800
}

fn default_min_session_expires() -> u32 {
    90
}

fn yes() -> bool {
    true
}

fn default_max_header() -> usize {
    4096
}

fn default_max_udp() -> usize {
    8192
}

fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_source() -> usize {
    64
}
fn default_first_message() -> u64 {
    10
}

fn default_keepalive() -> u64 {
    90
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StrangerPolicy {
    #[default]
    Refuse,
    Drop,
}

fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}
fn default_max_message() -> usize {
    MAX_MESSAGE_BYTES
}
fn default_max_calls() -> usize {
    10_000
}
fn default_agent() -> String {
    "Sluice".into()
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            t1_ms: default_t1(),
            t2_ms: default_t2(),
            t4_ms: default_t4(),
            max_message_bytes: default_max_message(),
            max_calls: default_max_calls(),
            user_agent: default_agent(),
            strangers: StrangerPolicy::default(),
            max_connections: default_max_connections(),
            max_connections_per_source: default_max_connections_per_source(),
            tcp_first_message_seconds: default_first_message(),
            tcp_keepalive_seconds: default_keepalive(),
            max_udp_bytes: default_max_udp(),
            max_header_bytes: default_max_header(),
            log_calls: true,
            session_expires: default_session_expires(),
            min_session_expires: default_min_session_expires(),
            unsolicited: Unsolicited::default(),
        }
    }
}

impl SipSettings {
    pub fn check(&self) -> Checked {
        in_range("sip.t1_ms", self.t1_ms, 1, 10_000)?;
        in_range("sip.max_connections", self.max_connections, 1, 1_000_000)?;
        in_range("sip.max_udp_bytes", self.max_udp_bytes, 1300, 65_507)?;
        in_range("sip.max_header_bytes", self.max_header_bytes, 256, 65_535)?;
        in_range(
            "sip.min_session_expires",
            self.min_session_expires,
            10,
            86_400,
        )?;
        in_range(
            "sip.session_expires",
            self.session_expires,
            self.min_session_expires,
            86_400,
        )?;
        in_range(
            "sip.max_connections_per_source",
            self.max_connections_per_source,
            1,
            self.max_connections,
        )?;
        in_range(
            "sip.tcp_first_message_seconds",
            self.tcp_first_message_seconds,
            1,
            300,
        )?;
        in_range(
            "sip.tcp_keepalive_seconds",
            self.tcp_keepalive_seconds,
            0,
            3600,
        )?;
        in_range("sip.t2_ms", self.t2_ms, self.t1_ms, 60_000)?;
        in_range("sip.t4_ms", self.t4_ms, 1, 60_000)?;
        in_range(
            "sip.max_message_bytes",
            self.max_message_bytes,
            1024,
            MAX_MESSAGE_BYTES,
        )?;
        in_range("sip.max_calls", self.max_calls, 1, 10_000_000)?;
        if self.user_agent.len() > 128 || self.user_agent.chars().any(char::is_control) {
            return Err(Problem::new(
                "sip.user_agent must be at most 128 characters, without control characters",
            ));
        }
        Ok(())
    }
}
