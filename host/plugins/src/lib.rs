//! Sluice's WebAssembly plugin host.
//!
//! - [`runtime`]: the wasmtime engine (component model, pooling allocator, epoch deadlines,
//!   compiled-code cache) and the linker with the host's imports.
//! - [`state`]: a plugin store's data and the host side of `wit/plugin.wit`: the message a hook
//!   is lent, logging, counters, settings, clock.
//! - `exports`: a plugin's exports in either form (`call-hooks`, or the `hooks` of plugins
//!   built before it) and the context strings each instance was sent last.
//! - [`loaded`]: loading a plugin version; calling its hooks under limits.
//! - `self_check`: the sample call a plugin version passes before it is installed.
//! - [`prepare`]: from the configuration to a generation of plugins and per-trunk chains.
//! - [`host`]: [`PluginHost`], the engine's [`sluice_b2bua::Hooks`]: chains, failure policy,
//!   generations that calls pin across reloads.
//! - [`dry_run`]: one message through one plugin, as `sluice plugin test` shows it.

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

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sluice:plugin/plugin",
        with: {
            "sluice:plugin/message.sip-message": crate::state::MessageMarker,
        },
    });
}

/// Plugins built before `call-hooks`: the same imports (the types and host traits above), the
/// old export.
pub(crate) mod whole_context {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sluice:plugin/plugin-whole-context",
        with: {
            "sluice:plugin/types": crate::bindings::sluice::plugin::types,
            "sluice:plugin/message": crate::bindings::sluice::plugin::message,
            "sluice:plugin/host": crate::bindings::sluice::plugin::host,
        },
    });
}

pub mod dry_run;
mod exports;
pub mod host;
pub mod loaded;
pub mod log_budget;
pub mod prepare;
pub mod runtime;
mod self_check;
pub mod state;
pub mod wasi;

pub use host::{Chain, GenerationSpec, PluginHost};
pub use loaded::{load, Failure, LoadedPlugin, PluginSpec};
pub use prepare::{plugin_dir, prepare, ModuleSource};
pub use runtime::{Limits, Runtime};
