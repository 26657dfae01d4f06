//! # Sluice plugin SDK
//!
//! A Sluice plugin is a WebAssembly component that Sluice calls for every SIP message crossing
//! its B2BUA on the trunks it is configured for. With this crate a plugin is a Rust type that
//! implements [`Plugin`] and one macro call:
//!
//! ```ignore
//! use sluice_sdk::{export_plugin, CallContext, Message, Plugin, Verdict};
//!
//! #[derive(Default)]
//! struct AddHeader;
//!
//! impl Plugin for AddHeader {
//!     fn new() -> Result<Self, String> {
//!         Ok(AddHeader)
//!     }
//!     fn on_request(&mut self, _ctx: &CallContext, msg: &mut Message) -> Verdict {
//!         let _ = msg.set_header("X-Hello", "world");
//!         Verdict::Continue
//!     }
//! }
//!
//! export_plugin!(AddHeader);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; test it natively with
//! `cargo test` through [`testing::Harness`] (not on wasm), which applies edits with the same
//! rules as Sluice; try the built component on a captured message with
//! `sluice plugin test my_plugin.wasm --message invite.sip`.
//!
//! The contract itself is `wit/plugin.wit` (package `sluice:plugin@0.2.0`).

extern crate self as sluice_sdk;

pub mod e164;
pub mod uri;

mod host;
mod message;
mod types;

pub use host::{counter, log, now_ms, setting, setting_list, Level};
pub use message::{EditError, Message};
/// Header edits of fixed text that Sluice makes itself ([`Plugin::header_edits`]), and their
/// check.
pub use sluice_sip::declared;
pub use sluice_sip::declared::HeaderEdit;
pub use sluice_sip::Interest;
pub use types::{
    Attestation, CallContext, Direction, Leg, NumberContext, NumberKind, Transport, Verdict,
};

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __guest;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// What a plugin implements. Every hook has a default that changes nothing, so a plugin
/// implements only what it needs.
///
/// Sluice makes one instance of the plugin per configured use and calls it for many messages
/// and calls in turn (never at once), so `&mut self` state lives across calls; keep it small
/// and never let it depend on one call finishing (calls end without telling plugins).
pub trait Plugin: Sized + 'static {
    /// Build the plugin, reading its settings with [`setting`] and [`setting_list`]. An error
    /// refuses the plugin at load, with the message in Sluice's log and reload answer.
    fn new() -> Result<Self, String>;

    /// A request about to leave Sluice (INVITE, re-INVITE, BYE, ACK, UPDATE, INFO, OPTIONS in a
    /// dialog). `Verdict::Reject` answers it instead of sending it on (not for ACK and BYE).
    fn on_request(&mut self, ctx: &CallContext, msg: &mut Message) -> Verdict {
        let _ = (ctx, msg);
        Verdict::Continue
    }

    /// A response about to leave Sluice. Responses cannot be refused; edit them or let them be.
    fn on_response(&mut self, ctx: &CallContext, msg: &mut Message) {
        let _ = (ctx, msg);
    }

    /// Numbers in standard formats: return the policy (usually read from the settings with
    /// [`e164::NumberPolicy::from_settings`]) and Sluice writes the called and calling numbers
    /// itself, with the same code as [`e164::NumberPolicy::normalize`], without calling
    /// [`Plugin::normalize_number`]: a brand that only chooses formats then costs nothing per
    /// number. Asked once, with [`Plugin::interest`]. `None` (the default): Sluice calls
    /// `normalize_number` when the interest asks for numbers.
    fn number_policy(&self) -> Option<e164::NumberPolicy> {
        None
    }

    /// Header edits of fixed text: return them, and Sluice makes them itself, in this order,
    /// on every message the [`Plugin::interest`] names, at the plugin's place in the chain,
    /// without calling [`Plugin::on_request`] or [`Plugin::on_response`]: a rule set whose
    /// edits never depend on the message then costs no entry into the plugin per message.
    /// Asked once, with the interest. Sluice refuses the plugin at load when one of them could
    /// fail on a message (a managed header, From or To, `add` of a header that appears once);
    /// [`declared::DeclaredEdits::new`] runs the same check. `None` (the default): Sluice calls
    /// the hooks.
    fn header_edits(&self) -> Option<Vec<HeaderEdit>> {
        None
    }

    /// Normalise the called or calling number of a new call; `None` leaves it unchanged.
    /// Not called for a plugin that declares a [`Plugin::number_policy`].
    fn normalize_number(&mut self, ctx: &NumberContext, number: &str) -> Option<String> {
        let _ = (ctx, number);
        None
    }

    /// Which hooks Sluice calls, asked once after [`Plugin::new`]. Sluice skips every call the
    /// plugin has no interest in, so declare what the plugin implements: a brand that only
    /// normalises numbers costs nothing on the other messages of a call. The default is every
    /// hook on every message, which is always correct and never cheap.
    ///
    /// ```ignore
    /// fn interest(&self) -> Interest {
    ///     Interest::none().numbers().requests(&["INVITE"])
    /// }
    /// ```
    fn interest(&self) -> Interest {
        Interest::all()
    }

    /// The STIR/SHAKEN attestation of an outbound call; `None` has no opinion.
    fn attestation(&mut self, ctx: &CallContext, msg: &Message) -> Option<Attestation> {
        let _ = (ctx, msg);
        None
    }
}

/// Export a [`Plugin`] as the component's `sluice:plugin/call-hooks` implementation. The
/// plugin's name and version are its package's unless given:
/// `export_plugin!(MyPlugin, version = "2.1.0")`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!($plugin, version = env!("CARGO_PKG_VERSION"));
    };
    ($plugin:ty, version = $version:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SluicePluginExport;
            impl $crate::__guest::Describe for SluicePluginExport {
                type Plugin = $plugin;
                const NAME: &'static str = env!("CARGO_PKG_NAME");
                const VERSION: &'static str = $version;
            }
    $crate::__guest::export!(SluicePluginExport with_types_in $crate::__guest::bindings);
        };
    };
}
