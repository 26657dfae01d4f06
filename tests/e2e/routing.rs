//! Tenants end to end with SIPp: two tenants with disjoint DID pools on one trunk, each with
//! its own PBX; a provider's calls to each tenant's DIDs (in `+1…`, `1…` and 10-digit forms)
//! reach that tenant's PBX with the DID written as it expects, a DID in no pool gets 404; PBX
//! calls take their tenant's route by prefix, fail over to the route's next trunk, and present
//! a caller ID of the tenant's pool on the trunk used (or are refused, as configured).
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use sluice_e2e::{http, metric, parse_prometheus, sipp_available, Lab, LabAddrs, Peer, Transport};
use std::time::Duration;

fn need_sipp() {
    assert!(
        sipp_available(),
        "sipp (package sip-tester) is required for the end-to-end tests"
    );
}

/// The lab with trunks `loop` (.20) and `backup` (.21) and tenants `acme` (the lab's PBX, .10)
/// and `globex` (its own PBX, .11, national numbers, foreign caller IDs refused).
fn start(block: u8) -> Lab {
    let a = LabAddrs::v4(block);
    let base = Lab::config_for(&a, Transport::Udp)
        .replace("outbound_trunk = \"loop\"", "country = \"US\"");
    let tenants = format!(
        r#"
[[trunk]]
name = "backup"
host = "127.0.{block}.21"
port = 5060
transport = "udp"

[[tenant]]
name = "acme"
default_caller_id = "13322496213"
[[tenant.trunk]]
name = "loop"
dids = "13322496213-13322496215"
[[tenant.trunk]]
name = "backup"
dids = "16468097069"
[[tenant.route]]
prefix = "44"
trunks = ["backup"]
[[tenant.route]]
prefix = "1"
trunks = ["loop", "backup"]

[[tenant]]
name = "globex"
pbx = {{ host = "127.0.{block}.11", port = 5060 }}
pbx_number_format = "national"
foreign_caller_id = "refuse"
[[tenant.trunk]]
name = "loop"
dids = "16468097069-16468097079"
[[tenant.route]]
pattern = "1NXXNXXXXXX"
trunks = ["loop"]
"#
    );
    Lab::start_with_text(a, Transport::Udp, &format!("{base}\n{tenants}"))
}

/// One call placed by a SIPp caller; it must end as the scenario expects.
fn one_call(lab: &Lab, name: &str, scenario: &str, from: (String, u16), to: &str, extra: &[&str]) {
    let mut args = vec!["-m", "1"];
    args.extend_from_slice(extra);
    let uac = lab.sipp_on(name, scenario, from, Some(to), &args);
    let r = uac.wait(Duration::from_secs(20));
    assert_eq!(
        (r.successful, r.failed),
        (1, 0),
        "{name}: {r:?}\n{}",
        lab.log()
    );
}

/// The Request-URI and From of each INVITE a SIPp peer received.
fn invites(peer: &sluice_e2e::Sipp) -> Vec<(String, String)> {
    peer.received_messages()
        .iter()
        .filter(|m| m.starts_with("INVITE "))
        .map(|m| {
            let ruri = m.lines().next().unwrap_or("").to_string();
            let from = m
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("from:"))
                .unwrap_or("")
                .to_string();
            (ruri, from)
        })
        .collect()
}

#[test]
fn a_providers_calls_reach_the_pbx_of_the_tenant_owning_the_did() {
    need_sipp();
    const BLOCK: u8 = 82;
    let lab = start(BLOCK);
    let acme = lab.sipp("acme", "uas.xml", Peer::Pbx, None, &["-aa"]);
    let globex = lab.sipp_on(
        "globex",
        "uas.xml",
        (format!("127.0.{BLOCK}.11"), 5060),
        None,
        &["-aa"],
    );
    let trunk = (format!("127.0.{BLOCK}.20"), 5060);
    for (i, did) in ["+13322496214", "13322496214", "3322496214", "16468097070"]
        .iter()
        .enumerate()
    {
        let name = format!("provider{i}");
        one_call(
            &lab,
            &name,
            "uac.xml",
            trunk.clone(),
            &lab.external(),
            &["-s", did],
        );
    }
    one_call(
        &lab,
        "unknown",
        "uac_404.xml",
        trunk,
        &lab.external(),
        &["-s", "13322496299"],
    );

    let to_acme = invites(&acme);
    assert_eq!(to_acme.len(), 3, "{to_acme:?}");
    for (ruri, _) in &to_acme {
        assert!(ruri.starts_with("INVITE sip:+13322496214@"), "{ruri}");
    }
    let to_globex = invites(&globex);
    assert_eq!(to_globex.len(), 1, "{to_globex:?}");
    assert!(
        to_globex[0].0.starts_with("INVITE sip:6468097070@"),
        "{to_globex:?}"
    );

    let (status, body) = http("GET", &lab.admin(), "/metrics", None, "");
    assert_eq!(status, 200);
    let samples = parse_prometheus(&body);
    let unknown = [("trunk", "loop"), ("reason", "unknown-did")];
    assert_eq!(
        metric(&samples, "sluice_calls_unrouted_total", &unknown),
        Some(1.0),
        "{body}"
    );
    // A reload moves 13322496215 from acme to globex: its next call goes to globex's PBX.
    let text = std::fs::read_to_string(&lab.config_path).unwrap();
    let moved = text
        .replace(
            "dids = \"13322496213-13322496215\"",
            "dids = \"13322496213-13322496214\"",
        )
        .replace(
            "dids = \"16468097069-16468097079\"",
            "dids = \"16468097069-16468097079; 13322496215\"",
        );
    std::fs::write(&lab.config_path, &moved).unwrap();
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let trunk = (format!("127.0.{BLOCK}.20"), 5060);
    one_call(
        &lab,
        "moved",
        "uac.xml",
        trunk.clone(),
        &lab.external(),
        &["-s", "3322496215"],
    );
    let to_globex = invites(&globex);
    assert_eq!(to_globex.len(), 2, "{to_globex:?}");
    assert!(
        to_globex[1].0.starts_with("INVITE sip:3322496215@"),
        "{to_globex:?}"
    );

    // Removing a trunk that acme's pool and route still name is refused whole, named; the
    // running configuration stays.
    let start = moved.find("[[trunk]]\nname = \"backup\"").unwrap();
    let end = start + moved[start..].find("\n\n").unwrap();
    let removed = format!("{}{}", &moved[..start], &moved[end..]);
    std::fs::write(&lab.config_path, &removed).unwrap();
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 422, "{body}");
    let named = "tenant `acme` is assigned trunk `backup`, which is not configured";
    assert!(body.contains(named), "{body}");
    one_call(
        &lab,
        "kept",
        "uac.xml",
        trunk,
        &lab.external(),
        &["-s", "+13322496213"],
    );
    assert_eq!(invites(&acme).len(), 4, "the running tenants still route");
}

#[test]
fn pbx_calls_take_their_tenants_route_fail_over_and_present_an_allowed_caller_id() {
    need_sipp();
    const BLOCK: u8 = 83;
    let lab = start(BLOCK);
    // `loop` refuses every call with 503; `backup` answers.
    let carrier = lab.sipp("carrier", "uas_unavailable.xml", Peer::Trunk, None, &[]);
    let backup = lab.sipp_on(
        "backup",
        "uas.xml",
        (format!("127.0.{BLOCK}.21"), 5060),
        None,
        &["-aa"],
    );
    let acme = (format!("127.0.{BLOCK}.10"), 5060);
    let internal = lab.internal();
    // A North American number: route 2 (`loop`, then `backup`), acme's own DID on `loop`.
    let caller = ["-set", "caller", "3322496214"];
    let nanp = [&["-s", "2125550100"][..], &caller].concat();
    one_call(
        &lab,
        "nanp",
        "uac_caller.xml",
        acme.clone(),
        &internal,
        &nanp,
    );
    // A UK number: route 1, `backup` only.
    let uk = [&["-s", "011442079460000"][..], &caller].concat();
    one_call(&lab, "uk", "uac_caller.xml", acme, &internal, &uk);
    // globex refuses a caller ID that is not its DID.
    let globex = (format!("127.0.{BLOCK}.11"), 5060);
    one_call(
        &lab,
        "foreign",
        "uac_403.xml",
        globex,
        &internal,
        &["-s", "2125550100"],
    );

    let at_carrier = invites(&carrier);
    assert_eq!(
        at_carrier.len(),
        1,
        "only the NANP call tried loop: {at_carrier:?}"
    );
    assert!(
        at_carrier[0].0.starts_with("INVITE sip:+12125550100@"),
        "{at_carrier:?}"
    );
    assert!(
        at_carrier[0].1.contains("sip:+13322496214@"),
        "{at_carrier:?}"
    );
    let at_backup = invites(&backup);
    assert_eq!(at_backup.len(), 2, "{at_backup:?}");
    assert!(
        at_backup[0].0.starts_with("INVITE sip:+12125550100@"),
        "{at_backup:?}"
    );
    assert!(
        at_backup[1].0.starts_with("INVITE sip:+442079460000@"),
        "{at_backup:?}"
    );
    for (_, from) in &at_backup {
        // 3322496214 is acme's on loop only: its default is presented on backup.
        assert!(from.contains("sip:+13322496213@"), "{from}");
    }
    // globex's 403 was for its caller ID (not for a call no tenant claims).
    let (_, body) = http("GET", &lab.admin(), "/metrics", None, "");
    let samples = parse_prometheus(&body);
    let caller_id = [("trunk", "unknown"), ("reason", "caller-id")];
    assert_eq!(
        metric(&samples, "sluice_calls_unrouted_total", &caller_id),
        Some(1.0),
        "{body}"
    );
    let no_tenant = [("trunk", "unknown"), ("reason", "no-tenant")];
    assert_eq!(
        metric(&samples, "sluice_calls_unrouted_total", &no_tenant),
        None,
        "{body}"
    );
}
