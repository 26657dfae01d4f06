//! Sluice's configuration file (TOML). Unknown keys are errors; every error names the file, the
//! line and what is wrong. Values are typed as they are read (addresses are socket addresses,
//! names are checked, numbers bounded), so that nothing downstream parses them again.
//!
//! One module per section, each with its check: [`sip`] (`[sip]`), [`sides`] (`[internal]`,
//! `[external]`, `[pbx]`), [`trunk`] (`[[trunk]]`, `[routing]`), [`tenant`] (`[[tenant]]`), [`admin`] (`[admin]`,
//! `[metrics]`), [`media`] (`[media]`), [`guard`] (`[guard]`), [`plugins`] (`[plugins]`, `[plugin.NAME]`); [`validate`]
//! holds what they share.

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

pub mod address;
pub mod admin;
pub mod dns;
pub mod guard;
pub mod media;
pub mod plugins;
pub mod sides;
pub mod sip;
pub mod stir;
pub mod tenant;
pub mod tls;
pub mod trunk;
pub mod validate;

pub use address::SocketAddress;
pub use admin::{Admin, Metrics, MAX_DRAIN_SECONDS};
pub use dns::DnsSettings;
pub use guard::GuardSettings;
pub use media::{LatchingName, MediaSettings, ResolvedSide};
pub use plugins::{setting_values, PluginEntry, PluginsSettings, Policy, MAX_PLUGIN_DEADLINE_MS};
pub use sides::{Listener, Peer, Side, TransportName};
pub use sip::{SipSettings, StrangerPolicy, MAX_MESSAGE_BYTES};
pub use trunk::{Cidr, Destination, DestinationSpec, MediaMode, Routing, Trunk, TrunkKind};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use validate::Problem;

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
    /// The PBX's tenants: their DIDs on each trunk and their outbound routes.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<tenant::Tenant>,
    /// The admin HTTP API; absent means no admin API.
    pub admin: Option<Admin>,
    /// A separate address for Prometheus to scrape `/metrics` without a token.
    pub metrics: Option<Metrics>,
    /// Media anchoring: addresses, port ranges, latching, timeouts.
    #[serde(default)]
    pub media: MediaSettings,
    /// Resolution of trunk host names (RFC 3263) and its refresh.
    #[serde(default)]
    pub dns: DnsSettings,
    /// Flood protection: per-source request limits and bans.
    #[serde(default)]
    pub guard: GuardSettings,
    /// Plugin host settings: where plugin files are, limits, the default failure policy.
    #[serde(default)]
    pub plugins: PluginsSettings,
    /// Named plugins: a module with its settings and policy (`[plugin.NAME]`).
    #[serde(default, rename = "plugin")]
    pub plugin: BTreeMap<String, PluginEntry>,
    /// STIR/SHAKEN: the key and certificate calls are signed with.
    #[serde(default)]
    pub stir: stir::StirSettings,
    /// SIP over TLS: the listeners' certificate, the trunks' certificate authorities.
    #[serde(default)]
    pub tls: tls::TlsSettings,
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

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// Sluice runs on the bundled configuration: there is no file to reload.
    NoFile,
    /// The file cannot be read or is not a valid configuration.
    Config(ConfigError),
    /// A host name does not resolve, or a peer has no listener for its transport.
    Resolve { file: String, reason: String },
    /// A plugin cannot be loaded or fails its self-check.
    Plugin { file: String, reason: String },
    /// Settings that only a restart applies were changed (named).
    NeedsRestart {
        file: String,
        keys: Vec<&'static str>,
    },
    /// The engine refused the change, or is not running.
    Engine(String),
}

impl ReloadError {
    /// A short name for the kind of refusal (log fields, API answers).
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadError::NoFile => "no-file",
            ReloadError::Config(_) => "config",
            ReloadError::Resolve { .. } => "resolve",
            ReloadError::Plugin { .. } => "plugin",
            ReloadError::NeedsRestart { .. } => "needs-restart",
            ReloadError::Engine(_) => "engine",
        }
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::NoFile => {
                f.write_str("running on the bundled configuration: there is no file to reload")
            }
            ReloadError::Config(e) => e.fmt(f),
            ReloadError::Resolve { file, reason } | ReloadError::Plugin { file, reason } => {
                write!(f, "{file}: {reason}")
            }
            ReloadError::NeedsRestart { file, keys } => write!(
                f,
                "{file}: {} cannot change while Sluice runs (restart to apply); the running \
                 configuration stays",
                keys.join(", ")
            ),
            ReloadError::Engine(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ReloadError {}

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
        let error = |p: Problem| {
            let (line, column) = match p.span {
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
                message: p.message,
            }
        };
        let cfg: Config = toml::from_str(text).map_err(|e| {
            error(Problem {
                span: e.span(),
                message: e.message().trim().to_string(),
            })
        })?;
        cfg.check().map_err(error)?;
        Ok(cfg)
    }

    /// Every section's check, in the order of the file.
    fn check(&self) -> Result<(), Problem> {
        self.sip.check()?;
        self.internal.check("internal")?;
        self.external.check("external")?;
        self.pbx.check()?;
        trunk::check_trunks(&self.trunks)?;
        self.stir.check()?;
        let tls_listeners = self
            .internal
            .listen
            .iter()
            .chain(&self.external.listen)
            .any(|l| l.transport == TransportName::Tls);
        self.tls.check(tls_listeners)?;
        for t in &self.trunks {
            t.stir.check(&self.stir, t.name.get_ref())?;
        }
        self.routing.check(&self.trunks, !self.tenants.is_empty())?;
        tenant::check_tenants(&self.tenants, &self.trunks)?;
        let anchored = self.trunks.iter().any(|t| t.media == MediaMode::Anchor);
        self.media.check(
            (&self.internal, &self.external),
            self.sip.max_calls,
            anchored,
        )?;
        if let Some(a) = &self.admin {
            a.check()?;
        }
        self.check_http_listeners()?;
        self.plugins.check()?;
        self.dns.check()?;
        self.guard.check()?;
        for (name, entry) in &self.plugin {
            entry.check(name)?;
        }
        Ok(())
    }

    /// The admin and metrics listeners may share no address with each other or with SIP.
    fn check_http_listeners(&self) -> Result<(), Problem> {
        use std::net::SocketAddr;
        let clash = |a: SocketAddr, b: SocketAddr| {
            a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        let sip: Vec<SocketAddr> = self
            .internal
            .listen
            .iter()
            .chain(&self.external.listen)
            .map(Listener::addr)
            .collect();
        let http = [
            self.admin
                .as_ref()
                .map(|a| ("admin.listen", a.listen.span(), a.addr())),
            self.metrics
                .as_ref()
                .map(|m| ("metrics.listen", m.listen.span(), m.addr())),
        ];
        for (key, span, addr) in http.iter().flatten() {
            if let Some(s) = sip.iter().find(|s| clash(**s, *addr)) {
                return Err(Problem::at(
                    span.clone(),
                    format!("{key} `{addr}` is also a SIP listen address (`{s}`)"),
                ));
            }
        }
        if let [Some((_, _, a)), Some((key, span, m))] = &http {
            if clash(*a, *m) {
                return Err(Problem::at(
                    span.clone(),
                    format!("{key} `{m}` is the admin API's address too (`{a}`)"),
                ));
            }
        }
        Ok(())
    }

    /// The admin API address.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(Metrics::addr)
    }

    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name.get_ref() == name)
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
