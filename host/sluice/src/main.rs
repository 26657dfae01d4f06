//! The `sluice` command: `run` the SBC, `check` a configuration.

mod resolve;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_config::Config;
use sluice_transport::{Control, Shell, ShellOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice, a SIP Session Border Controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// How long a drain (SIGTERM) lets calls finish before hanging them up, in seconds.
        #[arg(long, default_value_t = 30)]
        drain_seconds: u64,
    },
    /// Validate a configuration file and exit (non-zero with file:line: message on error).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(cfg) => match resolve::engine_config(&cfg) {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e:#}", config.display());
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            log,
            log_format,
            drain_seconds,
        } => {
            init_logging(&log, log_format);
            let loaded = match &config {
                Some(p) => Config::load(p),
                None => Config::bundled(),
            };
            let cfg = match loaded {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(cfg, Duration::from_secs(drain_seconds))) {
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

fn init_logging(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cfg: Config, drain: Duration) -> anyhow::Result<()> {
    let engine_cfg = resolve::engine_config(&cfg)?;
    let listeners = engine_cfg.listeners.clone();
    let engine = sluice_b2bua::Engine::new(engine_cfg, fastrand::u64(..));
    let shell = Shell::bind(
        engine,
        ShellOptions {
            listeners,
            max_message: cfg.sip.max_message_bytes,
        },
    )
    .await
    .context("binding listeners")?;
    let (control_tx, control_rx) = tokio::sync::watch::channel(Control::Run);
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop requested: draining");
        let _ = control_tx.send(Control::Drain { deadline: drain });
        // A second signal stops at once.
        wait_for_stop_signal().await;
        info!("second stop signal: exiting now");
        std::process::exit(0);
    });
    info!("sluice running");
    shell.run(control_rx).await?;
    Ok(())
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
