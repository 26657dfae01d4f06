//! The thin I/O shell around the sans-IO engine: UDP sockets, TCP listeners and connections,
//! timers, and the commands of the rest of the process. One task owns the engine, so the
//! engine needs no locks; it reads the UDP sockets itself (no hand-over between threads for a
//! datagram), and stream connections run as tasks that pass it what they read.
//!
//! - [`shell`]: [`Shell::run`], the loop that feeds the engine and writes what it sends;
//! - `udp`: binding (with large buffers) and batched reading of datagrams;
//! - `stream`: TCP connections (accepted and opened), framing, keep-alive pongs;
//! - `connections`: which connection carries what, and connection reuse;
//! - `drain`: the drain's deadline and hang-up;
//! - [`handover`]: an upgrade: the sockets passed to a new process, the old one's datagrams
//!   passed back;
//! - [`rtp`]: the media relay's worker threads (RTP/RTCP sockets, batched reads, no engine),
//!   and in `rtp/kernel.rs` their share of the media kernel fast path;
//! - `current_input`: the datagram being handled, for the report of a panic.

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

mod connections;
mod current_input;
mod drain;
pub mod handover;
pub mod rtp;
pub mod shell;
mod stream;
pub mod tls;
mod udp;

pub use current_input::{describe_current_input, redact};
pub use shell::{
    CertificateSource, Change, Command, EngineChange, Shell, ShellOptions, Status, TcpLimits,
};

/// `now + d` on tokio's clock, saturated instead of panicking (see [`sluice_transaction::after`]).
pub(crate) fn later(now: tokio::time::Instant, d: std::time::Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(sluice_transaction::after(now.into_std(), d))
}
