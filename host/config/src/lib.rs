//! Sluice's configuration file (TOML). Unknown keys are errors; every error names the file, the
//! line and what is wrong.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

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
            if cfg.trunks[..i].iter().any(|o| o.name.get_ref() == name) {
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
        if cfg.sip.t1_ms == 0 || cfg.sip.t2_ms < cfg.sip.t1_ms {
            return Err(err(None, "sip timers need 0 < t1_ms <= t2_ms".into()));
        }
        if cfg.sip.max_message_bytes < 1024 {
            return Err(err(
                None,
                "sip.max_message_bytes must be at least 1024".into(),
            ));
        }
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

impl Listener {
    /// Validated at load time.
    pub fn socket_addr(&self) -> SocketAddr {
        self.address
            .get_ref()
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
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
    fn syntax_error_has_line() {
        let e = Config::parse("[pbx\nhost=1", "x.toml").unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
