//! A loaded plugin version (compiled, linked, self-checked) and its live instances: calling a
//! hook under the deadline and memory cap, and telling what went wrong when it fails.

use crate::bindings::sluice::plugin::types as wit;
use crate::exports::{Guest, Pre};
use crate::runtime::Runtime;
use crate::state::{Ident, PluginState};
use sluice_config::Policy;
use sluice_sip::declared::{DeclaredEdits, HeaderEdit};
use sluice_sip::e164::{Format, NumberPolicy};
use sluice_sip::{Interest, Message};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};

/// Everything needed to load one configured plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The configured name.
    pub name: String,
    /// The module it runs.
    pub module: String,
    /// Where the module came from (a path, or `bundled`), for messages.
    pub origin: String,
    pub bytes: Arc<[u8]>,
    pub policy: Policy,
    pub deadline: Duration,
    pub settings: BTreeMap<String, Vec<String>>,
}

/// How a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The plugin trapped (a panic, an out-of-bounds access, unreachable code…).
    Trap(String),
    /// It ran past its deadline.
    Deadline,
    /// It tried to grow past its memory cap.
    Memory,
    /// It made an edit Sluice refuses, or answered what it may not.
    Invalid(String),
    /// A new instance could not be made (pool exhausted, init refused).
    Instantiate(String),
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Trap(_) => "trap",
            Failure::Deadline => "deadline",
            Failure::Memory => "memory",
            Failure::Invalid(_) => "invalid",
            Failure::Instantiate(_) => "instantiate",
        }
    }

    fn index(&self) -> usize {
        match self {
            Failure::Trap(_) => 0,
            Failure::Deadline => 1,
            Failure::Memory => 2,
            Failure::Invalid(_) => 3,
            Failure::Instantiate(_) => 4,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Trap(m) => write!(f, "trapped: {m}"),
            Failure::Deadline => f.write_str("ran past its deadline"),
            Failure::Memory => f.write_str("exceeded its memory cap"),
            Failure::Invalid(m) => write!(f, "invalid output: {m}"),
            Failure::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
        }
    }
}

/// A trap in the words of what the plugin did.
fn describe_trap(t: wasmtime::Trap) -> String {
    use wasmtime::Trap;
    match t {
        Trap::StackOverflow => "stack overflow (unbounded recursion?)".into(),
        Trap::UnreachableCodeReached => {
            "it panicked (Rust's `unreachable` trap; the panic message is in its stderr)".into()
        }
        Trap::MemoryOutOfBounds => "out-of-bounds memory access".into(),
        Trap::IntegerDivisionByZero => "integer division by zero".into(),
        Trap::IntegerOverflow => "integer overflow".into(),
        Trap::IndirectCallToNull | Trap::BadSignature => "a bad indirect call".into(),
        Trap::TableOutOfBounds => "out-of-bounds table access".into(),
        other => other.to_string(),
    }
}

/// Which hook ran, for metrics.
#[derive(Debug, Clone, Copy)]
pub enum Hook {
    Message = 0,
    Number = 1,
    Attestation = 2,
}

const HOOKS: [&str; 3] = ["message", "number", "attestation"];
const KINDS: [&str; 5] = ["trap", "deadline", "memory", "invalid", "instantiate"];

/// Metric handles, registered once per loaded version so that a call only touches atomics.
pub struct PluginMetrics {
    invocations: [metrics::Counter; 3],
    errors: [metrics::Counter; 5],
    duration: metrics::Histogram,
}

impl PluginMetrics {
    fn new(name: &str, version: &str) -> PluginMetrics {
        let (n, v) = (name.to_string(), version.to_string());
        PluginMetrics {
            invocations: HOOKS.map(|h| {
                metrics::counter!("sluice_plugin_invocations_total",
                    "plugin" => n.clone(), "version" => v.clone(), "hook" => h)
            }),
            errors: KINDS.map(|k| {
                let c = metrics::counter!("sluice_plugin_errors_total",
                    "plugin" => n.clone(), "version" => v.clone(), "kind" => k);
                c.increment(0);
                c
            }),
            duration: metrics::histogram!("sluice_plugin_call_duration_seconds",
                "plugin" => n.clone(), "version" => v.clone()),
        }
    }

    /// Counters that count nothing: the load-time probe and self-check are not calls, and must
    /// leave no series behind (a `version="?"` one, say).
    fn detached() -> PluginMetrics {
        PluginMetrics {
            invocations: std::array::from_fn(|_| metrics::Counter::noop()),
            errors: std::array::from_fn(|_| metrics::Counter::noop()),
            duration: metrics::Histogram::noop(),
        }
    }

    pub fn failed(&self, f: &Failure) {
        if let Some(c) = self.errors.get(f.index()) {
            c.increment(1);
        }
    }
}

/// A plugin version ready to instantiate.
pub struct LoadedPlugin {
    pub ident: Arc<Ident>,
    pub origin: String,
    pub hash: [u8; 32],
    pub policy: Policy,
    /// Longest one hook call may run.
    pub(crate) deadline: Duration,
    ticker: Arc<crate::runtime::Ticker>,
    pre: Pre,
    memory: usize,
    pub(crate) metrics: PluginMetrics,
    /// Which hooks the plugin wants called (it declares it once, after `init`).
    pub(crate) interest: Interest,
    /// The number policy the plugin declared: Sluice writes its numbers without calling it.
    pub(crate) numbers: Option<NumberPolicy>,
    /// The header edits the plugin declared: Sluice makes them without calling its message
    /// hook.
    pub(crate) edits: Option<DeclaredEdits>,
    /// The instance that passed the self-check, kept warm for the engine (taken at install, so
    /// that the engine's task never instantiates on a reload).
    warm: std::sync::Mutex<Option<Live>>,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.ident.name
    }

    pub fn version(&self) -> &str {
        &self.ident.version
    }

    /// SHA-256 of the component, in hex.
    pub fn sha256(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The instance that passed the self-check, else a new one.
    pub(crate) fn take_warm_or_instantiate(&self) -> Result<Live, Failure> {
        match self.warm.lock().ok().and_then(|mut w| w.take()) {
            Some(l) => Ok(l),
            None => self.instantiate(),
        }
    }

    /// A new instance, initialised (its `init` accepted the settings).
    pub(crate) fn instantiate(&self) -> Result<Live, Failure> {
        let mut store = Store::new(
            self.pre.engine(),
            PluginState::new(self.ident.clone(), self.memory),
        );
        store.limiter(|s| &mut s.limiter);
        // At every tick of the epoch during a call: cut the call off once it has run past its
        // limit, else look again at the next tick, and keep the ticker from going idle while
        // the call lasts (it sleeps after a second without a new call; a limit may be longer).
        let ticker = self.ticker.clone();
        store.epoch_deadline_callback(move |cx| {
            let s = cx.data();
            if s.call_started.elapsed() >= s.call_limit {
                return Ok(UpdateDeadline::Interrupt);
            }
            ticker.calling();
            Ok(UpdateDeadline::Continue(1))
        });
        // init may parse settings: give it ten deadlines.
        start_call(&mut store, self.deadline.saturating_mul(10));
        self.ticker.calling();
        let plugin = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| Failure::Instantiate(format!("{e:#}")))?;
        let mut live = Live { store, plugin };
        let r = live.guest_call(|g, s| g.init(s));
        match live.finish(r) {
            Ok(Ok(())) => Ok(live),
            Ok(Err(e)) => Err(Failure::Instantiate(format!(
                "init refused its settings: {e}"
            ))),
            Err(f) => Err(f),
        }
    }
}

/// A call into the guest begins now and may run for `limit`: the epoch callback looks at the
/// next tick. Returns the start.
fn start_call(store: &mut Store<PluginState>, limit: Duration) -> Instant {
    let now = Instant::now();
    let s = store.data_mut();
    s.call_started = now;
    s.call_limit = limit;
    store.set_epoch_deadline(1);
    now
}

/// A live instance of a plugin version.
pub(crate) struct Live {
    store: Store<PluginState>,
    plugin: Guest,
}

impl Live {
    fn guest_call<R>(
        &mut self,
        f: impl FnOnce(&mut Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        f(&mut self.plugin, &mut self.store)
    }

    /// Classify the result of a call: what failed, or the value.
    fn finish<R>(&mut self, r: wasmtime::Result<R>) -> Result<R, Failure> {
        self.store.data_mut().flush_output();
        let memory = std::mem::take(&mut self.store.data_mut().limiter.memory_exceeded);
        if r.is_err() {
            self.plugin.forget_sent();
        }
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(if memory {
                Failure::Memory
            } else if matches!(
                e.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            ) {
                Failure::Deadline
            } else if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
                Failure::Trap(describe_trap(*t))
            } else {
                // The root cause says what happened ("the plugin called exit"); the context
                // above it is a backtrace.
                let msg = e.root_cause().to_string();
                Failure::Trap(msg.lines().next().unwrap_or("").trim().to_string())
            }),
        }
    }

    /// Call the guest under the deadline, not counted: the questions a load asks.
    fn limited<R>(
        &mut self,
        p: &LoadedPlugin,
        f: impl FnOnce(&mut Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        start_call(&mut self.store, p.deadline);
        p.ticker.calling();
        self.guest_call(f)
    }

    /// Call the guest under the deadline, timed and counted.
    fn timed<R>(
        &mut self,
        p: &LoadedPlugin,
        hook: Hook,
        f: impl FnOnce(&mut Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        let started = start_call(&mut self.store, p.deadline);
        p.ticker.calling();
        let r = self.guest_call(f);
        p.metrics.duration.record(started.elapsed().as_secs_f64());
        if let Some(c) = p.metrics.invocations.get(hook as usize) {
            c.increment(1);
        }
        r
    }

    /// Run a hook with `msg` (and `original`) lent to the store: they come back after the
    /// call, and on failure `msg` comes back as it was before the call's first edit (kept when
    /// `keep_snapshot`). A hook that may not edit (`edits_allowed` false) and did is invalid.
    #[allow(clippy::too_many_arguments)]
    fn with_message<R>(
        &mut self,
        p: &LoadedPlugin,
        hook: Hook,
        call: u64,
        msg: &mut Message,
        mut original: Option<&mut Message>,
        keep_snapshot: bool,
        edits_allowed: bool,
        f: impl FnOnce(&mut Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        let st = self.store.data_mut();
        st.msg = std::mem::take(msg);
        if let Some(o) = original.as_deref_mut() {
            st.original = std::mem::take(o);
        }
        st.keep_snapshot = keep_snapshot || !edits_allowed;
        st.call = call;
        let r = self.timed(p, hook, f);
        let st = self.store.data_mut();
        *msg = std::mem::take(&mut st.msg);
        if let Some(o) = original {
            *o = std::mem::take(&mut st.original);
        }
        let edited = std::mem::take(&mut st.edited);
        let restorable = edited && st.keep_snapshot;
        let mut invalid = st.invalid.take();
        if !edits_allowed && edited && invalid.is_none() {
            invalid = Some("this hook may not edit the message".into());
        }
        let r = self.finish(r).and_then(|v| match invalid {
            Some(e) => Err(Failure::Invalid(e)),
            None => Ok(v),
        });
        if r.is_err() && restorable {
            // The message as it was before the first edit; the edited one becomes the next
            // call's snapshot buffer.
            std::mem::swap(msg, &mut self.store.data_mut().snapshot);
        }
        r
    }

    /// The message hook on `msg`, built from `original`. A trap leaves the instance unusable:
    /// the caller drops it.
    pub(crate) fn on_message(
        &mut self,
        p: &LoadedPlugin,
        ctx: &wit::CallContext,
        msg: &mut Message,
        original: &mut Message,
        keep_snapshot: bool,
    ) -> Result<wit::Verdict, Failure> {
        self.with_message(
            p,
            Hook::Message,
            ctx.call,
            msg,
            Some(original),
            keep_snapshot,
            true,
            |g, s| g.on_message(s, ctx),
        )
    }

    pub(crate) fn normalize_number(
        &mut self,
        p: &LoadedPlugin,
        ctx: &wit::NumberContext,
        number: &str,
    ) -> Result<Option<String>, Failure> {
        let r = self.timed(p, Hook::Number, |g, s| g.normalize_number(s, ctx, number));
        let n = self.finish(r)?;
        if let Some(n) = &n {
            sluice_sip::edit::check_number(n).map_err(|e| Failure::Invalid(e.to_string()))?;
        }
        Ok(n)
    }

    /// The attestation hook: it reads the message; an edit is undone and makes it invalid.
    pub(crate) fn attestation(
        &mut self,
        p: &LoadedPlugin,
        ctx: &wit::CallContext,
        msg: &mut Message,
    ) -> Result<Option<wit::Attestation>, Failure> {
        self.with_message(
            p,
            Hook::Attestation,
            ctx.call,
            msg,
            None,
            true,
            false,
            |g, s| g.choose_attestation(s, ctx),
        )
    }
}

/// Compile, link and self-check a plugin: it must export `sluice:plugin/call-hooks@0.2.0` (or
/// `hooks@0.2.0`, as plugins built before it do), report its name and version, accept its
/// settings, and run every hook on a sample call within its limits. Any failure refuses the
/// plugin with a message that names it.
pub fn load(runtime: &Arc<Runtime>, spec: &PluginSpec) -> Result<Arc<LoadedPlugin>, String> {
    let who = format!(
        "plugin `{}` (module `{}`, {})",
        spec.name, spec.module, spec.origin
    );
    let (component, hash) = runtime
        .compile(&spec.bytes)
        .map_err(|e| format!("{who}: {e}"))?;
    let linker = crate::runtime::linker_for(runtime, &component)
        .map_err(|e| format!("{who}: cannot link: {e}"))?;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        format!("{who}: does not fit Sluice's plugin interface (sluice:plugin@0.2.0; rebuild it with the current SDK): {e:#}")
    })?;
    let pre = Pre::new(pre).map_err(|e| {
        format!("{who}: does not export sluice:plugin/call-hooks@0.2.0 (nor hooks@0.2.0): {e}")
    })?;
    let ident = Ident {
        name: spec.name.clone(),
        module: spec.module.clone(),
        reported_name: String::new(),
        version: String::new(),
        settings: spec.settings.clone(),
        log: crate::log_budget::LogBudget::new(&spec.name),
    };
    let probe = || LoadedPlugin {
        ident: Arc::new(ident.clone_shallow()),
        origin: spec.origin.clone(),
        hash,
        policy: spec.policy,
        deadline: spec.deadline,
        ticker: runtime.ticker.clone(),
        pre: pre.clone(),
        memory: runtime.limits.memory_bytes,
        metrics: PluginMetrics::detached(),
        interest: Interest::all(),
        numbers: None,
        edits: None,
        warm: std::sync::Mutex::new(None),
    };
    // A deadline missed while loading may be the machine's doing (a busy host, a fresh
    // instance touching its memory for the first time), not the plugin's: the checks run again
    // on a fresh instance, and only a plugin that misses every time is refused.
    let mut attempt = 1;
    let mut loaded = loop {
        match check(probe(), ident.clone_shallow()) {
            Ok(p) => break p,
            Err(Refusal::Failed(Failure::Deadline)) if attempt < LOAD_ATTEMPTS => {
                tracing::warn!("{who}: self-check ran past its deadline; trying again");
                attempt = attempt.saturating_add(1);
            }
            Err(Refusal::Failed(Failure::Deadline)) => {
                return Err(format!(
                    "{who}: self-check failed: ran past its deadline ({attempt} tries)"
                ))
            }
            Err(Refusal::Failed(f)) => return Err(format!("{who}: self-check failed: {f}")),
            Err(Refusal::Invalid(e)) => return Err(format!("{who}: {e}")),
        }
    };
    // Counted from the first real call on.
    loaded.metrics = PluginMetrics::new(&spec.name, &loaded.ident.version);
    Ok(Arc::new(loaded))
}

/// How many times a load's checks may run past a deadline before the plugin is refused.
const LOAD_ATTEMPTS: u32 = 3;

/// Why a load's checks refused a plugin.
enum Refusal {
    /// A guest call failed.
    Failed(Failure),
    /// It answered something Sluice cannot take.
    Invalid(String),
}

impl From<Failure> for Refusal {
    fn from(f: Failure) -> Self {
        Refusal::Failed(f)
    }
}

/// Ask a fresh instance for the plugin's name, version and interest, then run the sample call
/// through it ([`crate::self_check`]); the instance that passed serves the first calls.
fn check(mut probe: LoadedPlugin, mut ident: Ident) -> Result<LoadedPlugin, Refusal> {
    let mut live = probe.instantiate()?;
    let r = live.limited(&probe, |g, s| g.info(s));
    let info = live.finish(r)?;
    let clean = |s: &str| {
        if s.is_empty() || s.len() > 64 || s.bytes().any(|b| !b.is_ascii_graphic()) {
            "unknown".to_string()
        } else {
            s.to_string()
        }
    };
    ident.version = clean(&info.version);
    ident.reported_name = clean(&info.name);
    let r = live.limited(&probe, |g, s| g.get_interest(s));
    let declared = live.finish(r)?;
    probe.interest = interest(declared).map_err(Refusal::Invalid)?;
    if let Some(p) = live.store.data_mut().declared_numbers.take() {
        probe.numbers = Some(number_policy(p).map_err(Refusal::Invalid)?);
        probe.interest.numbers = true;
    }
    if let Some(e) = live.store.data_mut().declared_edits.take() {
        probe.edits = Some(declared_edits(&e).map_err(Refusal::Invalid)?);
    }
    probe.ident = Arc::new(ident);
    let warm = crate::self_check::self_check(&probe)?;
    if let Ok(mut w) = probe.warm.lock() {
        *w = Some(warm);
    }
    Ok(probe)
}

/// A plugin's declared interest, checked: methods are SIP tokens (or `*`), a few of them.
fn interest(i: wit::Interest) -> Result<Interest, String> {
    for m in i.requests.iter().chain(&i.responses) {
        if m.is_empty()
            || m.len() > 32
            || !(m == "*" || m.bytes().all(sluice_sip::header::is_token_char))
        {
            return Err(format!(
                "its interest names `{}`, which is no method",
                m.escape_default()
            ));
        }
    }
    if i.requests.len().saturating_add(i.responses.len()) > 64 {
        return Err("its interest names more than 64 methods".into());
    }
    Ok(Interest {
        requests: i.requests,
        responses: i.responses,
        numbers: i.numbers,
        attestation: i.attestation,
    })
}

/// Declared header edits, checked.
fn declared_edits(edits: &[wit::HeaderEdit]) -> Result<DeclaredEdits, String> {
    let edits: Vec<HeaderEdit> = edits
        .iter()
        .map(|e| match e {
            wit::HeaderEdit::Add(l) => HeaderEdit::Add(l.name.clone(), l.value.clone()),
            wit::HeaderEdit::Set(l) => HeaderEdit::Set(l.name.clone(), l.value.clone()),
            wit::HeaderEdit::Remove(n) => HeaderEdit::Remove(n.clone()),
        })
        .collect();
    DeclaredEdits::new(&edits)
}

/// A declared number policy, checked.
fn number_policy(p: wit::NumberPolicy) -> Result<NumberPolicy, String> {
    if !NumberPolicy::valid_country(&p.default_country) {
        return Err(format!(
            "its number policy's country code `{}` is not one to three digits",
            p.default_country.escape_default()
        ));
    }
    let format = |f: wit::NumberFormat| match f {
        wit::NumberFormat::AsIs => Format::AsIs,
        wit::NumberFormat::E164 => Format::Plus,
        wit::NumberFormat::Digits => Format::Digits,
        wit::NumberFormat::Nanp => Format::Nanp,
    };
    Ok(NumberPolicy {
        outbound: format(p.outbound),
        inbound: format(p.inbound),
        default_country: p.default_country,
    })
}

impl Ident {
    fn clone_shallow(&self) -> Ident {
        Ident {
            name: self.name.clone(),
            module: self.module.clone(),
            reported_name: self.reported_name.clone(),
            version: self.version.clone(),
            settings: self.settings.clone(),
            log: crate::log_budget::LogBudget::new(&self.name),
        }
    }
}
