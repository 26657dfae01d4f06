//! The two forms of a plugin's exports, and calling either with a call's context.
//!
//! - `call-hooks`, what the SDK builds: a hook's context carries its strings (trunk, brand,
//!   tenant, source) only when they differ from those the instance received last, so that the
//!   calls of one trunk from one peer lower no string into the plugin (each string lowered is
//!   an allocation inside the plugin, a call into it of its own).
//! - `hooks`, what plugins built before it export: the context whole at every call.
//!
//! Loading picks the form the component has; the rest of the host speaks the whole context
//! and never sees the difference.

use crate::bindings::sluice::plugin::types as wit;
use crate::state::PluginState;
use wasmtime::component::{InstancePre, Resource};
use wasmtime::Store;

type Calls = crate::bindings::Plugin;
type CallsPre = crate::bindings::PluginPre<PluginState>;
type Whole = crate::whole_context::PluginWholeContext;
type WholePre = crate::whole_context::PluginWholeContextPre<PluginState>;

/// A plugin component ready to instantiate, in the form of its exports.
#[derive(Clone)]
pub(crate) enum Pre {
    Calls(CallsPre),
    Whole(WholePre),
}

impl Pre {
    /// The component's form; an error says what `call-hooks` lacks.
    pub(crate) fn new(pre: InstancePre<PluginState>) -> Result<Pre, String> {
        match CallsPre::new(pre.clone()) {
            Ok(p) => Ok(Pre::Calls(p)),
            Err(e) => WholePre::new(pre)
                .map(Pre::Whole)
                .map_err(|_| format!("{e:#}")),
        }
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::Calls(p) => p.engine(),
            Pre::Whole(p) => p.engine(),
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Guest> {
        let exports = match self {
            Pre::Calls(p) => Exports::Calls(p.instantiate(store)?),
            Pre::Whole(p) => Exports::Whole(p.instantiate(store)?),
        };
        Ok(Guest {
            exports,
            sent: Sent::default(),
        })
    }
}

enum Exports {
    Calls(Calls),
    Whole(Whole),
}

/// The context strings a `call-hooks` instance received last.
#[derive(Default)]
struct Sent {
    names: Option<wit::CallNames>,
    source: Option<String>,
}

impl Sent {
    /// The names to send: none when the instance has these already.
    fn names(&mut self, trunk: &str, brand: &str, tenant: Option<&str>) -> Option<wit::CallNames> {
        let same = self
            .names
            .as_ref()
            .is_some_and(|n| n.trunk == trunk && n.brand == brand && n.tenant.as_deref() == tenant);
        if same {
            return None;
        }
        let n = wit::CallNames {
            trunk: trunk.to_string(),
            brand: brand.to_string(),
            tenant: tenant.map(str::to_string),
        };
        self.names = Some(n.clone());
        Some(n)
    }

    fn source(&mut self, source: &str) -> Option<String> {
        if self.source.as_deref() == Some(source) {
            return None;
        }
        self.source = Some(source.to_string());
        self.source.clone()
    }

    fn info(&mut self, c: &wit::CallContext) -> wit::CallInfo {
        wit::CallInfo {
            call: c.call,
            direction: c.direction,
            leg: c.leg,
            transport: c.transport,
            names: self.names(&c.trunk, &c.brand, c.tenant.as_deref()),
            source: self.source(&c.source),
        }
    }
}

/// A live instance's exports, in either form.
pub(crate) struct Guest {
    exports: Exports,
    sent: Sent,
}

/// The message a hook reads and edits: the store's, lent for the call.
fn lent() -> Resource<crate::state::MessageMarker> {
    Resource::new_borrow(0)
}

impl Guest {
    /// After a failed call the instance may not have kept what it was sent: send it all again.
    pub(crate) fn forget_sent(&mut self) {
        self.sent = Sent::default();
    }

    pub(crate) fn info(&self, s: &mut Store<PluginState>) -> wasmtime::Result<wit::PluginInfo> {
        match &self.exports {
            Exports::Calls(p) => p.sluice_plugin_call_hooks().call_info(s),
            Exports::Whole(p) => p.sluice_plugin_hooks().call_info(s),
        }
    }

    pub(crate) fn init(&self, s: &mut Store<PluginState>) -> wasmtime::Result<Result<(), String>> {
        match &self.exports {
            Exports::Calls(p) => p.sluice_plugin_call_hooks().call_init(s),
            Exports::Whole(p) => p.sluice_plugin_hooks().call_init(s),
        }
    }

    pub(crate) fn get_interest(
        &self,
        s: &mut Store<PluginState>,
    ) -> wasmtime::Result<wit::Interest> {
        match &self.exports {
            Exports::Calls(p) => p.sluice_plugin_call_hooks().call_get_interest(s),
            Exports::Whole(p) => p.sluice_plugin_hooks().call_get_interest(s),
        }
    }

    pub(crate) fn on_message(
        &mut self,
        s: &mut Store<PluginState>,
        ctx: &wit::CallContext,
    ) -> wasmtime::Result<wit::Verdict> {
        match &self.exports {
            Exports::Calls(p) => {
                let info = self.sent.info(ctx);
                s.data_mut().reject_reason = None;
                let d = p
                    .sluice_plugin_call_hooks()
                    .call_on_message(&mut *s, &info, lent())?;
                Ok(match d {
                    wit::Decision::Continue => wit::Verdict::Continue,
                    wit::Decision::Reject(status) => wit::Verdict::Reject(wit::Rejection {
                        status,
                        reason: s.data_mut().reject_reason.take().unwrap_or_default(),
                    }),
                })
            }
            Exports::Whole(p) => p.sluice_plugin_hooks().call_on_message(s, ctx, lent()),
        }
    }

    pub(crate) fn normalize_number(
        &mut self,
        s: &mut Store<PluginState>,
        ctx: &wit::NumberContext,
        number: &str,
    ) -> wasmtime::Result<Option<String>> {
        match &self.exports {
            Exports::Calls(p) => {
                let info = wit::NumberInfo {
                    direction: ctx.direction,
                    leg: ctx.leg,
                    kind: ctx.kind,
                    names: self
                        .sent
                        .names(&ctx.trunk, &ctx.brand, ctx.tenant.as_deref()),
                };
                p.sluice_plugin_call_hooks()
                    .call_normalize_number(s, &info, number)
            }
            Exports::Whole(p) => p
                .sluice_plugin_hooks()
                .call_normalize_number(s, ctx, number),
        }
    }

    pub(crate) fn choose_attestation(
        &mut self,
        s: &mut Store<PluginState>,
        ctx: &wit::CallContext,
    ) -> wasmtime::Result<Option<wit::Attestation>> {
        match &self.exports {
            Exports::Calls(p) => {
                let info = self.sent.info(ctx);
                p.sluice_plugin_call_hooks()
                    .call_choose_attestation(s, &info, lent())
            }
            Exports::Whole(p) => p
                .sluice_plugin_hooks()
                .call_choose_attestation(s, ctx, lent()),
        }
    }
}
