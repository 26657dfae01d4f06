//! One captured message through one plugin, exactly as Sluice would run it: for a new call's
//! INVITE the number hooks, then the message hook, then (outbound) the attestation; for any
//! other message the message hook. `sluice plugin test` prints the result.

use crate::host::{Chain, GenerationSpec, PluginHost};
use crate::loaded::{load, PluginSpec};
use crate::runtime::{Limits, Runtime};
use sluice_b2bua::{
    run_new_call, with_keys_hidden, Attestation, Direction, Generation, HookContext, HookVerdict,
    Hooks, NewCallOutcome, NumberKind, NumberVerdict, PluginStatus, Side,
};
use sluice_config::Policy;
use sluice_sip::{Message, Method};
use sluice_transaction::Transport;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// What a dry run shows.
#[derive(Debug)]
pub struct DryRun {
    pub plugin: String,
    pub version: String,
    /// The message as it would leave Sluice.
    pub message: Message,
    pub verdict: HookVerdict,
    /// Numbers the number hook changed: kind, before, after.
    pub numbers: Vec<(NumberKind, String, String)>,
    pub attestation: Option<Attestation>,
    /// Failures, as Sluice would log them.
    pub failures: Vec<String>,
}

pub struct DryRunInput<'a> {
    /// The plugin's name in what is printed and logged (its file's stem, or its bundled name).
    pub name: &'a str,
    pub wasm: &'a [u8],
    pub origin: String,
    pub message: &'a [u8],
    pub direction: Direction,
    pub trunk: &'a str,
    /// The trunk's brand the plugin is told (`generic` for a trunk without one; a brand plugin
    /// is told its own name).
    pub brand: &'a str,
    /// The tenant the plugin is told (with tenant routing, the call's; none without).
    pub tenant: Option<&'a str>,
    pub settings: BTreeMap<String, Vec<String>>,
    pub deadline: Duration,
}

pub fn dry_run(input: DryRunInput<'_>) -> Result<DryRun, String> {
    let mut msg = sluice_sip::parse_message(input.message)
        .map_err(|e| format!("the message does not parse: {}", e.reason))?;
    let runtime = Runtime::new(
        Limits {
            deadline: input.deadline,
            max_instances: 4,
            ..Limits::default()
        },
        false,
    )
    .map_err(|e| format!("{e:#}"))?;
    let plugin = load(
        &runtime,
        &PluginSpec {
            name: input.name.into(),
            module: input.name.into(),
            origin: input.origin,
            bytes: Arc::from(input.wasm),
            policy: Policy::FailOpen,
            deadline: input.deadline,
            settings: input.settings,
        },
    )?;
    let (name, version) = (
        plugin.ident.reported_name.clone(),
        plugin.version().to_string(),
    );
    let mut host = PluginHost::new();
    let chains = HashMap::from([(
        input.trunk.to_string(),
        Chain {
            brand: input.brand.into(),
            to_trunk: vec![0],
            to_pbx: vec![0],
        },
    )]);
    host.install(GenerationSpec {
        plugins: vec![plugin],
        chains,
        fingerprint: "dry-run".into(),
    });
    let generation = host.current_generation();
    let ctx = HookContext {
        call: 1,
        direction: input.direction,
        leg: match input.direction {
            Direction::Outbound => Side::External,
            Direction::Inbound => Side::Internal,
        },
        trunk: input.trunk,
        tenant: input.tenant,
        source: "127.0.0.1:5060".parse().map_err(|e| format!("{e}"))?,
        transport: Transport::Udp,
    };
    let mut recorded = Recording {
        host: &mut host,
        numbers: Vec::new(),
    };
    let (verdict, attestation) = run_hooks(&mut recorded, generation, &ctx, &mut msg);
    let numbers = recorded.numbers;
    let failures = host
        .status()
        .into_iter()
        .filter_map(|s| s.last_failure)
        .collect();
    Ok(DryRun {
        plugin: name,
        version,
        message: msg,
        verdict,
        numbers,
        attestation,
        failures,
    })
}

/// The hooks the engine would run on `msg`, in its order: a new call's whole sequence, or the
/// message hook with the SRTP keys of both bodies hidden.
fn run_hooks(
    hooks: &mut Recording<'_>,
    generation: Generation,
    ctx: &HookContext<'_>,
    msg: &mut Message,
) -> (HookVerdict, Option<Attestation>) {
    let mut original = msg.clone();
    if msg.method() == Some(&Method::Invite) && msg.to_tag().is_none() {
        return match run_new_call(hooks, generation, ctx, msg, &mut original) {
            NewCallOutcome::Continue { attestation } => (HookVerdict::Continue, attestation),
            NewCallOutcome::Refuse { status, reason } => {
                (HookVerdict::Reject { status, reason }, None)
            }
        };
    }
    let v = with_keys_hidden(msg, &mut original, |msg, original| {
        hooks.message(generation, ctx, msg, original)
    });
    (v, None)
}

/// The plugin host, with the numbers its number hook changed written down.
struct Recording<'a> {
    host: &'a mut PluginHost,
    numbers: Vec<(NumberKind, String, String)>,
}

impl Hooks for Recording<'_> {
    fn status(&self) -> Vec<PluginStatus> {
        self.host.status()
    }
    fn current(&self) -> Generation {
        self.host.current()
    }
    fn pin(&mut self, generation: Generation) {
        self.host.pin(generation)
    }
    fn release(&mut self, generation: Generation) {
        self.host.release(generation)
    }
    fn active(&self, generation: Generation, trunk: &str) -> bool {
        self.host.active(generation, trunk)
    }
    fn number(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        kind: NumberKind,
        number: &str,
    ) -> NumberVerdict {
        let v = self.host.number(generation, ctx, kind, number);
        if let NumberVerdict::Replace(n) = &v {
            self.numbers.push((kind, number.to_string(), n.clone()));
        }
        v
    }
    fn message(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
        original: &mut Message,
    ) -> HookVerdict {
        self.host.message(generation, ctx, msg, original)
    }
    fn attestation(
        &mut self,
        generation: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
    ) -> Option<Attestation> {
        self.host.attestation(generation, ctx, msg)
    }
}
