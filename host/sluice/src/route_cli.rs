//! `sluice route`: what tenant routing would do with a call, without sending anything — the
//! tenant, the numbers normalised, the route and each trunk it would try with the numbers as
//! written for it, or the refusal. The decisions are the routing table's own, as the engine
//! makes them; trunk liveness and call counts are not known offline, so every trunk is taken
//! as up.

use sluice_b2bua::config::TenantRouting;
use sluice_b2bua::EngineConfig;
use sluice_config::Config;
use sluice_routing::{CallerId, Format, Number};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
    /// The calling number, as the sender writes it.
    #[arg(long)]
    from: String,
    /// The called number, as the sender writes it.
    #[arg(long)]
    to: String,
    /// A call arriving from this trunk (inbound: DID lookup).
    #[arg(long, conflicts_with = "pbx")]
    trunk: Option<String>,
    /// A call from the PBX (outbound; the default).
    #[arg(long)]
    pbx: bool,
    /// The tenant of a PBX call (default: the only tenant, or the one whose pools hold
    /// --from).
    #[arg(long, conflicts_with = "trunk")]
    tenant: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    match explain(&args) {
        Ok((text, routed)) => {
            print!("{text}");
            if routed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("sluice route: {e}");
            ExitCode::from(2)
        }
    }
}

/// The explanation, and whether the call would be routed.
fn explain(args: &Args) -> Result<(String, bool), String> {
    let cfg = Config::load(&args.config).map_err(|e| e.to_string())?;
    let engine = crate::resolve::resolve_config(&cfg)
        .map_err(|e| format!("{e:#}"))?
        .engine;
    let Some(tenants) = engine.tenants.clone() else {
        return Err(format!(
            "{} has no [[tenant]]: every PBX call goes to routing.outbound_trunk and every \
             trunk call to [pbx]",
            args.config.display()
        ));
    };
    let mut out = String::new();
    let routed = match &args.trunk {
        Some(trunk) => inbound(&engine, &tenants, trunk, args, &mut out)?,
        None => outbound(&engine, &tenants, args, &mut out)?,
    };
    Ok((out, routed))
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    out.push_str(&format!("{label:<10} {value}\n"));
}

fn shown(n: Option<&Number>) -> String {
    match n {
        Some(n) if n.is_e164() => format!("+{} (E.164)", n.digits()),
        Some(n) => format!("{} (not a valid E.164 number: as dialled)", n.digits()),
        None => "(not a number)".into(),
    }
}

fn inbound(
    engine: &EngineConfig,
    tenants: &TenantRouting,
    trunk: &str,
    args: &Args,
    out: &mut String,
) -> Result<bool, String> {
    let t = engine
        .trunks
        .iter()
        .find(|t| &*t.name == trunk)
        .ok_or_else(|| format!("no trunk `{trunk}`"))?;
    let numbering = &t.numbers.numbering;
    let called = numbering.normalise(&args.to);
    let calling = numbering.normalise(&args.from);
    line(
        out,
        "direction",
        format!(
            "inbound, from trunk `{trunk}` (country {})",
            numbering.country()
        ),
    );
    line(out, "called", shown(called.as_ref()));
    line(out, "calling", shown(calling.as_ref()));
    let owner = called
        .as_ref()
        .and_then(|c| tenants.table.inbound(trunk, c));
    let (Some(i), Some(called)) = (owner, called) else {
        line(
            out,
            "refused",
            format!("404 Not Found: the DID is in no tenant's pool on `{trunk}`"),
        );
        return Ok(false);
    };
    let (Some(tenant), Some(pbx)) = (tenants.table.tenants().get(i), tenants.pbx.get(i)) else {
        return Err("inconsistent routing table".into());
    };
    let f = tenant.pbx_format;
    line(out, "tenant", &tenant.name);
    line(
        out,
        "to",
        format!("{:?} {} (numbers {})", pbx.transport, pbx.addr, f.as_str()),
    );
    line(
        out,
        "written",
        format!(
            "called {}, calling {}",
            called.written(f),
            calling.map_or_else(|| args.from.clone(), |c| c.written(f))
        ),
    );
    Ok(true)
}

fn outbound(
    engine: &EngineConfig,
    tenants: &TenantRouting,
    args: &Args,
    out: &mut String,
) -> Result<bool, String> {
    let table = &tenants.table;
    let i = match &args.tenant {
        Some(name) => table
            .tenants()
            .iter()
            .position(|t| &*t.name == name)
            .ok_or_else(|| format!("no tenant `{name}`"))?,
        None => owner_of(tenants, &args.from)
            .ok_or("several tenants, and none owns --from: name one with --tenant")?,
    };
    let tenant = table.tenants().get(i).ok_or("no tenant")?;
    let called = table.dialled(i, &args.to);
    let calling = tenant.numbering.normalise(&args.from);
    line(
        out,
        "direction",
        format!(
            "outbound, from the PBX (country {})",
            tenant.numbering.country()
        ),
    );
    line(out, "tenant", &tenant.name);
    line(out, "called", shown(called.as_ref()));
    line(out, "calling", shown(calling.as_ref()));
    let Some(o) = called.as_ref().and_then(|c| table.outbound(i, c)) else {
        line(
            out,
            "refused",
            "404 No Route: no route of the tenant matches",
        );
        return Ok(false);
    };
    line(
        out,
        "route",
        format!(
            "{} ({}){}",
            o.route.saturating_add(1),
            tenant
                .routes
                .get(o.route)
                .map_or_else(String::new, |r| r.matcher.to_string()),
            if o.emergency { ", emergency" } else { "" }
        ),
    );
    let mut any = false;
    for (k, name) in o.trunks.iter().enumerate() {
        let format = engine
            .trunks
            .iter()
            .find(|t| t.name == *name)
            .map_or(Format::E164, |t| t.numbers.format);
        let verdict = match table.caller_id(i, name, calling.as_ref(), o.emergency) {
            CallerId::Refuse => "refused: 403, the caller ID is not the tenant's on it".to_string(),
            c => {
                any = true;
                let presented = match &c {
                    CallerId::Replace(d) => format!("{} (the tenant's default)", d.written(format)),
                    _ => calling
                        .as_ref()
                        .map_or_else(|| args.from.clone(), |n| n.written(format)),
                };
                format!("called {}, calling {presented}", o.called.written(format))
            }
        };
        line(
            out,
            if k == 0 { "trunks" } else { "" },
            format!("{}. {name}: {verdict}", k.saturating_add(1)),
        );
    }
    if !any {
        line(
            out,
            "refused",
            "403 Caller ID Not Allowed on every trunk of the route",
        );
    }
    Ok(any)
}

/// The tenant of a PBX call when none is named: the only one, or the one owning `from`.
fn owner_of(tenants: &TenantRouting, from: &str) -> Option<usize> {
    let all = tenants.table.tenants();
    if all.len() == 1 {
        return Some(0);
    }
    all.iter().position(|t| {
        t.numbering
            .normalise(from)
            .is_some_and(|n| t.pools.iter().any(|(_, p)| p.contains(n.digits())))
    })
}
