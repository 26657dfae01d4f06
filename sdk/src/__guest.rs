//! The WebAssembly side: bindings generated from `wit/plugin.wit` and the adapter from the
//! generated `Guest` trait to [`Plugin`]. Used through [`crate::export_plugin!`].

use crate::{Plugin, Verdict};
use std::any::Any;
use std::cell::RefCell;

pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sluice:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        runtime_path: "::sluice_sdk::__wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::export;

use bindings::exports::sluice::plugin::call_hooks::Guest;
use bindings::sluice::plugin::message::SipMessage;
use bindings::sluice::plugin::types as wit;

/// Implemented by [`crate::export_plugin!`] for the plugin type.
pub trait Describe {
    type Plugin: Plugin;
    const NAME: &'static str;
    const VERSION: &'static str;
}

thread_local! {
    /// The plugin instance; a component instance is single-threaded and Sluice calls `init`
    /// first.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = RefCell::new(None);
    /// What the plugin's interest lets reach `on-message`, learnt at its first call.
    static REACHES: std::cell::Cell<Option<Reaches>> = const { std::cell::Cell::new(None) };
    /// The context of the last hook call: Sluice sends its strings only when they change.
    static CONTEXT: RefCell<crate::CallContext> = RefCell::new(crate::CallContext {
        call: 0,
        direction: crate::Direction::Outbound,
        leg: crate::Leg::External,
        trunk: String::new(),
        brand: String::new(),
        tenant: None,
        source: String::new(),
        transport: crate::Transport::Udp,
    });
}

/// Which messages the interest lets through to `on-message`: Sluice (and the test harness)
/// call it for nothing else, so when it is only requests or only responses the hook need not
/// ask the host which one it holds.
#[derive(Clone, Copy)]
enum Reaches {
    Requests,
    Responses,
    Both,
}

fn reaches(i: &crate::Interest) -> Reaches {
    match (i.requests.is_empty(), i.responses.is_empty()) {
        (false, true) => Reaches::Requests,
        (true, false) => Reaches::Responses,
        _ => Reaches::Both,
    }
}

fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> R) -> R {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|b| !b.is::<P>()) {
            match P::new() {
                Ok(p) => *slot = Some(Box::new(p)),
                // init refused the settings; Sluice never calls a hook then.
                Err(e) => panic!("plugin not initialised: {e}"),
            }
        }
        match slot.as_mut().and_then(|b| b.downcast_mut::<P>()) {
            Some(p) => f(p),
            None => unreachable!("set above"),
        }
    })
}

fn direction(d: wit::Direction) -> crate::Direction {
    match d {
        wit::Direction::Inbound => crate::Direction::Inbound,
        wit::Direction::Outbound => crate::Direction::Outbound,
    }
}

fn leg(l: wit::Leg) -> crate::Leg {
    match l {
        wit::Leg::Internal => crate::Leg::Internal,
        wit::Leg::External => crate::Leg::External,
    }
}

fn number_format(f: crate::e164::Format) -> wit::NumberFormat {
    match f {
        crate::e164::Format::AsIs => wit::NumberFormat::AsIs,
        crate::e164::Format::Plus => wit::NumberFormat::E164,
        crate::e164::Format::Digits => wit::NumberFormat::Digits,
        crate::e164::Format::Nanp => wit::NumberFormat::Nanp,
    }
}

fn transport(t: wit::Transport) -> crate::Transport {
    match t {
        wit::Transport::Udp => crate::Transport::Udp,
        wit::Transport::Tcp => crate::Transport::Tcp,
        wit::Transport::Tls => crate::Transport::Tls,
    }
}

/// Keep the names a hook call brings (Sluice sends them only when they change).
fn keep_names(ctx: &mut crate::CallContext, names: Option<wit::CallNames>) {
    if let Some(n) = names {
        ctx.trunk = n.trunk;
        ctx.brand = n.brand;
        ctx.tenant = n.tenant;
    }
}

/// Run `f` with the call context of this hook call: the last one, updated with what the call
/// brings.
fn with_context<R>(c: wit::CallInfo, f: impl FnOnce(&crate::CallContext) -> R) -> R {
    CONTEXT.with(|cell| {
        {
            let mut ctx = cell.borrow_mut();
            ctx.call = c.call;
            ctx.direction = direction(c.direction);
            ctx.leg = leg(c.leg);
            ctx.transport = transport(c.transport);
            keep_names(&mut ctx, c.names);
            if let Some(s) = c.source {
                ctx.source = s;
            }
        }
        f(&cell.borrow())
    })
}

impl<D: Describe + 'static> Guest for D {
    fn info() -> wit::PluginInfo {
        wit::PluginInfo {
            name: D::NAME.to_string(),
            version: D::VERSION.to_string(),
        }
    }

    fn init() -> Result<(), String> {
        let p = <D::Plugin as Plugin>::new()?;
        INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(p)));
        Ok(())
    }

    fn get_interest() -> wit::Interest {
        let (i, numbers, edits) =
            with_plugin::<D::Plugin, _>(|p| (p.interest(), p.number_policy(), p.header_edits()));
        if let Some(e) = &edits {
            let line = |n: &String, v: &String| wit::HeaderLine {
                name: n.clone(),
                value: v.clone(),
            };
            let e: Vec<wit::HeaderEdit> = e
                .iter()
                .map(|e| match e {
                    crate::HeaderEdit::Add(n, v) => wit::HeaderEdit::Add(line(n, v)),
                    crate::HeaderEdit::Set(n, v) => wit::HeaderEdit::Set(line(n, v)),
                    crate::HeaderEdit::Remove(n) => wit::HeaderEdit::Remove(n.clone()),
                })
                .collect();
            bindings::sluice::plugin::host::declare_edits(&e);
        }
        if let Some(n) = &numbers {
            bindings::sluice::plugin::host::declare_numbers(&wit::NumberPolicy {
                outbound: number_format(n.outbound),
                inbound: number_format(n.inbound),
                default_country: n.default_country.clone(),
            });
        }
        wit::Interest {
            requests: i.requests,
            responses: i.responses,
            numbers: i.numbers || numbers.is_some(),
            attestation: i.attestation,
        }
    }

    fn on_message(ctx: wit::CallInfo, msg: &SipMessage) -> wit::Decision {
        let mut m = crate::Message::from_inner(msg);
        let verdict = with_context(ctx, |ctx| {
            with_plugin::<D::Plugin, _>(|p| {
                let kind = REACHES.get().unwrap_or_else(|| {
                    let k = reaches(&p.interest());
                    REACHES.set(Some(k));
                    k
                });
                let is_request = match kind {
                    Reaches::Requests => true,
                    Reaches::Responses => false,
                    Reaches::Both => m.is_request(),
                };
                if is_request {
                    p.on_request(ctx, &mut m)
                } else {
                    p.on_response(ctx, &mut m);
                    Verdict::Continue
                }
            })
        });
        match verdict {
            Verdict::Continue => wit::Decision::Continue,
            Verdict::Reject { status, reason } => {
                if !reason.is_empty() {
                    bindings::sluice::plugin::host::reject_reason(&reason);
                }
                wit::Decision::Reject(status)
            }
        }
    }

    fn normalize_number(ctx: wit::NumberInfo, number: String) -> Option<String> {
        let (trunk, brand, tenant) = CONTEXT.with(|cell| {
            let mut c = cell.borrow_mut();
            keep_names(&mut c, ctx.names);
            (c.trunk.clone(), c.brand.clone(), c.tenant.clone())
        });
        let ctx = crate::NumberContext {
            direction: direction(ctx.direction),
            leg: leg(ctx.leg),
            trunk,
            brand,
            tenant,
            kind: match ctx.kind {
                wit::NumberKind::Called => crate::NumberKind::Called,
                wit::NumberKind::Calling => crate::NumberKind::Calling,
            },
        };
        with_plugin::<D::Plugin, _>(|p| p.normalize_number(&ctx, &number))
    }

    fn choose_attestation(ctx: wit::CallInfo, msg: &SipMessage) -> Option<wit::Attestation> {
        let m = crate::Message::from_inner(msg);
        with_context(ctx, |ctx| {
            with_plugin::<D::Plugin, _>(|p| p.attestation(ctx, &m))
        })
        .map(|a| match a {
            crate::Attestation::A => wit::Attestation::A,
            crate::Attestation::B => wit::Attestation::B,
            crate::Attestation::C => wit::Attestation::C,
            crate::Attestation::None => wit::Attestation::None,
        })
    }
}
