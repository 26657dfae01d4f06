//! What Sluice does for a trunk besides carrying its calls, as sans-IO state machines driven
//! by the engine with the time (tested with a fake clock, as the transaction layer is):
//!
//! - [`registration`]: Sluice registered to a provider (REGISTER, digest, refresh before the
//!   granted expiry, backoff with jitter, unregister);
//! - [`keepalive`]: OPTIONS probes that mark a trunk up or down;
//! - [`registrar`]: a gateway or provider registering to Sluice (challenge, bindings with
//!   expiry);
//! - [`auth`]: answering a provider's challenge to any request, once per request;
//! - [`backoff`]: retry delays with jitter;
//! - [`locate`]: RFC 3263, the addresses and transports a host name stands for (NAPTR, SRV,
//!   A/AAAA answered by the caller).
//!
//! The engine owns one agent per trunk and wraps their requests in client transactions; none of
//! these types sends or reads anything itself.

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

pub mod auth;
pub mod backoff;
pub mod keepalive;
pub mod locate;
pub mod registrar;
pub mod registration;

pub use auth::Authenticator;
pub use backoff::Backoff;
pub use keepalive::{KeepAlive, Liveness};
pub use registrar::{Binding, Registrar, RegistrarReply};
pub use registration::{RegState, Registration, RegistrationConfig};
