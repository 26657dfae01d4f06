//! Sluice's B2BUA engine, sans-IO.
//!
//! Every call is two dialogs: the caller's leg (Sluice as UAS) and the callee's leg (Sluice as
//! UAC), each with its own Call-ID, tags, CSeq space, Via branch and Contact. Nothing of one
//! side's topology (addresses, Via, Record-Route, Contact, Call-ID) is written on the other.
//!
//! Where things are:
//! - [`engine`]: the input/output API ([`Engine::handle_datagram`], [`Engine::handle_timeout`],
//!   [`Engine::poll_output`], [`Engine::poll_timeout`]), the dispatch of transaction events to
//!   calls, and new calls; [`core`]: what every call's handlers share;
//! - [`answer`]: a call's set-up after its INVITE left (the callee's answers, CANCEL);
//!   [`in_dialog`]: requests inside the dialogs, relayed both ways, and Sluice's own BYEs;
//! - [`call`]: the vocabulary (call key, direction, the two legs); [`calls`]: each call's typed
//!   state and the table that finds calls; [`dialog`]: one dialog and the requests in it;
//!   [`ids`]: tags, branches, Call-IDs;
//! - [`route`]: where a new call goes; [`refuse`]: whether it is admitted; [`setup`]: both
//!   dialogs and the INVITE of a new call; [`relay`]: a message of one leg rebuilt for the
//!   other; [`retransmit`]: 2xx and ACK between the legs; [`headers`]: what crosses;
//! - [`media`]: each SDP rewritten for the leg it leaves on, the relay told what to do, and
//!   silence ending calls;
//! - [`trunks`]: each trunk's live state (registration, keep-alive, registrar, call count);
//!   [`agents`]: the trunks' own REGISTER and OPTIONS, and gateways registering to Sluice;
//!   [`failover`]: challenges answered and failed INVITEs moved to the next destination;
//! - [`guard`]: who may use Sluice: strangers' calls refused, floods banned, no fingerprint;
//! - [`duration`]: hung-call protection (a trunk's maximum call duration);
//! - [`hooks`]: where plugins touch a message; [`metrics`], [`stats`]: what is counted.

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

pub mod agents;
pub mod answer;
pub mod call;
pub mod calls;
pub mod config;
pub mod core;
pub mod dialog;
pub mod duration;
pub mod engine;
pub mod failover;
pub mod guard;
pub mod handover;
pub mod headers;
pub mod hooks;
pub mod identity;
pub mod ids;
pub mod in_dialog;
pub mod malformed;
pub mod media;
pub mod metrics;
pub mod new_call;
pub mod next_trunk;
mod own_requests;
pub mod prack;
pub mod refuse;
pub mod relay;
pub mod retransmit;
pub mod route;
pub mod session_timer;
pub mod setup;
pub mod stats;
pub mod tenants;
pub mod transfer;
pub mod trunks;
pub mod unsolicited;
pub mod verify;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use call::{CallKey, Direction, LegId};
pub use calls::CallInfo;
pub use config::{
    Destination, EngineConfig, ListenerAddr, MediaConfig, MediaSideConfig, PeerConfig, PeerMedia,
    Side, TrunkConfig, TrunkKind,
};
pub use core::Output;
pub use engine::Engine;
pub use guard::GuardConfig;
pub use handover::{HandedBinding, Handover};
pub use headers::{ALLOW, SUPPORTED};
pub use hooks::{
    run_new_call, with_keys_hidden, Attestation, Generation, HookContext, HookVerdict, Hooks,
    NewCallOutcome, NoHooks, NumberKind, NumberVerdict, PluginStatus,
};
pub use sluice_guard::{Ban, Limits as GuardLimits, Reason as BanReason};
pub use stats::EngineStats;
pub use trunks::{GatewayStatus, RegistrationStatus, TrunkStatus};
