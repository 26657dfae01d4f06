//! `sluice plugin test`: a dry run of a built plugin on a captured message.

use sluice_b2bua::{Direction, HookVerdict, NumberKind};
use sluice_plugins::dry_run::{dry_run, DryRunInput};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The plugin component (`.wasm`, built for wasm32-wasip2).
    plugin: PathBuf,
    /// A SIP message as it would leave Sluice (LF or CRLF line ends).
    #[arg(long)]
    message: PathBuf,
    /// The call's direction: outbound (toward the trunk) or inbound (toward the PBX).
    #[arg(long, value_enum, default_value = "outbound")]
    direction: Dir,
    /// The trunk name the plugin sees.
    #[arg(long, default_value = "test")]
    trunk: String,
    /// A plugin setting, `KEY=VALUE`; repeat a key for a list.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// The deadline of each hook call, in milliseconds.
    #[arg(long, default_value_t = 5)]
    deadline_ms: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Dir {
    Outbound,
    Inbound,
}

pub fn run(args: Args) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice plugin test: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: Args) -> Result<ExitCode, String> {
    let wasm = std::fs::read(&args.plugin)
        .map_err(|e| format!("{}: cannot read: {e}", args.plugin.display()))?;
    let text = std::fs::read_to_string(&args.message)
        .map_err(|e| format!("{}: cannot read: {e}", args.message.display()))?;
    // Captures are often saved with LF line ends.
    let text = if text.contains("\r\n") {
        text
    } else {
        text.replace('\n', "\r\n")
    };
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &args.settings {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--setting {s}: expected KEY=VALUE"))?;
        settings
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    let direction = match args.direction {
        Dir::Outbound => Direction::Outbound,
        Dir::Inbound => Direction::Inbound,
    };
    let out = dry_run(DryRunInput {
        wasm: &wasm,
        origin: args.plugin.display().to_string(),
        message: text.as_bytes(),
        direction,
        trunk: &args.trunk,
        settings,
        deadline: Duration::from_millis(args.deadline_ms.max(1)),
    })?;
    println!("plugin: {} {}", out.plugin, out.version);
    println!(
        "call: {}, trunk {}",
        match direction {
            Direction::Outbound => "outbound (message sent toward the trunk)",
            Direction::Inbound => "inbound (message sent toward the PBX)",
        },
        args.trunk
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
