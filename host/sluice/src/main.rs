//! The `sluice` command: `run` the SBC, `check` a configuration.

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

mod certs;
mod chain_test;
mod dns;
mod metrics_help;
mod plugin_test;
mod reload;
mod resolve;
mod route_cli;
mod sip_tls;
mod stir;
mod stir_cli;
mod systemd;
mod upgrade;

use anyhow::Context;

/// mimalloc instead of glibc's allocator: the signalling path makes and drops many small
/// messages a call, and glibc's bin consolidation showed in its profile (bench/README.md).
/// Built without its transparent-huge-page advice (`no_thp`); see [`no_huge_pages`].
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use reload::Reloader;
use sluice_admin::{AdminState, LogSetter, SharedSettings};
use sluice_b2bua::Hooks;
use sluice_config::Config;
use sluice_plugins::PluginHost;
use sluice_transport::handover::{Inherited, Listening, SocketKind};
use sluice_transport::{Change, Command, Shell, ShellOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice, a SIP Session Border Controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the SBC. Without --config, runs the bundled loopback lab (examples/loopback.toml).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log filter, e.g. `info`, `debug`, `sluice_b2bua=debug` (RUST_LOG also works).
        #[arg(long, default_value = "info")]
        log: String,
        /// Log format.
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
        /// How long a drain lets calls finish before ending them, in seconds (default: the
        /// configuration's admin.drain_seconds, else 30).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=sluice_config::MAX_DRAIN_SECONDS))]
        drain_seconds: Option<u64>,
    },
    /// Validate a configuration file, its plugins included, and exit (non-zero with
    /// file:line: message on error).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCmd,
    },
    /// What tenant routing would do with a call, without sending anything: the tenant, the
    /// numbers normalised, the route and its trunks (or the refusal). Exit 0 when routed.
    Route(route_cli::Args),
    /// STIR/SHAKEN tools: sign or verify a captured INVITE, every step printed.
    Stir {
        #[command(subcommand)]
        command: stir_cli::StirCmd,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Run a built plugin on a captured SIP message and print the message as it would leave
    /// Sluice, the verdict, and what the number and attestation hooks returned.
    Test(plugin_test::Args),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Transparent huge pages off for this process. With them, the allocator's pages come back
/// from the kernel as 2 MiB pages that are zeroed whole on their first touch, over and over
/// as pages are released and taken again: at 1,000 calls/s that zeroing was 12 to 16 % of
/// Sluice's CPU time (`clear_page_erms` in `perf`, bench/README.md). Without them, the same
/// runs took 7 to 9 % less CPU in all. A refusal (a sandbox that filters `prctl`) only leaves
/// the kernel's default. Only `sluice run` asks: the other commands are short-lived.
fn no_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("sluice: transparent huge pages stay on ({e})");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check { config } => check(&config),
        Cmd::Plugin {
            command: PluginCmd::Test(args),
        } => plugin_test::run(args),
        Cmd::Stir { command } => stir_cli::run(command),
        Cmd::Route(args) => route_cli::run(args),
        Cmd::Run {
            config,
            log,
            log_format,
            drain_seconds,
        } => {
            no_huge_pages();
            let set_log = init_logging(&log, log_format);
            install_panic_hook();
            // Resolved once, at start: the watcher, the plugin directory and every reload see
            // the same absolute paths (file events name absolute paths), whatever the working
            // directory later.
            let config = config.map(|p| std::path::absolute(&p).unwrap_or(p));
            let (cfg, text) = match &config {
                Some(p) => match std::fs::read_to_string(p) {
                    Ok(text) => (Config::parse(&text, &p.display().to_string()), text),
                    Err(e) => {
                        eprintln!("{}: cannot read: {e}", p.display());
                        return ExitCode::FAILURE;
                    }
                },
                None => (Config::bundled(), sluice_config::DEFAULT_CONFIG.to_string()),
            };
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            // One thread: the engine task reads the UDP sockets and drives the I/O itself, so a
            // datagram is never handed from thread to thread; everything else here is light.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(cfg, text, config, drain_seconds, set_log)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// SHA-256 of the configuration text, as `sha256sum` prints it.
fn hash(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sluice check`: parse, resolve and load every plugin, as a start would.
fn check(path: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let name = path.display().to_string();
    let cfg = match Config::parse(&text, &name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match sluice_plugins::Runtime::new(reload::limits(&cfg), true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = admin_tls(&cfg, Some(path)) {
        eprintln!("{name}: {e}");
        return ExitCode::FAILURE;
    }
    match reload::prepare(&runtime, &text, Some(path), &name) {
        Ok(p) => {
            println!(
                "{name}: ok ({} trunks, {} plugins)",
                p.config.trunks.len(),
                p.plugins.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status when a second stop signal abandons the drain: EX_TEMPFAIL of sysexits.h.
const EXIT_ABANDONED: i32 = 75;

/// Exit status after a panic: EX_SOFTWARE of sysexits.h, "internal software error".
const EXIT_PANIC: i32 = 70;

/// A panic is a bug (input handling is meant to be panic-free). Whatever thread it is on, log it
/// with the input being handled (redacted) and exit non-zero, so that the supervisor restarts
/// Sluice rather than leave it half alive (a dead reader task, say).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let input = sluice_transport::describe_current_input();
        let thread = std::thread::current();
        error!(
            thread = thread.name().unwrap_or("unnamed"),
            input = input.as_deref().unwrap_or("none"),
            "panic: {info}; exiting with status {EXIT_PANIC} so that the supervisor restarts Sluice"
        );
        std::process::exit(EXIT_PANIC);
    }));
}

fn init_logging(filter: &str, format: LogFormat) -> LogSetter {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    // Colours only for a terminal: log files and journals get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt_layer = match format {
        LogFormat::Human => fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .try_init();
    Arc::new(move |spec: &str| {
        let f = EnvFilter::try_new(spec).map_err(|e| format!("bad log filter `{spec}`: {e}"))?;
        handle
            .modify(|current| *current = f)
            .map_err(|e| e.to_string())?;
        info!(filter = spec, "log filter changed");
        Ok(())
    })
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    use sluice_b2bua::metrics::{CALL_DURATION, POST_DIAL_DELAY};
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(POST_DIAL_DELAY.into()),
            &[
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("sluice_plugin_call_duration_seconds".into()),
            &[
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.05,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("sluice_media_jitter_seconds".into()),
            &[0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5],
        )?
        .set_buckets_for_metric(
            Matcher::Full(CALL_DURATION.into()),
            &[
                1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ],
        )?
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Install the Prometheus recorder and keep its histograms folded in (with the process
/// metrics) every 5 s.
fn start_metrics() -> anyhow::Result<PrometheusHandle> {
    let metrics = install_metrics()?;
    let process = metrics_process::Collector::default();
    metrics_help::describe(&process);
    {
        // Histograms keep every sample until upkeep folds them in: without it, memory grows
        // with every call and plugin invocation between scrapes.
        let handle = metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
                process.collect();
            }
        });
    }
    metrics::counter!("sluice_config_reloads_total", "result" => "success").absolute(0);
    metrics::counter!("sluice_config_reloads_total", "result" => "failure").absolute(0);
    Ok(metrics)
}

/// Serve the admin API on `addr` (the old process's socket when an upgrade handed it over;
/// it joins `handed` for the next upgrade).
async fn serve_admin(
    addr: std::net::SocketAddr,
    state: AdminState,
    tls: Option<Arc<sluice_admin::tls::RustlsConfig>>,
    (inherited, handed): (&mut Inherited, &mut Vec<Listening>),
) -> anyhow::Result<tokio::task::AbortHandle> {
    let listener = http_listener(inherited, SocketKind::Admin, addr)
        .await
        .with_context(|| format!("binding the admin API on {addr}"))?;
    handed.push(Listening::of(SocketKind::Admin, addr, &listener)?);
    info!(%addr, tls = tls.is_some(), "admin API listening");
    let router = sluice_admin::router(state);
    let server = tokio::spawn(async move {
        let served = match tls {
            Some(config) => sluice_admin::serve_tls(listener, config, router).await,
            None => sluice_admin::serve(listener, router).await,
        };
        if let Err(e) = served {
            error!("admin API stopped: {e}");
        }
    });
    Ok(server.abort_handle())
}

/// Serve the metrics endpoint on `addr` (handed over as the admin API's socket is).
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: PrometheusHandle,
    (inherited, handed): (&mut Inherited, &mut Vec<Listening>),
) -> anyhow::Result<tokio::task::AbortHandle> {
    let listener = http_listener(inherited, SocketKind::Metrics, addr)
        .await
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    handed.push(Listening::of(SocketKind::Metrics, addr, &listener)?);
    info!(%addr, "metrics endpoint listening");
    let router = sluice_admin::metrics_router(metrics);
    let server = tokio::spawn(async move {
        if let Err(e) = sluice_admin::serve(listener, router).await {
            error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(server.abort_handle())
}

/// The failed TLS handshakes' counters at zero for every way and reason, so that a scrape
/// shows them before the first failure.
fn zero_handshake_failures() {
    for way in ["accepted", "opened"] {
        for reason in sluice_transport::tls::REASONS {
            metrics::counter!(sluice_transport::tls::HANDSHAKE_FAILURES, "way" => way, "reason" => reason)
                .increment(0);
        }
    }
}

/// What the shell binds and how it runs, from the configuration.
fn shell_options(
    cfg: &Config,
    path: Option<&std::path::Path>,
    (listeners, tls): (
        Vec<sluice_b2bua::ListenerAddr>,
        Option<sluice_transport::tls::TlsContext>,
    ),
    draining: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<ShellOptions> {
    Ok(ShellOptions {
        listeners,
        max_message: cfg.sip.max_message_bytes,
        media_workers: Some(media_workers(cfg.media.workers)),
        media_kernel: media_kernel(cfg),
        draining,
        certificates: Some(certificate_source(cfg, path)?),
        tls,
        tcp: sluice_transport::TcpLimits {
            max_connections: cfg.sip.max_connections,
            max_per_source: cfg.sip.max_connections_per_source,
            first_message: std::time::Duration::from_secs(cfg.sip.tcp_first_message_seconds),
            keepalive: (cfg.sip.tcp_keepalive_seconds > 0)
                .then(|| std::time::Duration::from_secs(cfg.sip.tcp_keepalive_seconds)),
        },
    })
}

async fn run(
    cfg: Config,
    text: String,
    path: Option<PathBuf>,
    cli_drain: Option<u64>,
    set_log: LogSetter,
) -> anyhow::Result<()> {
    let metrics = start_metrics()?;
    let (engine, started) = start_engine(&cfg, text, path.clone()).await?;
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Started by an upgrade: the old process's sockets (its listeners stay open throughout).
    let mut takeover = upgrade::connect().await?;
    let mut inherited: Inherited = takeover
        .as_mut()
        .map(|t| std::mem::take(&mut t.inherited))
        .unwrap_or_default();
    let mut shell = Shell::bind(
        engine,
        shell_options(
            &cfg,
            path.as_deref(),
            (started.listeners, started.tls.clone()),
            draining.clone(),
        )?,
        &mut inherited,
    )
    .await
    .context("binding listeners")?;
    let mut handed = shell.listening()?;
    let (commands, command_rx) = mpsc::channel::<Command>(64);
    let (changes, change_rx) = mpsc::channel::<Change<PluginHost>>(4);
    let config_hash = Arc::new(Mutex::new(started.hash));
    let load_error = Arc::new(Mutex::new(None));
    let settings: SharedSettings = Arc::new(RwLock::new(reload::admin_settings(&cfg, cli_drain)));
    let reloader = Arc::new(Reloader {
        fixed: reload::Fixed::of(&cfg, path.as_deref()),
        settings: settings.clone(),
        cli_drain,
        path: path.clone(),
        changes,
        config_hash: config_hash.clone(),
        load_error: load_error.clone(),
        runtime: started.runtime,
        busy: tokio::sync::Mutex::new(()),
        dns: Mutex::new(started.dns),
        tls: started.tls,
    });
    tokio::spawn(reloader.clone().refresh_dns());
    let admin = AdminState {
        commands: commands.clone(),
        settings: settings.clone(),
        reload: admin_reload(reloader.clone()),
        set_log,
        config_hash,
        metrics: metrics.clone(),
        load_error,
        auth_failures: Default::default(),
        draining: draining.clone(),
    };
    let servers = serve_http(&cfg, path.as_deref(), admin, (&mut inherited, &mut handed)).await?;
    if !inherited.is_empty() {
        info!(
            sockets = inherited.len(),
            "closing the old process's listeners this configuration no longer has"
        );
    }
    drop(inherited);
    let _watcher = cfg
        .plugins
        .watch
        .then(|| reload::watch(reloader.clone()))
        .flatten();
    upgrade::on_signal(handed, servers, commands.clone(), settings.clone());
    spawn_signal_handlers(commands.clone(), reloader, settings);
    systemd::spawn_monitor(commands.clone(), draining.clone());
    announce_running(takeover, &mut shell).await?;
    shell.run(command_rx, change_rx).await?;
    // Drained (a drain that found no call ends before the monitor polls).
    systemd::stopping();
    Ok(())
}

/// Tell systemd (and, after an upgrade, the old process, whose calls the shell adopts) that
/// Sluice is running.
async fn announce_running(
    takeover: Option<upgrade::Takeover>,
    shell: &mut Shell<PluginHost>,
) -> anyhow::Result<()> {
    match takeover {
        Some(t) => {
            let (h, mut link) = t.ready().await?;
            systemd::ready_as_main();
            sluice_transport::handover::send_took_over(&mut link)
                .context("telling the old process")?;
            shell.adopt(h, link);
            info!("sluice running (took over from the old process)");
        }
        None => {
            info!("sluice running");
            systemd::ready();
        }
    }
    Ok(())
}

/// What starting the engine leaves for the rest of the start-up.
struct Started {
    runtime: Arc<sluice_plugins::Runtime>,
    listeners: Vec<sluice_b2bua::ListenerAddr>,
    tls: Option<sluice_transport::tls::TlsContext>,
    dns: reload::DnsState,
    hash: String,
}

/// The engine of the configuration `text`, its plugins compiled and self-checked (before
/// anything listens).
async fn start_engine(
    cfg: &Config,
    text: String,
    path: Option<PathBuf>,
) -> anyhow::Result<(sluice_b2bua::Engine<PluginHost>, Started)> {
    let runtime = sluice_plugins::Runtime::new(reload::limits(cfg), true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let prepared = {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || {
            let name = path
                .as_ref()
                .map_or(sluice_config::DEFAULT_CONFIG_NAME.to_string(), |p| {
                    p.display().to_string()
                });
            reload::prepare(&runtime, &text, path.as_deref(), &name)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    crate::sip_tls::publish(&prepared.tls_expiries);
    if prepared.tls.is_some() {
        zero_handshake_failures();
    }
    let dns = reload::DnsState::new(prepared.config.clone(), prepared.dns_ttl, &prepared.engine);
    let started = Started {
        runtime,
        listeners: prepared.engine.listeners.clone(),
        tls: prepared.tls.clone(),
        dns,
        hash: prepared.hash,
    };
    let mut engine = sluice_b2bua::Engine::with_hooks(
        prepared.engine,
        fastrand::u64(..),
        sluice_plugins::PluginHost::new(),
    );
    reload::install(&mut engine, prepared.plugins);
    engine.number_calls_from(call_id_base());
    info!(plugins = engine.hooks().status().len(), "plugins loaded");
    Ok((engine, started))
}

/// The admin API's reload: the reloader's, named for the log.
fn admin_reload(reloader: Arc<Reloader>) -> sluice_admin::Reloader {
    Arc::new(move || {
        let reloader = reloader.clone();
        Box::pin(async move { reloader.reload("admin API").await })
    })
}

/// The admin API and the metrics endpoint, where configured: their servers' handles.
async fn serve_http(
    cfg: &Config,
    path: Option<&std::path::Path>,
    admin: AdminState,
    (inherited, handed): (&mut Inherited, &mut Vec<Listening>),
) -> anyhow::Result<Vec<tokio::task::AbortHandle>> {
    let mut servers = Vec::new();
    let metrics = admin.metrics.clone();
    if let Some(addr) = cfg.admin_addr() {
        let tls = admin_tls(cfg, path).map_err(|e| anyhow::anyhow!(e))?;
        servers.push(serve_admin(addr, admin, tls, (&mut *inherited, &mut *handed)).await?);
    }
    if let Some(addr) = cfg.metrics_addr() {
        servers.push(serve_metrics(addr, metrics, (&mut *inherited, &mut *handed)).await?);
    }
    Ok(servers)
}

fn spawn_signal_handlers(
    commands: mpsc::Sender<Command>,
    reload: Arc<Reloader>,
    settings: SharedSettings,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let hup_reload = reload.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                info!("SIGHUP: reloading the configuration and plugins");
                let _ = hup_reload.reload("SIGHUP").await;
            }
        });
    }
    let _ = reload;
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop requested: draining");
        let deadline = sluice_admin::drain_deadline(&settings);
        let _ = commands.send(Command::Drain { deadline }).await;
        // A second signal stops at once, and says what it abandons.
        wait_for_stop_signal().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let calls = match commands.send(Command::Status(tx)).await {
            Ok(()) => tokio::time::timeout(Duration::from_secs(1), rx)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|s| s.calls.len()),
            Err(_) => None,
        };
        error!(
            calls_abandoned = calls.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            "second stop signal: exiting now, calls in progress are abandoned"
        );
        std::process::exit(EXIT_ABANDONED);
    });
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// An HTTP listener: the old process's (an upgrade), or bound now.
async fn http_listener(
    inherited: &mut Inherited,
    kind: SocketKind,
    addr: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpListener> {
    match inherited.take(kind, addr) {
        Some(fd) => {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        }
        None => tokio::net::TcpListener::bind(addr).await,
    }
}

/// The admin API's TLS configuration, when `[admin]` names a certificate and key (paths
/// relative to the configuration file).
fn admin_tls(
    cfg: &Config,
    path: Option<&std::path::Path>,
) -> Result<Option<Arc<sluice_admin::tls::RustlsConfig>>, String> {
    let Some(admin) = &cfg.admin else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&admin.tls_certificate, &admin.tls_key) else {
        return Ok(None);
    };
    let base = path
        .and_then(std::path::Path::parent)
        .unwrap_or(std::path::Path::new("."));
    let (cert, key) = (base.join(cert.get_ref()), base.join(key.get_ref()));
    sluice_admin::tls::server_config(&cert, &key).map(Some)
}

/// Call ids start from the start time in milliseconds, times a thousand: time-ordered, and
/// never reused by the next process (unless the last one averaged a million calls a second).
fn call_id_base() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    ms.saturating_mul(1000)
}

/// The media kernel fast path, when configured and the system allows it; otherwise the relay
/// threads relay every packet (said once in the log).
fn media_kernel(cfg: &Config) -> Option<Arc<sluice_media_kernel::KernelPath>> {
    if !cfg.media.kernel_forwarding {
        return None;
    }
    let (internal, external) = cfg.media.resolve(&cfg.internal, &cfg.external);
    // Four directions per stream, a few streams per call; entries are allocated as used.
    let entries = cfg.sip.max_calls.saturating_mul(8).clamp(1024, 1 << 20);
    let entries = u32::try_from(entries).unwrap_or(1 << 20);
    match sluice_media_kernel::KernelPath::load(&[internal.bind, external.bind], entries) {
        Ok(k) => {
            tracing::info!(devices = ?k.devices, entries, "media kernel fast path attached");
            Some(Arc::new(k))
        }
        Err(e) => {
            tracing::warn!(
                "media kernel fast path unavailable, the relay threads relay every packet: {e}"
            );
            None
        }
    }
}

/// Media relay threads: as configured, or one per core.
fn media_workers(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Where STIR/SHAKEN verification fetches certificates from: HTTPS with `[stir]`'s timeout,
/// cache size and extra roots (read at start).
fn certificate_source(
    cfg: &sluice_config::Config,
    path: Option<&std::path::Path>,
) -> anyhow::Result<Arc<dyn sluice_transport::CertificateSource>> {
    let roots = match &cfg.stir.x5u_ca {
        Some(f) => {
            let file = stir::file(path, f.get_ref());
            Some(
                std::fs::read(&file)
                    .with_context(|| format!("[stir] x5u_ca {}", file.display()))?,
            )
        }
        None => None,
    };
    let https = certs::HttpsCertificates::new(
        std::time::Duration::from_millis(cfg.stir.fetch_timeout_ms),
        cfg.stir.cache_entries,
        roots.as_deref(),
    )?;
    Ok(Arc::new(certs::Source(Arc::new(https))))
}
