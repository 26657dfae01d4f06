//! Sluice's B2BUA engine, sans-IO.
//!
//! Every call is two dialogs: leg 0 toward the caller, leg 1 toward the callee, each with its own
//! Call-ID, tags, CSeq space, Via branch and Contact. Nothing of one side's topology (addresses,
//! Via, Record-Route, Contact, Call-ID) is written on the other side.
//!
//! Input: [`Engine::handle_datagram`] (bytes from a socket) and [`Engine::handle_timeout`].
//! Output: [`Engine::poll_output`] (bytes to send) and [`Engine::poll_timeout`].

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

pub mod config;
pub mod engine;
pub mod headers;
pub mod hooks;
pub mod metrics;
pub mod stats;

pub use config::{EngineConfig, ListenerAddr, PeerConfig, Side};
pub use engine::{CallInfo, CallKey, Direction, Engine, Output, ALLOW};
pub use hooks::{
    Attestation, Generation, HookContext, HookVerdict, Hooks, NoHooks, NumberKind, PluginStatus,
};
pub use stats::EngineStats;

#[cfg(test)]
mod tests;
