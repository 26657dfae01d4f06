//! Sluice's SIP message layer, sans-IO: bytes in, [`Message`] out, and back.
//!
//! - [`parse_message`] reads one datagram or stream frame: start line, unfolding of continuation
//!   lines, compact and case-insensitive header names, Content-Length.
//! - [`StreamFramer`] cuts a TCP byte stream into messages by Content-Length.
//! - [`validate`] checks the mandatory headers and their syntax.
//! - [`Message::write_to`] serialises, always with a correct Content-Length.
//! - [`e164`]: telephone numbers and the formats providers write them in.

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

pub mod declared;
pub mod e164;
pub mod edit;
pub mod fields;
pub mod framing;
pub mod header;
pub mod interest;
pub mod message;
pub mod method;
pub mod parse;
pub mod validate;

pub use fields::{NameAddr, Uri, Via};
pub use framing::{Frame, FrameError, StreamFramer};
pub use header::HeaderName;
pub use interest::{Asked, Interest, Interests, MethodSet};
pub use message::{reason_phrase, Header, Headers, Message, StartLine};
pub use method::Method;
pub use parse::{parse_message, ParseError};
pub use validate::{validate, Rejection};

/// The magic cookie that marks an RFC 3261 branch.
pub const BRANCH_COOKIE: &str = "z9hG4bK";
