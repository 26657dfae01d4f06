//! Sluice's configuration file (TOML). Unknown keys are errors; every error names the file, the
//! line and what is wrong.

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

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The longest drain Sluice accepts, from the configuration, the command line or the admin API
/// (a day: longer is a mistake, and a deadline must stay far below what a clock can hold).
pub const MAX_DRAIN_SECONDS: u64 = 86_400;
/// The longest a plugin hook may run: the engine waits for it, so more would stall every call.
pub const MAX_PLUGIN_DEADLINE_MS: u64 = 1_000;
/// The largest SIP message: what a UDP datagram can carry.
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// The bundled default: the loopback lab of `examples/loopback.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../../examples/loopback.toml");
pub const DEFAULT_CONFIG_NAME: &str = "<bundled examples/loopback.toml>";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipSettings,
    /// The side facing the PBX.
    pub internal: Side,
    /// The side facing the trunk providers.
    pub external: Side,
    pub pbx: Peer,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    pub routing: Routing,
    /// The admin HTTP API; absent means no admin API.
    pub admin: Option<Admin>,
    /// A separate address for Prometheus to scrape `/metrics` without a token.
    pub metrics: Option<Metrics>,
    /// Plugin host settings: where plugin files are, limits, the default failure policy.
    #[serde(default)]
    pub plugins: PluginsSettings,
    /// Named plugins: a module with its settings and policy (`[plugin.NAME]`).
    #[serde(default, rename = "plugin")]
    pub plugin: BTreeMap<String, PluginEntry>,
}

/// What happens to a message when a plugin fails on it (trap, deadline, memory, invalid edit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The message goes on without that plugin's edits.
    FailOpen,
    /// The request is refused (503 for a failure, 500 for an invalid edit).
    FailClosed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSettings {
    /// A directory of `NAME.wasm` components (relative to the configuration file), watched for
    /// changes; a file there overrides the bundled plugin of the same name.
    pub dir: Option<Spanned<String>>,
    /// Longest a plugin may run on one message, in milliseconds.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Memory cap of each plugin instance, in MiB.
    #[serde(default = "default_plugin_memory")]
    pub memory_mb: u64,
    /// Plugin instances alive at once (each version in use counts).
    #[serde(default = "default_instances")]
    pub max_instances: u32,
    /// The failure policy of plugins that do not set their own.
    #[serde(default = "default_policy")]
    pub policy: Policy,
    /// Watch the plugin directory and the configuration file and reload on changes.
    #[serde(default = "default_true")]
    pub watch: bool,
}

fn default_deadline() -> u64 {
    5
}
fn default_plugin_memory() -> u64 {
    16
}
fn default_instances() -> u32 {
    200
}
fn default_policy() -> Policy {
    Policy::FailOpen
}
fn default_true() -> bool {
    true
}

impl Default for PluginsSettings {
    fn default() -> Self {
        PluginsSettings {
            dir: None,
            deadline_ms: default_deadline(),
            memory_mb: default_plugin_memory(),
            max_instances: default_instances(),
            policy: default_policy(),
            watch: true,
        }
    }
}

/// A named plugin: `[plugin.NAME]`. A name used by a trunk without such a table is the module
/// of that name with no settings and the default policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The module (`MODULE.wasm` in the plugin directory, or a bundled plugin); default: the
    /// plugin's name.
    pub module: Option<Spanned<String>>,
    pub policy: Option<Policy>,
    pub deadline_ms: Option<u64>,
    /// Settings handed to the plugin: strings, numbers, booleans, or arrays of them.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: Spanned<String>,
    /// Bearer token for every admin route; required when `listen` is not a loopback address.
    pub token: Option<Spanned<String>>,
    /// Seconds a drain lets calls go on before ending them (default 30).
    #[serde(default = "default_drain")]
    pub drain_seconds: u64,
}

fn default_drain() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSettings {
    /// RFC 3261 T1 in milliseconds.
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
    /// Largest message accepted, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Most calls in progress at once; further INVITEs get 503.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Value of the User-Agent and Server headers Sluice writes; empty to write none.
    #[serde(default = "default_agent")]
    pub user_agent: String,
}

fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}
fn default_max_message() -> usize {
    65_535
}
fn default_max_calls() -> usize {
    100_000
}
fn default_agent() -> String {
    "Sluice".into()
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            t1_ms: default_t1(),
            t2_ms: default_t2(),
            t4_ms: default_t4(),
            max_message_bytes: default_max_message(),
            max_calls: default_max_calls(),
            user_agent: default_agent(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub transport: TransportName,
    pub address: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    pub listen: Vec<Listener>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub host: Spanned<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_transport")]
    pub transport: TransportName,
}

fn default_port() -> u16 {
    5060
}
fn default_transport() -> TransportName {
    TransportName::Udp
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: Spanned<String>,
    pub host: Spanned<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_transport")]
    pub transport: TransportName,
    /// The brand plugin (`generic` when the provider has none; empty for no brand plugin).
    #[serde(default = "default_brand")]
    pub brand: Spanned<String>,
    /// Rule-set plugins for messages sent to the trunk, in order (they run before the brand).
    #[serde(default)]
    pub outbound_rules: Vec<Spanned<String>>,
    /// Rule-set plugins for messages received from the trunk, in order (after the brand).
    #[serde(default)]
    pub inbound_rules: Vec<Spanned<String>>,
}

fn default_brand() -> Spanned<String> {
    Spanned::new(0..0, "generic".to_string())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Calls from the PBX go to this trunk. Calls from a trunk go to the PBX.
    pub outbound_trunk: Spanned<String>,
}

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message),
            (Some(l), None) => write!(f, "{}:{}: {}", self.file, l, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The bundled default configuration.
    pub fn bundled() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME)
    }

    /// Parse and validate text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<Range<usize>>, message: String| {
            let (line, column) = match span {
                Some(s) => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError {
                file: file.to_string(),
                line,
                column,
                message,
            }
        };
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            err(e.span(), msg)
        })?;
        for side in [&cfg.internal, &cfg.external] {
            if side.listen.is_empty() {
                return Err(err(None, "a side needs at least one `listen` entry".into()));
            }
            for l in &side.listen {
                l.address
                    .get_ref()
                    .parse::<SocketAddr>()
                    .map_err(|_| {
                        err(
                            Some(l.address.span()),
                            format!(
                                "`{}` is not an IP address with a port (e.g. 127.0.0.1:5060 or [::1]:5060)",
                                l.address.get_ref()
                            ),
                        )
                    })?;
            }
        }
        if cfg.pbx.host.get_ref().trim().is_empty() {
            return Err(err(Some(cfg.pbx.host.span()), "pbx host is empty".into()));
        }
        for (i, t) in cfg.trunks.iter().enumerate() {
            let name = t.name.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(
                    Some(t.name.span()),
                    format!("trunk name `{name}` must be letters, digits, `-` or `_`"),
                ));
            }
            if cfg.trunks.iter().take(i).any(|o| o.name.get_ref() == name) {
                return Err(err(
                    Some(t.name.span()),
                    format!("trunk name `{name}` is used twice"),
                ));
            }
            if t.host.get_ref().trim().is_empty() {
                return Err(err(Some(t.host.span()), "trunk host is empty".into()));
            }
        }
        let target = cfg.routing.outbound_trunk.get_ref();
        if !cfg.trunks.iter().any(|t| t.name.get_ref() == target) {
            return Err(err(
                Some(cfg.routing.outbound_trunk.span()),
                format!("routing.outbound_trunk names `{target}`, but no trunk has that name"),
            ));
        }
        let socket = |s: &Spanned<String>, what: &str| -> Result<SocketAddr, ConfigError> {
            s.get_ref().parse::<SocketAddr>().map_err(|_| {
                err(
                    Some(s.span()),
                    format!("{what} `{}` is not an IP address with a port", s.get_ref()),
                )
            })
        };
        if let Some(a) = &cfg.admin {
            let addr = socket(&a.listen, "admin.listen")?;
            match &a.token {
                Some(t) if t.get_ref().len() < 16 => {
                    return Err(err(
                        Some(t.span()),
                        "admin.token must be at least 16 characters".into(),
                    ))
                }
                None if !addr.ip().is_loopback() => {
                    return Err(err(
                        Some(a.listen.span()),
                        format!("admin.listen `{addr}` is not a loopback address: set admin.token"),
                    ))
                }
                _ => {}
            }
        }
        if let Some(m) = &cfg.metrics {
            socket(&m.listen, "metrics.listen")?;
        }
        let plugin_name = |s: &Spanned<String>, what: &str| -> Result<(), ConfigError> {
            let n = s.get_ref();
            if n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(
                    Some(s.span()),
                    format!("{what} `{n}` must be letters, digits, `-` or `_`"),
                ));
            }
            Ok(())
        };
        for t in &cfg.trunks {
            // An empty brand runs no brand plugin.
            if !t.brand.get_ref().is_empty() {
                plugin_name(&t.brand, "brand")?;
            }
            for r in t.outbound_rules.iter().chain(&t.inbound_rules) {
                plugin_name(r, "rule set")?;
            }
        }
        for (name, entry) in &cfg.plugin {
            if let Some(m) = &entry.module {
                plugin_name(m, "plugin module")?;
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(
                    None,
                    format!("plugin name `{name}` must be letters, digits, `-` or `_`"),
                ));
            }
            for (key, value) in &entry.settings {
                if setting_values(value).is_none() {
                    return Err(err(
                        None,
                        format!(
                            "plugin.{name}.settings.{key}: settings are strings, numbers, \
                             booleans or arrays of them"
                        ),
                    ));
                }
            }
            if let Some(d) = entry.deadline_ms {
                in_range(
                    &format!("plugin.{name}.deadline_ms"),
                    d,
                    1,
                    MAX_PLUGIN_DEADLINE_MS,
                )
                .map_err(|m| err(None, m))?;
            }
        }
        check_numbers(&cfg).map_err(|m| err(None, m))?;
        Ok(cfg)
    }

    /// The admin API address (validated at load).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|a| a.listen.get_ref().parse().ok())
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|m| m.listen.get_ref().parse().ok())
    }

    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name.get_ref() == name)
    }
}

/// `Err` naming the key and its range when `value` is outside `min..=max`.
fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), String> {
    if value < min || value > max {
        return Err(format!("{key} is {value}; it must be {min} to {max}"));
    }
    Ok(())
}

/// Every number of the configuration within a sane range: each one ends up in a timer, a buffer
/// size or a count, where an absurd value would overflow or exhaust something.
fn check_numbers(cfg: &Config) -> Result<(), String> {
    let sip = &cfg.sip;
    in_range("sip.t1_ms", sip.t1_ms, 1, 10_000)?;
    in_range("sip.t2_ms", sip.t2_ms, sip.t1_ms, 60_000)?;
    in_range("sip.t4_ms", sip.t4_ms, 1, 60_000)?;
    in_range(
        "sip.max_message_bytes",
        sip.max_message_bytes,
        1024,
        MAX_MESSAGE_BYTES,
    )?;
    in_range("sip.max_calls", sip.max_calls, 1, 10_000_000)?;
    if sip.user_agent.len() > 128 || sip.user_agent.chars().any(char::is_control) {
        return Err(
            "sip.user_agent must be at most 128 characters, without control characters".into(),
        );
    }
    in_range("pbx.port", cfg.pbx.port, 1, u16::MAX)?;
    for t in &cfg.trunks {
        in_range(
            &format!("port of trunk `{}`", t.name.get_ref()),
            t.port,
            1,
            u16::MAX,
        )?;
    }
    if let Some(a) = &cfg.admin {
        in_range("admin.drain_seconds", a.drain_seconds, 0, MAX_DRAIN_SECONDS)?;
        if let Some(t) = &a.token {
            let t = t.get_ref();
            if t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("admin.token must be at most 1024 visible ASCII characters".into());
            }
        }
    }
    let p = &cfg.plugins;
    in_range(
        "plugins.deadline_ms",
        p.deadline_ms,
        1,
        MAX_PLUGIN_DEADLINE_MS,
    )?;
    in_range("plugins.memory_mb", p.memory_mb, 1, 4096)?;
    in_range("plugins.max_instances", p.max_instances, 1, 100_000)?;
    Ok(())
}

impl Listener {
    /// Validated at load time.
    pub fn socket_addr(&self) -> SocketAddr {
        self.address
            .get_ref()
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }
}

/// A plugin setting as the strings a plugin reads: one for a scalar, one per element for an
/// array; `None` for tables and nested arrays.
pub fn setting_values(v: &toml::Value) -> Option<Vec<String>> {
    fn scalar(v: &toml::Value) -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Datetime(d) => Some(d.to_string()),
            _ => None,
        }
    }
    match v {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

impl PluginEntry {
    /// The settings as plugins read them.
    pub fn setting_lists(&self) -> BTreeMap<String, Vec<String>> {
        self.settings
            .iter()
            .filter_map(|(k, v)| setting_values(v).map(|v| (k.clone(), v)))
            .collect()
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.as_bytes().get(..offset).unwrap_or_default();
    let line = before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p.saturating_add(1));
    (
        line.saturating_add(1),
        offset.saturating_sub(line_start).saturating_add(1),
    )
}

/// Where a config file was loaded from, for reloads and messages.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_default_is_valid() {
        let c = Config::bundled().unwrap();
        assert_eq!(c.routing.outbound_trunk.get_ref(), "loop");
        assert_eq!(c.pbx.host.get_ref(), "127.0.0.10");
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let text = DEFAULT_CONFIG.replace("[pbx]\n", "[pbx]\ncolour = \"blue\"\n");
        let e = Config::parse(&text, "lab.toml").unwrap_err();
        let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
        assert_eq!(e.line, Some(line));
        assert!(e.message.contains("colour"), "{e}");
        assert!(e.to_string().starts_with(&format!("lab.toml:{line}:")));
    }

    #[test]
    fn unknown_trunk_in_route_is_named() {
        let text = DEFAULT_CONFIG.replace("outbound_trunk = \"loop\"", "outbound_trunk = \"nope\"");
        let e = Config::parse(&text, "lab.toml").unwrap_err();
        assert!(e.message.contains("nope"), "{e}");
        let line = text.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
        assert_eq!(e.line, Some(line));
    }

    #[test]
    fn bad_listen_address() {
        let text =
            DEFAULT_CONFIG.replacen("address = \"127.0.0.1:5060\"", "address = \"127.0.0.1\"", 1);
        let e = Config::parse(&text, "lab.toml").unwrap_err();
        assert!(e.message.contains("not an IP address"), "{e}");
        assert!(e.line.is_some());
    }

    #[test]
    fn admin_off_loopback_needs_a_token() {
        let text =
            DEFAULT_CONFIG.replace("listen = \"127.0.0.1:9060\"", "listen = \"0.0.0.0:9060\"");
        assert_ne!(text, DEFAULT_CONFIG);
        let e = Config::parse(&text, "lab.toml").unwrap_err();
        assert!(e.message.contains("admin.token"), "{e}");
        let with_token = text.replace(
            "listen = \"0.0.0.0:9060\"",
            "listen = \"0.0.0.0:9060\"\ntoken = \"0123456789abcdef0123\"",
        );
        assert!(Config::parse(&with_token, "lab.toml").is_ok());
    }

    #[test]
    fn plugins_and_chains() {
        let text = DEFAULT_CONFIG
            .replace(
                "brand = \"generic\"",
                "brand = \"twilio\"\noutbound_rules = [\"tel-uri-request\", \"acme\"]",
            )
            .replace(
                "[routing]",
                "[plugin.acme]\nmodule = \"header-rules\"\npolicy = \"fail-closed\"\n\
                 settings = { rules = [\"add X-A: 1\"], n = 3 }\n\n[routing]",
            );
        let c = Config::parse(&text, "lab.toml").unwrap();
        let t = c.trunk("loop").unwrap();
        assert_eq!(t.brand.get_ref(), "twilio");
        assert_eq!(t.outbound_rules.len(), 2);
        let acme = &c.plugin["acme"];
        assert_eq!(acme.policy, Some(Policy::FailClosed));
        let s = acme.setting_lists();
        assert_eq!(s["rules"], ["add X-A: 1"]);
        assert_eq!(s["n"], ["3"]);
        // The default brand is generic.
        assert_eq!(
            Config::bundled().unwrap().trunks[0].brand.get_ref(),
            "generic"
        );
        let bad = text.replace("policy = \"fail-closed\"", "policy = \"sometimes\"");
        let e = Config::parse(&bad, "lab.toml").unwrap_err();
        assert!(e.line.is_some() && e.message.contains("sometimes"), "{e}");
        let bad = text.replace("n = 3", "n = { deep = 1 }");
        assert!(Config::parse(&bad, "lab.toml").is_err());
    }

    #[test]
    fn every_number_is_bounded_and_named() {
        // (replace this, with that) → an error naming `key`; the value one inside the range works.
        let cases: &[(&str, &str, &str, &str)] = &[
            ("t1_ms = 500", "t1_ms = 0", "t1_ms = 4000", "sip.t1_ms"),
            (
                "t1_ms = 500",
                "t1_ms = 18446744073709551615",
                "t1_ms = 1",
                "sip.t1_ms",
            ),
            (
                "t1_ms = 500",
                "t1_ms = 500\nt2_ms = 400",
                "t1_ms = 500\nt2_ms = 500",
                "sip.t2_ms",
            ),
            (
                "t1_ms = 500",
                "t1_ms = 500\nt2_ms = 60001",
                "t1_ms = 500\nt2_ms = 60000",
                "sip.t2_ms",
            ),
            (
                "t1_ms = 500",
                "t1_ms = 500\nt4_ms = 0",
                "t1_ms = 500\nt4_ms = 60000",
                "sip.t4_ms",
            ),
            (
                "max_message_bytes = 65535",
                "max_message_bytes = 18446744073709551615",
                "max_message_bytes = 1024",
                "sip.max_message_bytes",
            ),
            (
                "max_message_bytes = 65535",
                "max_message_bytes = 65536",
                "max_message_bytes = 65535",
                "sip.max_message_bytes",
            ),
            (
                "max_calls = 100000",
                "max_calls = 0",
                "max_calls = 1",
                "sip.max_calls",
            ),
            (
                "max_calls = 100000",
                "max_calls = 10000001",
                "max_calls = 10000000",
                "sip.max_calls",
            ),
            (
                "port = 5060\ntransport = \"udp\"\n\n[[trunk]]",
                "port = 0\ntransport = \"udp\"\n\n[[trunk]]",
                "port = 1\ntransport = \"udp\"\n\n[[trunk]]",
                "pbx.port",
            ),
            (
                "drain_seconds = 30",
                "drain_seconds = 18446744073709551615",
                "drain_seconds = 86400",
                "admin.drain_seconds",
            ),
            (
                "drain_seconds = 30",
                "drain_seconds = 86401",
                "drain_seconds = 0",
                "admin.drain_seconds",
            ),
            (
                "[routing]",
                "[plugins]\ndeadline_ms = 1001\n\n[routing]",
                "[plugins]\ndeadline_ms = 1000\n\n[routing]",
                "plugins.deadline_ms",
            ),
            (
                "[routing]",
                "[plugins]\ndeadline_ms = 18446744073709551615\n\n[routing]",
                "[plugins]\ndeadline_ms = 1\n\n[routing]",
                "plugins.deadline_ms",
            ),
            (
                "[routing]",
                "[plugin.x]\ndeadline_ms = 5000\n\n[routing]",
                "[plugin.x]\ndeadline_ms = 1000\n\n[routing]",
                "plugin.x.deadline_ms",
            ),
            (
                "[routing]",
                "[plugins]\nmemory_mb = 4097\n\n[routing]",
                "[plugins]\nmemory_mb = 4096\n\n[routing]",
                "plugins.memory_mb",
            ),
            (
                "[routing]",
                "[plugins]\nmax_instances = 0\n\n[routing]",
                "[plugins]\nmax_instances = 100000\n\n[routing]",
                "plugins.max_instances",
            ),
        ];
        for (from, bad, good, key) in cases {
            assert!(DEFAULT_CONFIG.contains(from), "{from}");
            let text = DEFAULT_CONFIG.replacen(from, bad, 1);
            let e = Config::parse(&text, "lab.toml").expect_err(bad);
            assert!(e.message.contains(key), "{bad}: {e}");
            let text = DEFAULT_CONFIG.replacen(from, good, 1);
            if let Err(e) = Config::parse(&text, "lab.toml") {
                panic!("{good}: {e}");
            }
        }
        let bad_agent =
            DEFAULT_CONFIG.replace("user_agent = \"Sluice\"", "user_agent = \"a\\u0000b\"");
        let e = Config::parse(&bad_agent, "lab.toml").unwrap_err();
        assert!(e.message.contains("sip.user_agent"), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = Config::parse("[pbx\nhost=1", "x.toml").unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
