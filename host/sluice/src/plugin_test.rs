//! `sluice plugin test`: a dry run of one plugin on a captured message (`PLUGIN` a `.wasm` file
//! or a bundled plugin's name), or of a trunk's whole chain as configured (`--config`, see
//! [`crate::chain_test`]). The plugins' log lines and output are printed with the result.

use sluice_b2bua::{Direction, HookVerdict, NumberKind};
use sluice_plugins::dry_run::{dry_run, DryRunInput};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The plugin component (`.wasm`, built for wasm32-wasip2), or a bundled plugin's name;
    /// absent with --config.
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    plugin: Option<PathBuf>,
    /// Run the whole chain of --trunk as this configuration sets it up, on a message as the
    /// PBX (or, inbound, the trunk) sends it: what leaves Sluice is printed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A SIP message: as it would leave Sluice (one plugin), or as it arrives (--config). LF
    /// or CRLF line ends.
    #[arg(long)]
    message: PathBuf,
    /// The call's direction: outbound (toward the trunk) or inbound (toward the PBX).
    #[arg(long, value_enum, default_value = "outbound")]
    direction: Dir,
    /// The trunk: the name the plugin sees, or with --config the trunk whose chain runs (the
    /// outbound route's by default).
    #[arg(long)]
    trunk: Option<String>,
    /// The trunk's brand the plugin is told: `generic` (a trunk without one) by default; in
    /// Sluice a brand plugin is told its own name.
    #[arg(long, conflicts_with = "config", default_value = "generic")]
    brand: String,
    /// The tenant the plugin is told, as Sluice names a call's tenant with tenant routing
    /// (none by default); with --config, routing decides it.
    #[arg(long, conflicts_with = "config")]
    tenant: Option<String>,
    /// A plugin setting, `KEY=VALUE`; repeat a key for a list.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The deadline of each hook call, in milliseconds.
    #[arg(long, default_value_t = 5)]
    deadline_ms: u64,
}

/// A capture whose Content-Length no longer matches its body (a trailing line end lost when it
/// was saved, line ends converted): the length is set to the body's, and a note says so.
fn fit_content_length(text: String) -> String {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return text;
    };
    let mut fixed = false;
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            let is_cl = name.trim().eq_ignore_ascii_case("content-length")
                || name.trim().eq_ignore_ascii_case("l");
            if is_cl && value.trim().parse::<usize>().ok() != Some(body.len()) {
                fixed = true;
                return format!("{}: {}", name.trim(), body.len());
            }
            l.to_string()
        })
        .collect();
    if !fixed {
        return text;
    }
    println!(
        "note: Content-Length set to {} (the capture's body)",
        body.len()
    );
    format!("{}\r\n\r\n{body}", lines.join("\r\n"))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Dir {
    Outbound,
    Inbound,
}

pub fn run(args: Args) -> ExitCode {
    // The plugins' log lines, stdout and stderr (a panic's message), and Sluice's own warnings.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_env_filter("warn,sluice_plugins=trace")
        .try_init();
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice plugin test: {e}");
            ExitCode::from(2)
        }
    }
}

/// A captured SIP message from a file: LF line ends made CRLF (captures are often saved so),
/// its Content-Length fitted to its body.
pub fn read_capture(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let text = if text.contains("\r\n") {
        text
    } else {
        text.replace('\n', "\r\n")
    };
    Ok(fit_content_length(text))
}

/// A plugin named on the command line: its name (the file's stem), its bytes and where they
/// came from (the file, or a bundled plugin of that name).
fn read_plugin(plugin: &std::path::Path) -> Result<(String, Vec<u8>, String), String> {
    let name = plugin
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    match std::fs::read(plugin) {
        Ok(w) => Ok((name, w, plugin.display().to_string())),
        Err(e) => match plugin.to_str().and_then(sluice_bundled::get) {
            Some(w) => Ok((name, w.to_vec(), "bundled".to_string())),
            None => Err(format!("{}: cannot read: {e}", plugin.display())),
        },
    }
}

/// `--setting KEY=VALUE` options as the plugin's settings (a key repeated makes a list).
fn parse_settings(options: &[String]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in options {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--setting {s}: expected KEY=VALUE"))?;
        settings
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    Ok(settings)
}

fn run_inner(args: Args) -> Result<ExitCode, String> {
    let text = read_capture(&args.message)?;
    if let Some(config) = &args.config {
        let way = match args.direction {
            Dir::Outbound => crate::chain_test::Way::Outbound,
            Dir::Inbound => crate::chain_test::Way::Inbound,
        };
        return crate::chain_test::run(config, args.trunk.as_deref(), text.as_bytes(), way);
    }
    let plugin = args
        .plugin
        .clone()
        .ok_or("a plugin or --config is required")?;
    let (name, wasm, origin) = read_plugin(&plugin)?;
    let trunk = args.trunk.clone().unwrap_or_else(|| "test".into());
    let settings = parse_settings(&args.settings)?;
    let direction = match args.direction {
        Dir::Outbound => Direction::Outbound,
        Dir::Inbound => Direction::Inbound,
    };
    let out = dry_run(DryRunInput {
        name: &name,
        wasm: &wasm,
        origin,
        message: text.as_bytes(),
        direction,
        trunk: &trunk,
        brand: &args.brand,
        tenant: args.tenant.as_deref(),
        settings,
        deadline: Duration::from_millis(args.deadline_ms.max(1)),
    })?;
    println!("plugin: {} {}", out.plugin, out.version);
    println!(
        "call: {}, trunk {} (brand {}){}",
        match direction {
            Direction::Outbound => "outbound (message sent toward the trunk)",
            Direction::Inbound => "inbound (message sent toward the PBX)",
        },
        trunk,
        args.brand,
        args.tenant
            .as_deref()
            .map(|t| format!(", tenant {t}"))
            .unwrap_or_default()
    );
    if out.numbers.is_empty() {
        println!("numbers: unchanged");
    }
    for (kind, from, to) in &out.numbers {
        let kind = match kind {
            NumberKind::Called => "called",
            NumberKind::Calling => "calling",
        };
        println!("numbers: {kind} {from} -> {to}");
    }
    match &out.verdict {
        HookVerdict::Continue => println!("verdict: continue"),
        HookVerdict::Reject { status, reason } => println!("verdict: reject {status} {reason}"),
    }
    match out.attestation {
        Some(a) => println!("attestation: {}", a.as_str()),
        None => println!("attestation: no opinion"),
    }
    for f in &out.failures {
        println!("failure: {f}");
    }
    println!("--- message as it would leave Sluice ---");
    print!("{}", out.message);
    Ok(if out.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
