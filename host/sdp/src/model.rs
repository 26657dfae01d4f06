//! What Sluice reads of an SDP body: the lines, and the model of the parts it rewrites.

use std::net::IpAddr;

/// A parsed SDP body. `lines` are every line, without line ends, in order; the other fields
/// point into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub lines: Vec<String>,
    /// The line end the body used (`\r\n`, or `\n` for a liberal peer).
    pub crlf: bool,
    pub origin: Origin,
    /// The session-level `c=`, when there is one.
    pub connection: Option<Connection>,
    /// The session-level direction attribute (`sendrecv` when absent).
    pub direction: Direction,
    pub media: Vec<Media>,
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub line: usize,
    pub username: String,
    pub session_id: String,
    pub version: u64,
    pub address: String,
}

/// `c=IN IP4|IP6 <address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub line: usize,
    pub address: IpAddr,
}

impl Connection {
    /// `c=IN IP4 0.0.0.0`: the RFC 2543 way of putting a stream on hold.
    pub fn is_hold(&self) -> bool {
        self.address.is_unspecified()
    }
}

/// The direction attribute of a session or a stream (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn from_attribute(a: &str) -> Option<Direction> {
        Some(match a {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// A media section: from its `m=` line up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The `m=` line's index, and one past the section's last line.
    pub line: usize,
    pub end: usize,
    /// `audio`, `video`, `image`…
    pub kind: String,
    /// 0: the stream is declined (or removed).
    pub port: u16,
    pub proto: String,
    /// Payload types (RTP) or format names, in the order of the `m=` line.
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub direction: Option<Direction>,
    /// `a=rtcp:<port>` (RFC 3605), when present.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux` (RFC 5761): RTCP shares the RTP port.
    pub rtcp_mux: bool,
}

impl Sdp {
    /// The address a stream is sent to: its own `c=`, else the session's.
    pub fn connection_of(&self, m: &Media) -> Option<Connection> {
        m.connection.or(self.connection)
    }

    /// The direction of a stream: its own attribute, else the session's.
    pub fn direction_of(&self, m: &Media) -> Direction {
        m.direction.unwrap_or(self.direction)
    }

    /// Whether the party that wrote this SDP put the stream on hold: `sendonly` or `inactive`
    /// (RFC 3264 §8.4), or the RFC 2543 form, `c=0.0.0.0`.
    pub fn on_hold(&self, m: &Media) -> bool {
        matches!(
            self.direction_of(m),
            Direction::SendOnly | Direction::Inactive
        ) || self.connection_of(m).is_some_and(|c| c.is_hold())
    }
}
