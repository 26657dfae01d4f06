//! SDP as an SBC that anchors media needs it (RFC 8866, RFC 3264 offer/answer, RFC 3605
//! `a=rtcp`, RFC 5761 `rtcp-mux`), sans-IO and without state:
//!
//! - [`parse`] reads a body into an [`Sdp`]: every line kept as it is, with a model of what
//!   Sluice rewrites (origin, connection addresses, media sections with their ports, formats,
//!   direction, RTCP port and mux);
//! - [`rewrite`] writes it back for the far side from a [`Plan`]: Sluice's address in `o=` and
//!   `c=`, Sluice's ports in `m=` and `a=rtcp`, no ICE attributes, the formats a trunk allows,
//!   a new origin version, the `a=crypto` lines of Sluice's own SRTP keys; every other line
//!   byte for byte;
//! - [`crypto`] reads and writes `a=crypto` (RFC 4568 SDES keys).
//!
//! Sluice rewrites in place rather than writing SDP anew from its state (as rtpengine does), so
//! that lines it does not model pass through unchanged.

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

pub mod crypto;
mod model;
mod parse;
mod rewrite;

pub use crypto::{
    format_crypto, is_rtp_proto, is_secure_proto, parse_crypto, with_srtp, CryptoAttr,
};
pub use model::{Connection, Direction, Media, Origin, Sdp};
pub use parse::{parse, SdpError};
pub use rewrite::{rewrite, Plan, SectionPlan};
