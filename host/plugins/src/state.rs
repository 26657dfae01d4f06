//! What a plugin's store holds, and the host side of its imports: the message it is lent for
//! one call, logging, counters, settings and the clock. Every edit goes through
//! `sluice_sip::edit`, which refuses edits to Sluice's topology and malformed values.

use crate::bindings::sluice::plugin::message::SipMessage;
use crate::bindings::sluice::plugin::{host, message, types};

use sluice_sip::{edit, HeaderName, Message};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::component::Resource;

/// Most distinct counters one plugin may create.
pub const MAX_COUNTERS: usize = 32;
/// Longest log line a plugin may write.
pub const MAX_LOG: usize = 1024;

/// Who a store belongs to: the configured plugin, its module and version, its settings.
#[derive(Debug)]
pub struct Ident {
    /// The plugin's configured name (`[plugin.NAME]`, or the module name).
    pub name: String,
    pub module: String,
    /// The name and version the plugin reports.
    pub reported_name: String,
    pub version: String,
    pub settings: BTreeMap<String, Vec<String>>,
    /// What it may write to the log (shared by all its instances).
    pub log: crate::log_budget::LogBudget,
}

/// Memory and table caps; remembers when it refused memory so that the trap is reported as a
/// memory overrun.
pub struct Limiter {
    memory: usize,
    pub(crate) memory_exceeded: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!(
                "plugin memory cap of {} bytes reached",
                self.memory
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > 20_000 {
            return Err(wasmtime::format_err!("plugin table cap reached"));
        }
        Ok(true)
    }
}

pub struct PluginState {
    pub(crate) limiter: Limiter,
    pub(crate) ident: Arc<Ident>,
    /// The message lent for the current call, and the one it was built from.
    pub(crate) msg: Message,
    pub(crate) original: Message,
    /// The message before this call's first edit, kept when a failure must undo the edits. The
    /// copy's buffers are reused from call to call: taking it allocates nothing once warm.
    pub(crate) snapshot: Message,
    /// Whether `snapshot` holds this call's message (an edit was made).
    pub(crate) edited: bool,
    pub(crate) keep_snapshot: bool,
    /// The first invalid edit of the current call.
    pub(crate) invalid: Option<String>,
    /// The call the current message belongs to (for log lines).
    pub(crate) call: u64,
    counters: HashMap<String, metrics::Counter>,
    /// What the plugin wrote to stdout or stderr during the current call (bounded).
    pub(crate) output: Vec<u8>,
    pub(crate) output_is_stderr: bool,
    /// When the current call into the guest began, and how long it may run: the epoch
    /// ticker's callback compares the two (see `Live::timed`).
    pub(crate) call_started: std::time::Instant,
    pub(crate) call_limit: std::time::Duration,
    /// The number policy the plugin declared (`host.declare-numbers`), read at load.
    pub(crate) declared_numbers: Option<types::NumberPolicy>,
    /// The header edits the plugin declared as it loaded (`host.declare-edits`).
    pub(crate) declared_edits: Option<Vec<types::HeaderEdit>>,
    /// What the running message hook gave with `host.reject-reason`.
    pub(crate) reject_reason: Option<String>,
}

impl PluginState {
    pub fn new(ident: Arc<Ident>, memory: usize) -> PluginState {
        PluginState {
            limiter: Limiter {
                memory,
                memory_exceeded: false,
            },
            ident,
            msg: Message::default(),
            original: Message::default(),
            snapshot: Message::default(),
            edited: false,
            keep_snapshot: false,
            invalid: None,
            call: 0,
            counters: HashMap::new(),
            output: Vec::new(),
            output_is_stderr: false,
            call_started: std::time::Instant::now(),
            call_limit: std::time::Duration::ZERO,
            declared_numbers: None,
            declared_edits: None,
            reject_reason: None,
        }
    }

    /// Write what the plugin printed during the call to the log, once.
    pub(crate) fn flush_output(&mut self) {
        if self.output.is_empty() {
            return;
        }
        if !self.may_log() {
            self.output.clear();
            return;
        }
        let text = String::from_utf8_lossy(&self.output);
        let text = text.trim_end();
        let (p, v, call) = (&self.ident.name, &self.ident.version, self.call);
        if self.output_is_stderr {
            tracing::warn!(plugin = %p, version = %v, call, "plugin stderr: {text}");
        } else {
            tracing::info!(plugin = %p, version = %v, call, "plugin stdout: {text}");
        }
        self.output.clear();
    }

    /// Whether one more line may go to the log now (see [`crate::log_budget`]); says once per
    /// interval how many were dropped.
    fn may_log(&self) -> bool {
        let take = self.ident.log.take(std::time::Instant::now());
        if let Some(n) = take.report_dropped {
            tracing::warn!(
                plugin = %self.ident.name,
                dropped = n,
                "plugin log lines dropped: over {} lines, then {} per second",
                crate::log_budget::BURST,
                crate::log_budget::PER_SECOND
            );
        }
        take.allowed
    }

    /// Before an edit: keep the message as it was when a failure would have to undo edits.
    fn before_edit(&mut self) {
        if !self.edited {
            self.edited = true;
            if self.keep_snapshot {
                self.snapshot.clone_from(&self.msg);
            }
        }
    }

    fn record<T>(&mut self, r: Result<T, edit::EditError>) -> Result<T, String> {
        r.map_err(|e| {
            let e = e.to_string();
            if self.invalid.is_none() {
                self.invalid = Some(e.clone());
            }
            e
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let end = s
        .char_indices()
        .map(|(i, c)| i.saturating_add(c.len_utf8()))
        .take_while(|&end| end <= max)
        .last()
        .unwrap_or(0);
    s.get(..end).unwrap_or_default()
}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) {
        // Lines the log filter would drop anyway spend nothing of the budget.
        let enabled = match level {
            host::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            host::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            host::Level::Info => tracing::enabled!(tracing::Level::INFO),
            host::Level::Warn => tracing::enabled!(tracing::Level::WARN),
            host::Level::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        if !enabled || !self.may_log() {
            return;
        }
        let m = clip(&message, MAX_LOG);
        let (p, v, call) = (&self.ident.name, &self.ident.version, self.call);
        match level {
            host::Level::Trace => tracing::trace!(plugin = %p, version = %v, call, "{m}"),
            host::Level::Debug => tracing::debug!(plugin = %p, version = %v, call, "{m}"),
            host::Level::Info => tracing::info!(plugin = %p, version = %v, call, "{m}"),
            host::Level::Warn => tracing::warn!(plugin = %p, version = %v, call, "{m}"),
            host::Level::Error => tracing::error!(plugin = %p, version = %v, call, "{m}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        if let Some(c) = self.counters.get(&name) {
            c.increment(delta);
            return;
        }
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || self.counters.len() >= MAX_COUNTERS {
            tracing::debug!(plugin = %self.ident.name, counter = %clip(&name, 64), "counter refused");
            return;
        }
        let c = metrics::counter!(
            "sluice_plugin_counter_total",
            "plugin" => self.ident.name.clone(),
            "counter" => name.clone()
        );
        c.increment(delta);
        self.counters.insert(name, c);
    }

    fn setting(&mut self, key: String) -> Option<String> {
        self.ident.settings.get(&key).map(|v| v.join("\n"))
    }

    fn setting_list(&mut self, key: String) -> Vec<String> {
        self.ident.settings.get(&key).cloned().unwrap_or_default()
    }

    fn declare_numbers(&mut self, policy: types::NumberPolicy) {
        self.declared_numbers = Some(policy);
    }

    fn declare_edits(&mut self, edits: Vec<types::HeaderEdit>) {
        self.declared_edits = Some(edits);
    }

    fn reject_reason(&mut self, reason: String) {
        self.reject_reason = Some(reason);
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

fn get(msg: &Message, name: &str) -> Option<String> {
    msg.headers
        .get(&HeaderName::parse(name))
        .map(str::to_string)
}

fn get_all(msg: &Message, name: &str) -> Vec<String> {
    let h = HeaderName::parse(name);
    msg.headers.get_all(&h).map(str::to_string).collect()
}

/// The `sip-message` resource: one per store, always the message lent for the current call.
impl message::HostSipMessage for PluginState {
    fn is_request(&mut self, _: Resource<SipMessage>) -> bool {
        self.msg.is_request()
    }
    fn method(&mut self, _: Resource<SipMessage>) -> Option<String> {
        self.msg.method().map(|m| m.as_str().to_string())
    }
    fn is_initial(&mut self, _: Resource<SipMessage>) -> bool {
        self.msg.is_initial()
    }
    fn status(&mut self, _: Resource<SipMessage>) -> Option<u16> {
        self.msg.status()
    }
    fn reason(&mut self, _: Resource<SipMessage>) -> Option<String> {
        self.msg.reason().map(str::to_string)
    }
    fn request_uri(&mut self, _: Resource<SipMessage>) -> Option<String> {
        self.msg.request_uri().map(str::to_string)
    }
    fn set_request_uri(&mut self, _: Resource<SipMessage>, uri: String) -> Result<(), String> {
        self.before_edit();
        let r = edit::set_request_uri(&mut self.msg, &uri);
        self.record(r)
    }
    fn get(&mut self, _: Resource<SipMessage>, name: String) -> Option<String> {
        get(&self.msg, &name)
    }
    fn get_all(&mut self, _: Resource<SipMessage>, name: String) -> Vec<String> {
        get_all(&self.msg, &name)
    }
    fn header_names(&mut self, _: Resource<SipMessage>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for h in &self.msg.headers {
            if !names.iter().any(|n| n == h.name.as_str()) {
                names.push(h.name.as_str().to_string());
            }
        }
        names
    }
    fn set(&mut self, _: Resource<SipMessage>, name: String, value: String) -> Result<(), String> {
        self.before_edit();
        let r = edit::set_header(&mut self.msg, &name, &value);
        self.record(r)
    }
    fn add(&mut self, _: Resource<SipMessage>, name: String, value: String) -> Result<(), String> {
        self.before_edit();
        let r = edit::add_header(&mut self.msg, &name, &value);
        self.record(r)
    }
    fn remove(&mut self, _: Resource<SipMessage>, name: String) -> Result<u32, String> {
        self.before_edit();
        let r = edit::remove_header(&mut self.msg, &name);
        self.record(r)
    }
    fn body(&mut self, _: Resource<SipMessage>) -> Vec<u8> {
        self.msg.body.to_vec()
    }
    fn content_type(&mut self, _: Resource<SipMessage>) -> Option<String> {
        get(&self.msg, "Content-Type")
    }
    fn set_body(
        &mut self,
        _: Resource<SipMessage>,
        content_type: String,
        body: Vec<u8>,
    ) -> Result<(), String> {
        self.before_edit();
        let r = edit::set_body(&mut self.msg, &content_type, &body);
        self.record(r)
    }
    fn original_get(&mut self, _: Resource<SipMessage>, name: String) -> Option<String> {
        get(&self.original, &name)
    }
    fn original_get_all(&mut self, _: Resource<SipMessage>, name: String) -> Vec<String> {
        get_all(&self.original, &name)
    }
    fn original_request_uri(&mut self, _: Resource<SipMessage>) -> Option<String> {
        self.original.request_uri().map(str::to_string)
    }
    fn drop(&mut self, _: Resource<SipMessage>) -> wasmtime::Result<()> {
        // The host only lends borrows; there is nothing to free.
        Ok(())
    }
}

impl message::Host for PluginState {}
impl types::Host for PluginState {}

/// The host type behind the `sip-message` resource: the message itself lives in
/// [`PluginState`], lent for one call at a time.
pub struct MessageMarker;
