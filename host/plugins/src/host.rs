//! The plugin chains as the engine runs them: generations of loaded plugins with their
//! per-trunk chains, the warm instance of each plugin, and the failure policy.
//!
//! A reload installs a new generation; calls keep the generation they started with until they
//! end, then an old generation and its instances are dropped.

use crate::bindings::sluice::plugin::types as wit;
use crate::loaded::{Failure, Live, LoadedPlugin};
use rustc_hash::FxHashMap;
use sluice_b2bua::{
    Attestation, Direction, Generation, HookContext, HookVerdict, Hooks, NumberKind, NumberVerdict,
    PluginStatus, Side,
};
use sluice_config::Policy;
use sluice_sip::{edit, Asked, Interest, Interests, Message};
use sluice_transaction::Transport;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// The plugins of one trunk, as indexes into the generation's plugins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The brand plugin's name.
    pub brand: String,
    /// Messages sent to the trunk: outbound rule sets, then the brand.
    pub to_trunk: Vec<usize>,
    /// Messages sent to the PBX: the brand, then inbound rule sets.
    pub to_pbx: Vec<usize>,
}

/// A generation ready to install: loaded plugins and the chains of every trunk.
pub struct GenerationSpec {
    pub plugins: Vec<Arc<LoadedPlugin>>,
    pub chains: HashMap<String, Chain>,
    /// Identifies the inputs (configuration and modules): a reload with the same fingerprint
    /// changes nothing.
    pub fingerprint: String,
}

/// A loaded plugin in a generation, with its warm instance.
struct Slot {
    plugin: Arc<LoadedPlugin>,
    /// The plugin's interest in messages as method sets: exact for the methods Sluice names,
    /// so that its lists of names are read only for other methods.
    wants: Interests,
    live: Option<Live>,
    /// Failure log lines are limited to one a second per plugin.
    last_log: Option<Instant>,
    unlogged: u64,
    last_failure: Option<String>,
}

/// A trunk's chain in an installed generation, with what its plugins take on each side folded
/// into one set: most messages of a call are passed over with a bit test.
struct Installed {
    chain: Chain,
    to_trunk: Interests,
    to_pbx: Interests,
}

impl Installed {
    fn new(chain: Chain, slots: &[Slot]) -> Installed {
        let fold = |order: &[usize]| {
            let mut folded = Interests::default();
            for s in order.iter().filter_map(|&i| slots.get(i)) {
                folded.add(&s.plugin.interest);
            }
            folded
        };
        Installed {
            to_trunk: fold(&chain.to_trunk),
            to_pbx: fold(&chain.to_pbx),
            chain,
        }
    }
}

struct Gen {
    id: Generation,
    slots: Vec<Slot>,
    /// Looked up for every message of a call that has plugins: keys are configured trunk
    /// names, hashed with a fast hash.
    chains: FxHashMap<String, Installed>,
    pins: usize,
    fingerprint: String,
}

/// Implements the engine's [`Hooks`] with WebAssembly plugins.
pub struct PluginHost {
    gens: Vec<Gen>,
    current: Generation,
    next_id: Generation,
    /// Scratch contexts, reused so that a call allocates nothing once warm.
    ctx: wit::CallContext,
    /// The address `ctx.source` was written from: a B2BUA hears from few peers (the PBX, the
    /// trunks' servers), so the text is rarely written again.
    ctx_source: Option<std::net::SocketAddr>,
    nctx: wit::NumberContext,
    /// Plugin versions published as loaded (`sluice_plugin_loaded`).
    published: HashSet<(String, String)>,
}

impl Default for PluginHost {
    fn default() -> Self {
        PluginHost::new()
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::FailOpen => "fail-open",
        Policy::FailClosed => "fail-closed",
    }
}

fn wit_direction(d: Direction) -> wit::Direction {
    match d {
        Direction::Inbound => wit::Direction::Inbound,
        Direction::Outbound => wit::Direction::Outbound,
    }
}

fn wit_leg(s: Side) -> wit::Leg {
    match s {
        Side::Internal => wit::Leg::Internal,
        Side::External => wit::Leg::External,
    }
}

/// The status a fail-closed plugin's failure refuses a request with: 500 for an edit Sluice
/// refused, 503 for the plugin's own failure.
fn failure_status(f: &Failure) -> u16 {
    if matches!(f, Failure::Invalid(_)) {
        500
    } else {
        503
    }
}

fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

/// `set` for an optional string: the buffer is kept while there is one to write into.
fn set_opt(s: &mut Option<String>, v: Option<&str>) {
    match (s.as_mut(), v) {
        (Some(s), Some(v)) => set(s, v),
        (None, Some(v)) => *s = Some(v.to_string()),
        (_, None) => *s = None,
    }
}

impl PluginHost {
    /// No plugins until a generation is installed.
    pub fn new() -> PluginHost {
        PluginHost {
            gens: vec![Gen {
                id: 0,
                slots: Vec::new(),
                chains: FxHashMap::default(),
                pins: 0,
                fingerprint: String::new(),
            }],
            current: 0,
            next_id: 1,
            ctx: wit::CallContext {
                call: 0,
                direction: wit::Direction::Outbound,
                leg: wit::Leg::External,
                trunk: String::new(),
                brand: String::new(),
                tenant: None,
                source: String::new(),
                transport: wit::Transport::Udp,
            },
            ctx_source: None,
            nctx: wit::NumberContext {
                direction: wit::Direction::Outbound,
                leg: wit::Leg::External,
                trunk: String::new(),
                brand: String::new(),
                tenant: None,
                kind: wit::NumberKind::Called,
            },
            published: HashSet::new(),
        }
    }

    /// Set `sluice_plugin_loaded` to 1 for every loaded plugin version and to 0 for those
    /// that were unloaded.
    fn publish_loaded(&mut self) {
        let now: HashSet<(String, String)> = self
            .gens
            .iter()
            .flat_map(|g| g.slots.iter())
            .map(|s| (s.plugin.name().to_string(), s.plugin.version().to_string()))
            .collect();
        for (name, version) in self.published.difference(&now) {
            metrics::gauge!("sluice_plugin_loaded", "plugin" => name.clone(), "version" => version.clone())
                .set(0.0);
        }
        for (name, version) in now.difference(&self.published) {
            metrics::gauge!("sluice_plugin_loaded", "plugin" => name.clone(), "version" => version.clone())
                .set(1.0);
        }
        self.published = now;
    }

    /// Make `spec` the generation of new calls, with the instances its self-checks left warm.
    /// Returns `None` when it is the same as the current one (nothing changed).
    pub fn install(&mut self, spec: GenerationSpec) -> Option<Generation> {
        if self
            .gen(self.current)
            .is_some_and(|g| g.fingerprint == spec.fingerprint)
        {
            return None;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let slots = spec
            .plugins
            .into_iter()
            .map(|plugin| {
                let live = match plugin.take_warm_or_instantiate() {
                    Ok(l) => Some(l),
                    Err(f) => {
                        plugin.metrics.failed(&f);
                        warn!(plugin = %plugin.name(), version = %plugin.version(), "{f}");
                        None
                    }
                };
                let mut wants = Interests::default();
                wants.add(&plugin.interest);
                Slot {
                    plugin,
                    wants,
                    live,
                    last_log: None,
                    unlogged: 0,
                    last_failure: None,
                }
            })
            .collect::<Vec<_>>();
        let chains = spec
            .chains
            .into_iter()
            .map(|(trunk, chain)| {
                let installed = Installed::new(chain, &slots);
                (trunk, installed)
            })
            .collect();
        self.gens.push(Gen {
            id,
            slots,
            chains,
            pins: 0,
            fingerprint: spec.fingerprint,
        });
        let old = self.current;
        self.current = id;
        self.collect(old);
        self.publish_loaded();
        Some(id)
    }

    /// The generation new calls use.
    pub fn current_generation(&self) -> Generation {
        self.current
    }

    /// Generations still loaded (the current one and those calls still use).
    pub fn loaded_generations(&self) -> Vec<Generation> {
        self.gens.iter().map(|g| g.id).collect()
    }

    fn gen(&self, id: Generation) -> Option<&Gen> {
        self.gens.iter().find(|g| g.id == id)
    }

    /// Drop a generation no call uses any more (never the current one).
    fn collect(&mut self, id: Generation) {
        if id == self.current {
            return;
        }
        self.gens.retain(|g| g.id != id || g.pins > 0);
    }
}

/// The call context a hook is called with, written into the reused scratch value (`source`:
/// the address its `source` text was last written from).
fn fill_ctx(
    (c, source): (&mut wit::CallContext, &mut Option<std::net::SocketAddr>),
    ctx: &HookContext<'_>,
    brand: &str,
) {
    c.call = ctx.call;
    c.direction = wit_direction(ctx.direction);
    c.leg = wit_leg(ctx.leg);
    set(&mut c.trunk, ctx.trunk);
    set(&mut c.brand, brand);
    set_opt(&mut c.tenant, ctx.tenant);
    if *source != Some(ctx.source) {
        c.source.clear();
        let _ = write!(c.source, "{}", ctx.source);
        *source = Some(ctx.source);
    }
    c.transport = match ctx.transport {
        Transport::Udp => wit::Transport::Udp,
        Transport::Tcp => wit::Transport::Tcp,
        Transport::Tls => wit::Transport::Tls,
    };
}

impl Installed {
    /// The chain toward `leg`'s side: its plugins (indexes into the generation's slots), what
    /// they take folded, and the brand's name.
    fn side(&self, leg: Side) -> (&[usize], &Interests, &str) {
        match leg {
            Side::External => (&self.chain.to_trunk, &self.to_trunk, &self.chain.brand),
            Side::Internal => (&self.chain.to_pbx, &self.to_pbx, &self.chain.brand),
        }
    }
}

/// What a fail-closed plugin's failure answers a request with.
fn plugin_failure(status: u16) -> HookVerdict {
    HookVerdict::Reject {
        status,
        reason: "Plugin Failure".into(),
    }
}

/// A plugin's rejection, with its reason phrase, or the status's standard one when the
/// plugin's is empty, too long or has control characters.
fn rejection(r: wit::Rejection) -> HookVerdict {
    let reason = if r.reason.is_empty()
        || r.reason.len() > 128
        || r.reason.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        sluice_sip::reason_phrase(r.status).to_string()
    } else {
        r.reason
    };
    HookVerdict::Reject {
        status: r.status,
        reason,
    }
}

/// Whether a plugin of `order` has an interest `wants` accepts: when none has, nothing is
/// prepared and no plugin is called.
fn any_wants(slots: &[Slot], order: &[usize], wants: impl Fn(&Interest) -> bool) -> bool {
    order
        .iter()
        .filter_map(|&i| slots.get(i))
        .any(|s| wants(&s.plugin.interest))
}

/// Report a failure (counted always, logged at most once a second per plugin) and drop the
/// instance when it trapped.
fn failed(slot: &mut Slot, call: u64, hook: &str, f: &Failure) {
    slot.plugin.metrics.failed(f);
    slot.last_failure = Some(format!("{hook}: {f}"));
    if !matches!(f, Failure::Invalid(_)) {
        // A trapped instance cannot be entered again; the next call makes a new one.
        slot.live = None;
    }
    let now = Instant::now();
    if slot
        .last_log
        .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
    {
        slot.unlogged = slot.unlogged.saturating_add(1);
        return;
    }
    let p = &slot.plugin;
    warn!(
        plugin = %p.name(),
        version = %p.version(),
        call,
        kind = f.kind(),
        policy = policy_name(p.policy),
        suppressed = slot.unlogged,
        "plugin failed: {f}"
    );
    slot.last_log = Some(now);
    slot.unlogged = 0;
}

/// The slot's instance, made when missing.
fn live(slot: &mut Slot, call: u64) -> Option<&mut Live> {
    if slot.live.is_none() {
        match slot.plugin.instantiate() {
            Ok(l) => slot.live = Some(l),
            Err(f) => {
                failed(slot, call, "init", &f);
                return None;
            }
        }
    }
    slot.live.as_mut()
}

impl Hooks for PluginHost {
    fn status(&self) -> Vec<PluginStatus> {
        let mut out = Vec::new();
        for g in &self.gens {
            for (i, s) in g.slots.iter().enumerate() {
                let p = &s.plugin;
                let mut trunks: Vec<String> = g
                    .chains
                    .iter()
                    .filter(|(_, c)| c.chain.to_trunk.contains(&i) || c.chain.to_pbx.contains(&i))
                    .map(|(t, _)| t.clone())
                    .collect();
                trunks.sort();
                out.push(PluginStatus {
                    name: p.name().to_string(),
                    module: p.ident.module.clone(),
                    version: p.version().to_string(),
                    sha256: p.sha256(),
                    origin: p.origin.clone(),
                    policy: policy_name(p.policy),
                    generation: g.id,
                    current: g.id == self.current,
                    calls: g.pins,
                    trunks,
                    last_failure: s.last_failure.clone(),
                });
            }
        }
        out
    }

    fn current(&self) -> Generation {
        self.current
    }

    fn pin(&mut self, generation: Generation) {
        if let Some(g) = self.gens.iter_mut().find(|g| g.id == generation) {
            g.pins = g.pins.saturating_add(1);
        }
    }

    fn release(&mut self, generation: Generation) {
        if let Some(g) = self.gens.iter_mut().find(|g| g.id == generation) {
            g.pins = g.pins.saturating_sub(1);
            if g.pins == 0 && generation != self.current {
                self.collect(generation);
                self.publish_loaded();
            }
        }
    }

    fn active(&self, generation: Generation, trunk: &str) -> bool {
        self.gen(generation)
            .and_then(|g| g.chains.get(trunk))
            .is_some_and(|c| !c.chain.to_trunk.is_empty() || !c.chain.to_pbx.is_empty())
    }

    fn wants_message(&self, generation: Generation, ctx: &HookContext<'_>, msg: &Message) -> bool {
        // May: an extension method some plugin names passes; `message` asks each plugin.
        self.gen(generation)
            .and_then(|g| g.chains.get(ctx.trunk))
            .is_some_and(|c| c.side(ctx.leg).1.may_want(msg))
    }

    fn number(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        kind: NumberKind,
        number: &str,
    ) -> NumberVerdict {
        // The chain is looked up once; its plugins are then indexes into the slots.
        let Some(Gen { slots, chains, .. }) = self.gens.iter_mut().find(|g| g.id == generation)
        else {
            return NumberVerdict::Keep;
        };
        let Some((order, _, brand)) = chains.get(ctx.trunk).map(|c| c.side(ctx.leg)) else {
            return NumberVerdict::Keep;
        };
        if !any_wants(slots, order, |i| i.numbers) {
            return NumberVerdict::Keep;
        }
        let n = &mut self.nctx;
        n.direction = wit_direction(ctx.direction);
        n.leg = wit_leg(ctx.leg);
        set(&mut n.trunk, ctx.trunk);
        set(&mut n.brand, brand);
        set_opt(&mut n.tenant, ctx.tenant);
        n.kind = match kind {
            NumberKind::Called => wit::NumberKind::Called,
            NumberKind::Calling => wit::NumberKind::Calling,
        };
        let mut current: Option<String> = None;
        for &i in order {
            let Some(slot) = slots.get_mut(i) else {
                continue;
            };
            if !slot.plugin.interest.numbers {
                continue;
            }
            if let Some(policy) = &slot.plugin.numbers {
                // Declared: Sluice writes the number itself, without entering the plugin.
                let from = current.as_deref().unwrap_or(number);
                if let Some(n) = policy.apply(ctx.leg == Side::External, from) {
                    current = Some(n);
                }
                continue;
            }
            let plugin = slot.plugin.clone();
            let Some(l) = live(slot, ctx.call) else {
                if plugin.policy == Policy::FailClosed {
                    return NumberVerdict::Refuse { status: 503 };
                }
                continue;
            };
            match l.normalize_number(&plugin, &self.nctx, current.as_deref().unwrap_or(number)) {
                Ok(Some(n)) => current = Some(n),
                Ok(None) => {}
                Err(f) => {
                    failed(slot, ctx.call, "normalize-number", &f);
                    if plugin.policy == Policy::FailClosed {
                        return NumberVerdict::Refuse {
                            status: failure_status(&f),
                        };
                    }
                }
            }
        }
        match current {
            Some(n) if n != number => NumberVerdict::Replace(n),
            _ => NumberVerdict::Keep,
        }
    }

    fn message(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
        original: &mut Message,
    ) -> HookVerdict {
        // The chain is looked up once; its plugins are then indexes into the slots.
        let Some(Gen { slots, chains, .. }) = self.gens.iter_mut().find(|g| g.id == generation)
        else {
            return HookVerdict::Continue;
        };
        let Some((order, folded, brand)) = chains.get(ctx.trunk).map(|c| c.side(ctx.leg)) else {
            return HookVerdict::Continue;
        };
        // Method and CSeq are Sluice's: no plugin edit changes what the chain is asked.
        let asked = Asked::of(msg);
        if !folded.may_want_asked(&asked) {
            return HookVerdict::Continue;
        }
        fill_ctx((&mut self.ctx, &mut self.ctx_source), ctx, brand);
        let rejectable = edit::check_rejectable(msg, 500).is_ok();
        for &i in order {
            let Some(slot) = slots.get_mut(i) else {
                continue;
            };
            if !slot.wants.wants_asked(&slot.plugin.interest, &asked) {
                continue;
            }
            let fail_closed = slot.plugin.policy == Policy::FailClosed && rejectable;
            if let Some(edits) = &slot.plugin.edits {
                // Declared: Sluice makes the edits itself, without entering the plugin. They
                // were checked at load; only a message near the line limit refuses them.
                if let Err(e) = edits.apply(msg) {
                    let f = Failure::Invalid(e.to_string());
                    failed(slot, ctx.call, "declared edits", &f);
                    if fail_closed {
                        return plugin_failure(500);
                    }
                }
                continue;
            }
            let plugin = slot.plugin.clone();
            let Some(l) = live(slot, ctx.call) else {
                if fail_closed {
                    return plugin_failure(503);
                }
                continue;
            };
            let keep = plugin.policy == Policy::FailOpen || !rejectable;
            let f = match l.on_message(&plugin, &self.ctx, msg, original, keep) {
                Ok(wit::Verdict::Continue) => continue,
                Ok(wit::Verdict::Reject(r)) => match edit::check_rejectable(msg, r.status) {
                    Ok(()) => return rejection(r),
                    Err(e) => Failure::Invalid(e.to_string()),
                },
                Err(f) => f,
            };
            failed(slot, ctx.call, "on-message", &f);
            if fail_closed {
                return plugin_failure(failure_status(&f));
            }
        }
        HookVerdict::Continue
    }

    fn attestation(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
    ) -> Option<Attestation> {
        let Gen { slots, chains, .. } = self.gens.iter_mut().find(|g| g.id == generation)?;
        let (order, _, brand) = chains.get(ctx.trunk)?.side(Side::External);
        if !any_wants(slots, order, |i| i.attestation) {
            return None;
        }
        fill_ctx((&mut self.ctx, &mut self.ctx_source), ctx, brand);
        // Outbound order: the operator's rule sets speak before the brand; the first answer wins.
        for &i in order {
            let Some(slot) = slots.get_mut(i) else {
                continue;
            };
            if !slot.plugin.interest.attestation {
                continue;
            }
            let plugin = slot.plugin.clone();
            let Some(l) = live(slot, ctx.call) else {
                continue;
            };
            match l.attestation(&plugin, &self.ctx, msg) {
                Ok(Some(a)) => {
                    return Some(match a {
                        wit::Attestation::A => Attestation::A,
                        wit::Attestation::B => Attestation::B,
                        wit::Attestation::C => Attestation::C,
                        wit::Attestation::None => Attestation::None,
                    })
                }
                Ok(None) => {}
                Err(f) => failed(slot, ctx.call, "choose-attestation", &f),
            }
        }
        None
    }
}
