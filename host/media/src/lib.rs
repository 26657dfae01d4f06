//! Media anchoring, sans-IO. Sluice is the only media endpoint each side of a call sees: every
//! stream gets a port pair on Sluice's side toward the caller and one toward the callee, the
//! SDP each side receives names those, and a relay forwards what arrives on one to the other.
//!
//! - [`ports`]: the even/odd RTP/RTCP port pairs of a side's range, handed out and taken back;
//! - [`session`]: one call's streams across offers and answers ([`CallMedia`]): which ports,
//!   where each end receives, the plan for the SDP each end is sent, and the [`MediaOp`]s for
//!   the relay;
//! - [`relay`]: what happens to one packet ([`RelayStream::on_packet`]): who may send (symmetric
//!   latching or strict), where it goes, what is counted; no allocation, no I/O;
//! - [`sdes`]: SDES offer/answer (RFC 4568) for the end whose trunk uses SRTP;
//! - [`srtp`]: the suites, keys and the SRTP/SRTCP packet transform (the `webrtc-srtp` crate's
//!   ciphers);
//! - [`stats`]: RFC 3550 receiver statistics (loss from sequence numbers, interarrival jitter)
//!   and the counters shared with the signalling side.
//!
//! The packet path never touches the engine: the engine sends [`MediaOp`]s, relay workers (in
//! the transport shell) own the sockets and run [`RelayStream`]s, and report [`MediaEvent`]s.

// The workspace lints forbid panicking slicing and arithmetic in code that handles input; tests
// index into data they built themselves.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )
)]

pub mod ports;
pub mod relay;
pub mod sdes;
pub mod session;
pub mod srtp;
pub mod stats;

pub use ports::PortPool;
pub use relay::{Component, DropReason, Latching, Offload, RelayStream, Relayed, Socket, Verdict};
pub use sdes::{EndCrypto, SdesRefusal, SrtpMode, SrtpPolicy};
pub use session::{
    call_of, stream_id, CallMedia, MediaSide, Refusal, Role, StreamReport, Timeouts,
};
pub use srtp::Suite;
pub use stats::{Counters, EndSnapshot, RtpRaw, RtpStats};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Identifies a stream (one m= line of one call) to the relay.
pub type StreamId = u64;

/// The two ends of a stream: `A` faces the caller, `B` the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    A,
    B,
}

impl End {
    pub fn other(self) -> End {
        match self {
            End::A => End::B,
            End::B => End::A,
        }
    }

    pub fn index(self) -> usize {
        match self {
            End::A => 0,
            End::B => 1,
        }
    }

    /// This end's value of a pair indexed `[A, B]`.
    pub fn of<T>(self, pair: &[T; 2]) -> &T {
        let [a, b] = pair;
        match self {
            End::A => a,
            End::B => b,
        }
    }

    pub fn of_mut<T>(self, pair: &mut [T; 2]) -> &mut T {
        let [a, b] = pair;
        match self {
            End::A => a,
            End::B => b,
        }
    }
}

/// Where Sluice receives one end of a stream: RTP on `port`, RTCP on `port + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub bind: IpAddr,
    pub port: u16,
}

impl Local {
    pub fn rtp(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    pub fn rtcp(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port.saturating_add(1))
    }
}

/// Where an end of a stream receives, as its SDP says, and who may send on its behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
    /// The end put the stream on hold, or declined it: nothing is sent to it.
    pub hold: bool,
}

/// What the engine asks of the relay.
#[derive(Debug, Clone)]
pub enum MediaOp {
    /// Bind the sockets of a new stream (both ends) and relay between them.
    Open {
        stream: StreamId,
        a: Local,
        b: Local,
        /// The SIP peers' addresses: packets from these IPs may latch before any SDP names
        /// them (early media from a peer behind NAT).
        peers: [IpAddr; 2],
        counters: Arc<Counters>,
    },
    /// Where each end receives now, and how long silence may last.
    Update {
        stream: StreamId,
        remotes: [Option<Remote>; 2],
        latching: Latching,
        /// Silence from both ends for this long ends the call; `None` before it is answered.
        timeout: Option<Duration>,
        /// The RTP clock rate of the stream's first format, for jitter.
        clock_rate: u32,
        /// How each end's packets are carried (`[A, B]`): RTP, or SRTP with its keys.
        crypto: Box<[EndCrypto; 2]>,
    },
    Close {
        stream: StreamId,
    },
}

/// What the relay tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No packet from either end for the stream's timeout.
    Timeout { stream: StreamId },
    /// The stream's ports could not be bound.
    OpenFailed { stream: StreamId, reason: String },
}
