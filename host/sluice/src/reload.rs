//! Loading and reloading: the configuration and the plugins are prepared together off the
//! engine's task (read, validate, resolve names, compile and self-check plugins), then swapped
//! in at once between two messages. Anything wrong refuses the whole reload and the running
//! version stays. Triggers: SIGHUP, `POST /reload`, and changes to the configuration file or
//! the plugin directory (watched, debounced).

use crate::resolve;
use sluice_admin::{AdminSettings, SharedSettings};
use sluice_b2bua::{Destination, Engine, EngineConfig};
use sluice_config::{Config, ReloadError, TransportName};
use sluice_plugins::{GenerationSpec, Limits, ModuleSource, PluginHost, Runtime};
use sluice_transport::Change;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// How long the watcher waits for a burst of file events to settle.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The admin settings a configuration (and `--drain-seconds`, which wins) asks for.
pub fn admin_settings(cfg: &Config, cli_drain: Option<u64>) -> AdminSettings {
    let admin = cfg.admin.as_ref();
    AdminSettings {
        token: admin.and_then(|a| a.token.as_ref().map(|t| t.get_ref().clone())),
        drain_deadline: Duration::from_secs(
            cli_drain.or(admin.map(|a| a.drain_seconds)).unwrap_or(30),
        ),
        upgrade_deadline: Duration::from_secs(admin.map_or(14_400, |a| a.upgrade_seconds)),
    }
}

/// The plugin limits a configuration asks for.
pub fn limits(cfg: &Config) -> Limits {
    Limits {
        deadline: Duration::from_millis(cfg.plugins.deadline_ms),
        // memory_mb is at most 4096 (checked at load): the product fits any 64-bit usize.
        memory_bytes: usize::try_from(cfg.plugins.memory_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        max_instances: cfg.plugins.max_instances,
    }
}

/// Modules from the configuration's plugin directory, then the bundled ones.
pub fn module_source(cfg: &Config, path: Option<&Path>) -> ModuleSource<'static> {
    ModuleSource {
        dir: sluice_plugins::plugin_dir(cfg, path),
        bundled: &sluice_bundled::get,
        bundled_names: sluice_bundled::names().collect(),
    }
}

/// Everything a configuration turns into: the engine's view and the plugin generation.
pub struct Prepared {
    pub config: Config,
    pub engine: EngineConfig,
    pub plugins: GenerationSpec,
    pub hash: String,
    /// When the DNS answers in `engine` should be looked up again.
    pub dns_ttl: Option<Duration>,
    /// SIP over TLS, when a listener or a trunk uses it.
    pub tls: Option<sluice_transport::tls::TlsContext>,
    /// When its certificates expire: exported once the configuration is running.
    pub tls_expiries: crate::sip_tls::Expiries,
}

/// Validate, resolve and load a configuration's text (blocking: file reads, DNS, compiling).
pub fn prepare(
    runtime: &Arc<Runtime>,
    text: &str,
    path: Option<&Path>,
    name: &str,
) -> Result<Prepared, ReloadError> {
    let config = Config::parse(text, name).map_err(ReloadError::Config)?;
    prepare_config(runtime, config, text, path, name)
}

/// What a parsed configuration turns into (blocking: DNS, compiling and self-checking plugins).
fn prepare_config(
    runtime: &Arc<Runtime>,
    config: Config,
    text: &str,
    path: Option<&Path>,
    name: &str,
) -> Result<Prepared, ReloadError> {
    let mut resolved = resolve::resolve_config(&config).map_err(|e| ReloadError::Resolve {
        file: name.to_string(),
        reason: format!("{e:#}"),
    })?;
    crate::stir::load(&config, path, &mut resolved.engine).map_err(|e| ReloadError::Resolve {
        file: name.to_string(),
        reason: format!("{e:#}"),
    })?;
    let mut tls_expiries = Vec::new();
    let tls = crate::sip_tls::context(&config, path, &resolved.engine, &mut tls_expiries);
    let tls = tls.map_err(|message| {
        ReloadError::Config(sluice_config::ConfigError {
            file: name.to_string(),
            line: None,
            column: None,
            message,
        })
    })?;
    let plugins = sluice_plugins::prepare(runtime, &config, &module_source(&config, path))
        .map_err(|reason| ReloadError::Plugin {
            file: name.to_string(),
            reason,
        })?;
    Ok(Prepared {
        config,
        engine: resolved.engine,
        plugins,
        hash: crate::hash(text),
        dns_ttl: resolved.dns_ttl,
        tls,
        tls_expiries,
    })
}

/// What a reload needs; shared by every trigger.
pub struct Reloader {
    pub path: Option<PathBuf>,
    pub changes: mpsc::Sender<Change<PluginHost>>,
    pub config_hash: Arc<Mutex<String>>,
    pub load_error: Arc<Mutex<Option<String>>>,
    pub runtime: Arc<Runtime>,
    /// What the running process was started with and cannot change without a restart.
    pub fixed: Fixed,
    /// The admin settings, replaced by a reload that changes them.
    pub settings: SharedSettings,
    /// `--drain-seconds`, which overrides `admin.drain_seconds` in every configuration.
    pub cli_drain: Option<u64>,
    /// One reload at a time.
    pub busy: tokio::sync::Mutex<()>,
    /// The configuration in force and what its DNS answers gave, for the refresh.
    pub dns: Mutex<DnsState>,
    /// The TLS in force: a reload gives it its new certificate and peers.
    pub tls: Option<sluice_transport::tls::TlsContext>,
}

/// What the DNS refresh needs: the configuration in force, when to look again, and the trunk
/// destinations its last answers gave.
pub struct DnsState {
    config: Config,
    ttl: Option<Duration>,
    destinations: Vec<Vec<Destination>>,
}

impl DnsState {
    pub fn new(config: Config, ttl: Option<Duration>, engine: &EngineConfig) -> DnsState {
        DnsState {
            config,
            ttl,
            destinations: destinations(engine),
        }
    }
}

fn destinations(engine: &EngineConfig) -> Vec<Vec<Destination>> {
    engine
        .trunks
        .iter()
        .map(|t| t.destinations.clone())
        .collect()
}

/// The settings a running process keeps until it restarts: sockets it bound, buffers it sized,
/// the plugin runtime it built. A reload that changes one is refused, naming it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fixed {
    internal: Vec<(TransportName, SocketAddr)>,
    external: Vec<(TransportName, SocketAddr)>,
    admin_listen: Option<SocketAddr>,
    admin_tls: Option<(String, String)>,
    metrics_listen: Option<SocketAddr>,
    max_message_bytes: usize,
    memory_bytes: usize,
    max_instances: u32,
    plugin_dir: Option<PathBuf>,
    watch: bool,
    media_internal: (std::net::IpAddr, std::net::IpAddr, u16, u16),
    media_external: (std::net::IpAddr, std::net::IpAddr, u16, u16),
    media_workers: usize,
    media_kernel: bool,
    tcp_limits: (usize, usize, u64, u64),
}

impl Fixed {
    pub fn of(cfg: &Config, path: Option<&Path>) -> Fixed {
        let listeners = |side: &sluice_config::Side| {
            side.listen
                .iter()
                .map(|l| (l.transport, l.addr()))
                .collect()
        };
        let limits = limits(cfg);
        let (mi, me) = cfg.media.resolve(&cfg.internal, &cfg.external);
        let side =
            |s: sluice_config::ResolvedSide| (s.bind, s.advertise, s.first_port, s.last_port);
        Fixed {
            media_internal: side(mi),
            media_external: side(me),
            media_workers: cfg.media.workers,
            media_kernel: cfg.media.kernel_forwarding,
            tcp_limits: (
                cfg.sip.max_connections,
                cfg.sip.max_connections_per_source,
                cfg.sip.tcp_first_message_seconds,
                cfg.sip.tcp_keepalive_seconds,
            ),
            internal: listeners(&cfg.internal),
            external: listeners(&cfg.external),
            admin_listen: cfg.admin_addr(),
            admin_tls: cfg.admin.as_ref().and_then(|a| {
                Some((
                    a.tls_certificate.as_ref()?.get_ref().clone(),
                    a.tls_key.as_ref()?.get_ref().clone(),
                ))
            }),
            metrics_listen: cfg.metrics_addr(),
            max_message_bytes: cfg.sip.max_message_bytes,
            memory_bytes: limits.memory_bytes,
            max_instances: limits.max_instances,
            plugin_dir: sluice_plugins::plugin_dir(cfg, path),
            watch: cfg.plugins.watch,
        }
    }

    /// The configuration keys whose values differ between `self` and `new`.
    pub fn changed(&self, new: &Fixed) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut check = |differs: bool, key: &'static str| {
            if differs {
                keys.push(key);
            }
        };
        check(self.internal != new.internal, "internal.listen");
        check(self.external != new.external, "external.listen");
        check(self.admin_listen != new.admin_listen, "admin.listen");
        check(
            self.admin_tls != new.admin_tls,
            "admin.tls_certificate, admin.tls_key",
        );
        check(self.metrics_listen != new.metrics_listen, "metrics.listen");
        check(
            self.max_message_bytes != new.max_message_bytes,
            "sip.max_message_bytes",
        );
        check(self.memory_bytes != new.memory_bytes, "plugins.memory_mb");
        check(
            self.max_instances != new.max_instances,
            "plugins.max_instances",
        );
        check(self.plugin_dir != new.plugin_dir, "plugins.dir");
        check(self.watch != new.watch, "plugins.watch");
        check(self.media_internal != new.media_internal, "media.internal");
        check(self.media_external != new.media_external, "media.external");
        check(self.media_workers != new.media_workers, "media.workers");
        check(
            self.media_kernel != new.media_kernel,
            "media.kernel_forwarding",
        );
        check(
            self.tcp_limits != new.tcp_limits,
            "sip.max_connections, max_connections_per_source, tcp_first_message_seconds, \
             tcp_keepalive_seconds",
        );
        keys
    }
}

impl Reloader {
    /// Re-read the configuration file and the plugins and apply them; the new configuration's
    /// hash, or why the running version stays.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<String, ReloadError> {
        let _one = self.busy.lock().await;
        crate::systemd::reloading(false);
        let r = self.reload_inner().await;
        crate::systemd::reloading(true);
        let result = if r.is_ok() { "success" } else { "failure" };
        metrics::counter!("sluice_config_reloads_total", "result" => result).increment(1);
        match &r {
            Ok(hash) => {
                info!(trigger = why, %hash, "reload applied");
                if let Ok(mut e) = self.load_error.lock() {
                    *e = None;
                }
            }
            Err(e) => {
                warn!(
                    trigger = why,
                    kind = e.kind(),
                    "reload refused, the running version stays: {e}"
                );
                if let Ok(mut slot) = self.load_error.lock() {
                    *slot = Some(e.to_string());
                }
            }
        }
        r
    }

    async fn reload_inner(self: &Arc<Self>) -> Result<String, ReloadError> {
        let Some(path) = self.path.clone() else {
            return Err(ReloadError::NoFile);
        };
        let me = self.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ReloadError::Config(sluice_config::ConfigError {
                    file: name.clone(),
                    line: None,
                    column: None,
                    message: format!("cannot read: {e}"),
                })
            })?;
            let config = Config::parse(&text, &name).map_err(ReloadError::Config)?;
            // Refused before anything is compiled or resolved.
            let keys = me.fixed.changed(&Fixed::of(&config, Some(&path)));
            if !keys.is_empty() {
                return Err(ReloadError::NeedsRestart { file: name, keys });
            }
            prepare_config(&me.runtime, config, &text, Some(&path), &name)
        })
        .await
        .map_err(|e| ReloadError::Engine(format!("reload task failed: {e}")))??;
        let Prepared {
            config,
            engine,
            plugins,
            hash,
            dns_ttl,
            tls,
            tls_expiries,
        } = prepared;
        if self.tls.is_none() && tls.is_some() {
            return Err(ReloadError::NeedsRestart {
                file: path_name(self.path.as_deref()),
                keys: vec!["the first TLS listener or TLS trunk"],
            });
        }
        let settings = admin_settings(&config, self.cli_drain);
        let dns = DnsState::new(config, dns_ttl, &engine);
        let (tx, rx) = oneshot::channel();
        let change: sluice_transport::EngineChange<PluginHost> = Box::new(move |e| {
            e.reconfigure(engine)?;
            Ok(match install(e, plugins) {
                Some(g) => format!("plugin generation {g}"),
                None => "plugins unchanged".to_string(),
            })
        });
        self.changes
            .send(Change(change, tx))
            .await
            .map_err(|_| ReloadError::Engine("the engine is not running".into()))?;
        let what = rx
            .await
            .map_err(|_| ReloadError::Engine("the engine is not running".into()))?
            .map_err(ReloadError::Engine)?;
        if let (Some(live), Some(new)) = (&self.tls, &tls) {
            live.update(new);
        }
        crate::sip_tls::publish(&tls_expiries);
        if let Ok(mut h) = self.config_hash.lock() {
            *h = hash.clone();
        }
        if let Ok(mut d) = self.dns.lock() {
            *d = dns;
        }
        if let Ok(mut s) = self.settings.write() {
            if *s != settings {
                info!("admin settings changed (token, drain deadline)");
                *s = settings;
            }
        }
        info!("{what}");
        Ok(hash)
    }
}

impl Reloader {
    /// Look trunk host names up again when their answers' TTL ends (within
    /// `dns.refresh_min_seconds`..`refresh_max_seconds`), and give the engine the new addresses
    /// when they changed. A failed lookup keeps the addresses in use. Runs until the engine
    /// stops.
    pub async fn refresh_dns(self: Arc<Self>) {
        loop {
            let wait = match self.dns.lock() {
                Ok(d) => {
                    let s = &d.config.dns;
                    let (min, max) = (s.refresh_min_seconds, s.refresh_max_seconds);
                    d.ttl.map_or(Duration::from_secs(max), |t| {
                        t.clamp(Duration::from_secs(min), Duration::from_secs(max))
                    })
                }
                Err(_) => return,
            };
            tokio::time::sleep(wait).await;
            let _one = self.busy.lock().await;
            let Some(config) = self.dns.lock().ok().map(|d| d.config.clone()) else {
                return;
            };
            let path = self.path.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                let r = resolve::resolve_config(&config)?;
                // The names TLS destinations must prove, for the new addresses too.
                let mut expiries = Vec::new();
                let tls =
                    crate::sip_tls::context(&config, path.as_deref(), &r.engine, &mut expiries)
                        .ok()
                        .flatten();
                Ok::<_, anyhow::Error>((r, tls))
            })
            .await;
            let (resolved, tls) = match resolved {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    warn!("DNS refresh failed, the trunk addresses in use stay: {e:#}");
                    if let Ok(mut d) = self.dns.lock() {
                        // Try again after the shortest wait.
                        d.ttl = Some(Duration::ZERO);
                    }
                    continue;
                }
                Err(_) => return,
            };
            let fresh = destinations(&resolved.engine);
            let changed = match self.dns.lock() {
                Ok(mut d) => {
                    d.ttl = resolved.dns_ttl;
                    let changed = d.destinations != fresh;
                    d.destinations = fresh;
                    changed
                }
                Err(_) => return,
            };
            if !changed {
                continue;
            }
            let engine = resolved.engine;
            let (tx, rx) = oneshot::channel();
            let change: sluice_transport::EngineChange<PluginHost> = Box::new(move |e| {
                e.reconfigure(engine)?;
                Ok("trunk addresses from DNS applied".to_string())
            });
            if self.changes.send(Change(change, tx)).await.is_err() {
                return;
            }
            match rx.await {
                Ok(Ok(what)) => {
                    if let (Some(live), Some(new)) = (&self.tls, &tls) {
                        live.update_peers(new);
                    }
                    info!("{what}");
                }
                Ok(Err(e)) => warn!("DNS refresh refused by the engine: {e}"),
                Err(_) => return,
            }
        }
    }
}

/// Install a plugin generation into the engine's plugin host.
pub fn install(engine: &mut Engine<PluginHost>, spec: GenerationSpec) -> Option<u64> {
    let g = engine.hooks_mut().install(spec);
    if let Some(g) = g {
        metrics::gauge!("sluice_plugin_generation").set(g as f64);
    }
    g
}

/// A directory as the file system names it (symbolic links and `..` resolved), or as given
/// when it cannot be resolved.
fn resolved(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Watch the configuration file and the plugin directory; reload after changes settle.
/// Returns the watcher, which stops watching when dropped.
pub fn watch(reloader: Arc<Reloader>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let config = reloader.path.clone()?;
    let config_name = config.file_name()?.to_os_string();
    let config_dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let plugin_dir = reloader.fixed.plugin_dir.clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    // Compared with the directories events name, resolved the same way.
    let watched_plugins = plugin_dir.as_ref().map(|d| resolved(d));
    let watched_config_dir = resolved(&config_dir);
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = ev.paths.iter().any(|p| {
            let is_config = p.file_name() == Some(config_name.as_os_str());
            let is_plugin = watched_plugins
                .as_ref()
                .is_some_and(|d| p.parent().map(resolved).as_deref() == Some(d.as_path()))
                && p.extension().is_some_and(|e| e == "wasm");
            // Keys and certificates beside the configuration (STIR/SHAKEN).
            // Certificates and keys beside the configuration (STIR/SHAKEN, TLS).
            let is_pem = p.parent().map(resolved).as_deref() == Some(watched_config_dir.as_path())
                && p.extension().is_some_and(|e| e == "pem" || e == "key");
            is_config || is_plugin || is_pem
        });
        if relevant {
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!("cannot watch for changes (reload with SIGHUP or POST /reload): {e}");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&config_dir, RecursiveMode::NonRecursive) {
        warn!(dir = %config_dir.display(), "cannot watch the configuration's directory: {e}");
    }
    if let Some(d) = &plugin_dir {
        match watcher.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) => info!(dir = %d.display(), "watching the plugin directory"),
            Err(e) => warn!(dir = %d.display(), "cannot watch the plugin directory: {e}"),
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event came for a while (editors and copies write in
            // bursts; a rename completes a write-then-rename at once).
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = reloader.reload("file change").await;
        }
    });
    Some(watcher)
}

fn path_name(path: Option<&Path>) -> String {
    path.map_or_else(String::new, |p| p.display().to_string())
}
