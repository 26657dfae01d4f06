//! Tenants through the engine with a fake clock: a trunk's call goes to the PBX of the tenant
//! owning the called DID (whatever form the provider writes it in), an unknown DID gets 404;
//! a PBX call takes its tenant's route to the first trunk that can take it, with its caller ID
//! checked against the tenant's pool on that trunk; emergency numbers pass the check.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use sluice_b2bua::config::{PeerConfig, TenantRouting};
use sluice_b2bua::testing::*;
use sluice_b2bua::{EngineConfig, NoHooks, TrunkConfig};
use sluice_routing::{ForeignCallerId, Format, Matcher, Numbering, OutRoute, RoutingTable, Tenant};
use sluice_sip::{HeaderName, Message};
use sluice_transaction::{Flow, Transport};
use std::sync::Arc;
use std::time::Duration;

const BACKUP: &str = "127.0.0.21:5060";
const GLOBEX_PBX: &str = "127.0.0.11:5060";

fn tenant(name: &str, pools: &[(&str, &str)], routes: Vec<OutRoute>) -> Tenant {
    Tenant::simple(name, pools, routes).unwrap()
}

fn route(m: Matcher, trunks: &[&str]) -> OutRoute {
    OutRoute::to(m, trunks)
}

/// Trunks `carrier` (the lab's trunk) and `backup`; tenants `acme` (the lab's PBX, numbers in
/// E.164, a default caller ID) and `globex` (its own PBX, national numbers, foreign caller IDs
/// refused).
fn config(change: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let mut cfg = lab_config(Transport::Udp);
    cfg.trunks[0].name = "carrier".into();
    cfg.trunks.push(TrunkConfig::simple(
        "backup",
        "backup.example",
        Transport::Udp,
        addr(BACKUP),
    ));
    cfg.outbound_trunk = None;
    let mut acme = tenant(
        "acme",
        &[
            ("carrier", "13322496213-13322496215"),
            ("backup", "16468097069"),
        ],
        vec![route(Matcher::Prefix("1".into()), &["carrier", "backup"])],
    );
    acme.sources = vec![addr(PBX).ip().into()];
    acme.default_caller_id = Numbering::new("US").unwrap().normalise("+13322496213");
    acme.foreign_caller_id = ForeignCallerId::UseDefault;
    let mut globex = tenant(
        "globex",
        &[("carrier", "16468097069-16468097079")],
        vec![
            route(Matcher::Pattern("1NXXNXXXXXX".into()), &["carrier"]),
            route(Matcher::Prefix("911".into()), &["carrier"]),
        ],
    );
    globex.sources = vec![addr(GLOBEX_PBX).ip().into()];
    globex.pbx_format = Format::National;
    let table = RoutingTable::new(vec![acme, globex], vec!["911".into()]).unwrap();
    let globex_pbx = PeerConfig {
        name: "globex".into(),
        host: "127.0.0.11".into(),
        addr: addr(GLOBEX_PBX),
        ..cfg.pbx.clone()
    };
    let pbx = vec![cfg.pbx.clone(), globex_pbx];
    cfg.tenants = Some(Arc::new(TenantRouting { table, pbx }));
    change(&mut cfg);
    cfg
}

fn lab() -> Lab<NoHooks> {
    let mut lab = Lab::with_hooks(config(|_| {}), NoHooks);
    lab.engine.handle_timeout(lab.now);
    lab
}

/// The trunk's INVITE to `did` (as the provider writes it), Call-ID `id`.
fn inbound(did: &str, id: &str) -> String {
    trunk_invite()
        .replace("INVITE sip:2001@", &format!("INVITE sip:{did}@"))
        .replace("To: <sip:15552001111@", &format!("To: <sip:{did}@"))
        .replace("pbx-call-1@", &format!("{id}@"))
        .replace("branch=z9hG4bKpbx1", &format!("branch=z9hG4bK{id}"))
}

/// The PBX's INVITE to `dialled`, Call-ID `id`, caller ID `from`.
fn outbound(dialled: &str, from: &str, id: &str) -> String {
    pbx_invite()
        .replace("sip:15552001111@", &format!("sip:{dialled}@"))
        .replace("sip:2001@127.0.0.10>", &format!("sip:{from}@127.0.0.10>"))
        .replace("sip:+15552230000@", &format!("sip:{from}@"))
        .replace("pbx-call-1@", &format!("{id}@"))
        .replace("branch=z9hG4bKpbx1", &format!("branch=z9hG4bK{id}"))
}

fn invites_to<'a>(sent: &'a [(Flow, Message)], to: &str) -> Vec<&'a Message> {
    only(sent, to)
        .into_iter()
        .filter(|m| m.method().is_some_and(|m| m.as_str() == "INVITE"))
        .collect()
}

fn user_of(value: &str) -> String {
    let start = value.find("sip:").map_or(0, |i| i + 4);
    value[start..].split('@').next().unwrap().to_string()
}

#[test]
fn a_dids_call_reaches_its_tenants_pbx_in_every_form_the_provider_writes() {
    let mut lab = lab();
    for (i, did) in ["+13322496214", "13322496214", "3322496214"]
        .iter()
        .enumerate()
    {
        let sent = lab.from_trunk_text(&inbound(did, &format!("in-{i}")));
        let invites = invites_to(&sent, PBX);
        assert_eq!(invites.len(), 1, "{did}: {sent:?}");
        let ruri = invites[0].request_uri().unwrap();
        assert_eq!(user_of(ruri), "+13322496214", "{did}");
        assert_eq!(
            user_of(invites[0].header(&HeaderName::To).unwrap()),
            "+13322496214"
        );
    }
    // globex's DID goes to globex's PBX, written nationally.
    let sent = lab.from_trunk_text(&inbound("+16468097070", "in-g"));
    assert!(invites_to(&sent, PBX).is_empty());
    let invites = invites_to(&sent, GLOBEX_PBX);
    assert_eq!(invites.len(), 1, "{sent:?}");
    assert_eq!(user_of(invites[0].request_uri().unwrap()), "6468097070");
}

#[test]
fn a_did_in_no_pool_gets_404_and_reaches_no_pbx() {
    let mut lab = lab();
    let sent = lab.from_trunk_text(&inbound("+13322496299", "in-x"));
    assert!(invites_to(&sent, PBX).is_empty() && invites_to(&sent, GLOBEX_PBX).is_empty());
    assert_eq!(statuses(&only(&sent, TRUNK)), vec![100, 404]);
}

#[test]
fn a_called_did_read_from_the_header_the_trunk_names() {
    let mut lab = Lab::with_hooks(
        config(|c| {
            c.trunks[0].numbers.called_from =
                Arc::from([sluice_b2bua::config::CalledFrom::Header(HeaderName::parse(
                    "P-Called-Party-ID",
                ))]);
        }),
        NoHooks,
    );
    lab.engine.handle_timeout(lab.now);
    let text = with_headers(
        &inbound("trunkgroup7", "in-h"),
        "P-Called-Party-ID: <sip:+16468097071@carrier.example>\r\n",
    );
    let sent = lab.from_trunk_text(&text);
    let invites = invites_to(&sent, GLOBEX_PBX);
    assert_eq!(invites.len(), 1, "{sent:?}");
    // The DID found in the header is the one written, as globex writes numbers.
    assert_eq!(user_of(invites[0].request_uri().unwrap()), "6468097071");
    assert_eq!(
        user_of(invites[0].header(&HeaderName::To).unwrap()),
        "6468097071",
        "To carried the Request-URI's user: it follows"
    );
}

#[test]
fn a_pbx_call_takes_its_route_with_a_foreign_caller_id_replaced_by_the_default() {
    let mut lab = lab();
    let sent = lab.from_pbx_text(&outbound("2125550100", "2001", "out-1"));
    let invites = invites_to(&sent, TRUNK);
    assert_eq!(invites.len(), 1, "{sent:?}");
    let invite = invites[0];
    assert_eq!(user_of(invite.request_uri().unwrap()), "+12125550100");
    assert_eq!(
        user_of(invite.header(&HeaderName::From).unwrap()),
        "+13322496213"
    );
    let pai = invite.header(&HeaderName::PAssertedIdentity).unwrap();
    assert_eq!(user_of(pai), "+13322496213");
    // Its own DID on that trunk is kept.
    let sent = lab.from_pbx_text(&outbound("2125550100", "3322496215", "out-2"));
    let invite = invites_to(&sent, TRUNK)[0];
    assert_eq!(
        user_of(invite.header(&HeaderName::From).unwrap()),
        "+13322496215"
    );
}

#[test]
fn a_full_first_trunk_sends_the_call_to_the_routes_next() {
    let mut lab = Lab::with_hooks(config(|c| c.trunks[0].max_calls = 1), NoHooks);
    lab.engine.handle_timeout(lab.now);
    let first = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-a"));
    assert_eq!(invites_to(&first, TRUNK).len(), 1);
    let second = lab.from_pbx_text(&outbound("2125550101", "3322496214", "out-b"));
    assert!(invites_to(&second, TRUNK).is_empty());
    let invites = invites_to(&second, BACKUP);
    assert_eq!(invites.len(), 1, "{second:?}");
    // 3322496214 is acme's on carrier, not on backup: the default is presented there.
    assert_eq!(
        user_of(invites[0].header(&HeaderName::From).unwrap()),
        "+13322496213"
    );
}

#[test]
fn a_foreign_caller_id_is_refused_where_the_tenant_says_so_but_not_for_emergencies() {
    let mut lab = lab();
    let globex = Flow {
        transport: Transport::Udp,
        local: addr(INTERNAL),
        remote: addr(GLOBEX_PBX),
        conn: None,
    };
    let text = outbound("2125550100", "3322496214", "out-g1")
        .replace("127.0.0.10:5060;branch", "127.0.0.11:5060;branch");
    let sent = lab.feed(globex, &text);
    assert!(invites_to(&sent, TRUNK).is_empty());
    assert_eq!(statuses(&only(&sent, GLOBEX_PBX)), vec![100, 403]);
    // Its own number passes.
    let text = outbound("2125550100", "6468097075", "out-g2")
        .replace("127.0.0.10:5060;branch", "127.0.0.11:5060;branch");
    let sent = lab.feed(globex, &text);
    assert_eq!(invites_to(&sent, TRUNK).len(), 1, "{sent:?}");
    // 911 with the foreign caller ID is routed, as dialled.
    let text = outbound("911", "3322496214", "out-g3")
        .replace("127.0.0.10:5060;branch", "127.0.0.11:5060;branch");
    let sent = lab.feed(globex, &text);
    let invites = invites_to(&sent, TRUNK);
    assert_eq!(invites.len(), 1, "{sent:?}");
    assert_eq!(user_of(invites[0].request_uri().unwrap()), "911");
    // globex has no default caller ID: its own is presented, in the trunk's format.
    let from = invites[0].header(&HeaderName::From).unwrap();
    assert_eq!(user_of(from), "+13322496214");
}

#[test]
fn a_dialled_number_no_route_matches_gets_404() {
    let mut lab = lab();
    // acme's only route is prefix 1: a UK number is not routed.
    let sent = lab.from_pbx_text(&outbound("011442079460000", "3322496214", "out-uk"));
    assert!(invites_to(&sent, TRUNK).is_empty() && invites_to(&sent, BACKUP).is_empty());
    assert_eq!(statuses(&only(&sent, PBX)), vec![100, 404]);
}

#[test]
fn a_call_refused_by_the_first_trunk_goes_to_the_routes_next_rebuilt_for_it() {
    let mut lab = lab();
    let sent = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-f"));
    let first = invites_to(&sent, TRUNK)[0].clone();
    assert_eq!(
        user_of(first.header(&HeaderName::From).unwrap()),
        "+13322496214"
    );
    let sent = lab.from_trunk_text(&trunk_response(&first, 503, "Service Unavailable", ""));
    // The PBX hears nothing of the 503; backup gets the call, with a new dialog and the
    // caller ID allowed there (acme's default: 3322496214 is acme's on carrier only).
    assert!(only(&sent, PBX).is_empty(), "{sent:?}");
    let invites = invites_to(&sent, BACKUP);
    assert_eq!(invites.len(), 1, "{sent:?}");
    let second = invites[0].clone();
    assert_ne!(second.call_id(), first.call_id());
    assert_eq!(user_of(second.request_uri().unwrap()), "+12125550100");
    assert!(
        second.request_uri().unwrap().contains("@backup.example"),
        "{second:?}"
    );
    assert_eq!(
        user_of(second.header(&HeaderName::From).unwrap()),
        "+13322496213"
    );
    assert_eq!(second.body, first.body, "the same anchored offer");
    // Its answer reaches the PBX.
    let backup = Flow {
        transport: Transport::Udp,
        local: addr(EXTERNAL),
        remote: addr(BACKUP),
        conn: None,
    };
    let sent = lab.feed(backup, &trunk_response(&second, 200, "OK", SDP));
    assert_eq!(statuses(&only(&sent, PBX)), vec![200], "{sent:?}");
}

#[test]
fn a_call_refused_by_the_last_trunk_of_its_route_gets_the_refusal() {
    let mut lab = lab();
    let sent = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-l"));
    let first = invites_to(&sent, TRUNK)[0].clone();
    let sent = lab.from_trunk_text(&trunk_response(&first, 503, "Service Unavailable", ""));
    let second = invites_to(&sent, BACKUP)[0].clone();
    let backup = Flow {
        transport: Transport::Udp,
        local: addr(EXTERNAL),
        remote: addr(BACKUP),
        conn: None,
    };
    let sent = lab.feed(
        backup,
        &trunk_response(&second, 503, "Service Unavailable", ""),
    );
    assert_eq!(statuses(&only(&sent, PBX)), vec![503], "{sent:?}");
}

/// A brand whose number hook knows its provider's short form `pg-NN` of globex's numbers, and
/// writes every number it sees as E.164.
fn short_forms() -> impl sluice_b2bua::Hooks {
    use sluice_b2bua::hooks::NumberVerdict;
    FnHooks {
        number: |_: &sluice_b2bua::HookContext<'_>, _, n: &str| match n.strip_prefix("pg-") {
            Some(tail) => NumberVerdict::Replace(format!("+164680970{tail}")),
            None if !n.starts_with('+') => NumberVerdict::Replace(format!("+{n}")),
            None => NumberVerdict::Keep,
        },
        message: |_: &sluice_b2bua::HookContext<'_>, _: &mut Message| {
            sluice_b2bua::HookVerdict::Continue
        },
    }
}

#[test]
fn the_brands_number_hook_runs_before_the_did_lookup_and_the_pbx_gets_its_own_format() {
    let mut lab = Lab::with_hooks(config(|_| {}), short_forms());
    lab.engine.handle_timeout(lab.now);
    let sent = lab.from_trunk_text(&inbound("pg-72", "in-b"));
    let invites = invites_to(&sent, GLOBEX_PBX);
    assert_eq!(invites.len(), 1, "{sent:?}");
    // globex takes national numbers: the hook's E.164 is not written over it afterwards.
    assert_eq!(user_of(invites[0].request_uri().unwrap()), "6468097072");
}

#[test]
fn each_calling_number_of_a_providers_call_is_written_on_its_own() {
    let mut lab = lab();
    let text = inbound("+13322496214", "in-pai")
        .replace("sip:2001@127.0.0.10>", "sip:2125550100@carrier.example>")
        .replace(
            "sip:+15552230000@pbx.internal",
            "sip:+16175550100@carrier.example",
        );
    let sent = lab.from_trunk_text(&text);
    let invite = invites_to(&sent, PBX)[0];
    assert_eq!(
        user_of(invite.header(&HeaderName::From).unwrap()),
        "+12125550100"
    );
    let pai = invite.header(&HeaderName::PAssertedIdentity).unwrap();
    assert_eq!(
        user_of(pai),
        "+16175550100",
        "the asserted identity is not the From"
    );
}

/// acme and globex behind one PBX address (told apart by domain), globex changed by `globex`.
fn shared_pbx_lab(globex: impl FnOnce(&mut Tenant)) -> Lab<NoHooks> {
    let mut cfg = config(|_| {});
    let shared = cfg.tenants.as_ref().unwrap();
    let mut tenants: Vec<Tenant> = shared.table.tenants().to_vec();
    tenants[1].sources = tenants[0].sources.clone();
    globex(&mut tenants[1]);
    let table = RoutingTable::new(tenants, vec!["911".into()]).unwrap();
    cfg.tenants = Some(Arc::new(TenantRouting {
        table,
        pbx: shared.pbx.clone(),
    }));
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    lab.engine.handle_timeout(lab.now);
    lab
}

#[test]
fn tenants_sharing_a_pbx_are_told_apart_by_domain() {
    let mut lab = shared_pbx_lab(|_| {});
    // From globex's domain, with a caller ID of globex's pool: globex's call (acme's would
    // have presented acme's default).
    let text = outbound("2125550100", "6468097075", "out-d").replace(
        "sip:6468097075@127.0.0.10>",
        "sip:6468097075@globex.example>",
    );
    let sent = lab.from_pbx_text(&text);
    let invite = invites_to(&sent, TRUNK)[0];
    assert_eq!(
        user_of(invite.header(&HeaderName::From).unwrap()),
        "+16468097075"
    );
    // A domain of neither: whose call it is cannot be told, refused.
    let text = outbound("2125550100", "6468097075", "out-e").replace(
        "sip:6468097075@127.0.0.10>",
        "sip:6468097075@other.example>",
    );
    let sent = lab.from_pbx_text(&text);
    assert_eq!(statuses(&only(&sent, PBX)), vec![100, 403]);
}

/// A tenant's domain that is an IPv6 address matches it however the PBX writes it (brackets,
/// other textual forms).
#[test]
fn a_tenants_ipv6_domain_matches_however_it_is_written() {
    let mut lab = shared_pbx_lab(|globex| {
        globex.domains = vec![sluice_sip::fields::canonical_host("2001:db8::7")];
    });
    let text = outbound("2125550100", "6468097075", "out-6").replace(
        "sip:6468097075@127.0.0.10>",
        "sip:6468097075@[2001:DB8:0::7]>",
    );
    let sent = lab.from_pbx_text(&text);
    let invite = invites_to(&sent, TRUNK)[0];
    assert_eq!(
        user_of(invite.header(&HeaderName::From).unwrap()),
        "+16468097075",
        "globex's call"
    );
}

#[test]
fn a_silent_first_trunk_is_left_for_the_next_and_its_late_answer_hung_up() {
    let mut lab = lab();
    let sent = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-s"));
    let first = invites_to(&sent, TRUNK)[0].clone();
    // Nothing from the first trunk (not even 100 Trying) for its destination timeout: the
    // route's next trunk gets the call.
    let sent = lab.run_for(Duration::from_secs(5), Duration::from_millis(250));
    let mut calls: Vec<&str> = invites_to(&sent, BACKUP)
        .iter()
        .filter_map(|m| m.call_id())
        .collect();
    calls.dedup();
    assert_eq!(calls.len(), 1, "one call (retransmitted): {sent:?}");
    let second = invites_to(&sent, BACKUP)[0];
    let to = second.header(&HeaderName::To).unwrap();
    assert!(
        to.contains("@backup.example"),
        "no trace of the first trunk: {to}"
    );
    assert!(only(&sent, PBX).is_empty(), "{sent:?}");
    // The first trunk answers after all: it gets an ACK and a BYE, the PBX hears nothing.
    let sent = lab.from_trunk_text(&trunk_response(&first, 200, "OK", SDP));
    let to_first: Vec<String> = only(&sent, TRUNK)
        .iter()
        .filter_map(|m| m.method().map(|m| m.as_str().to_string()))
        .collect();
    assert_eq!(to_first, vec!["ACK", "BYE"], "{sent:?}");
    assert!(only(&sent, PBX).is_empty(), "{sent:?}");
}

#[test]
fn a_transfer_sluice_carries_out_goes_to_the_pbx_owning_its_target_or_gets_404() {
    let seen = SeesTenant::default();
    let mut lab = Lab::with_hooks(
        config(|c| c.trunks[0].transfer = sluice_b2bua::config::Transfer::Handle),
        seen.hooks(),
    );
    lab.engine.handle_timeout(lab.now);
    let up = lab.established_call();
    fn tenant_now<H: sluice_b2bua::Hooks>(lab: &Lab<H>) -> Option<String> {
        lab.engine.calls_snapshot(lab.now)[0].tenant.clone()
    }
    assert_eq!(tenant_now(&lab).as_deref(), Some("acme"));
    let refer = |cseq: u32, target: &str| {
        with_headers(
            &trunk_in_dialog(
                "REFER",
                cseq,
                &up.b_invite,
                &format!("z9hG4bKrefer{cseq}"),
                "",
            ),
            &format!("Refer-To: <sip:{target}@127.0.0.20;user=phone>\r\n"),
        )
    };
    // A number no tenant owns on the trunk.
    let o = lab.from_trunk_text(&refer(2, "13322496299"));
    assert_eq!(statuses(&only(&o, TRUNK)), [404], "{o:?}");
    // globex's DID: globex's PBX gets the new call, written nationally.
    let o = lab.from_trunk_text(&refer(3, "+16468097072"));
    assert_eq!(statuses(&only(&o, TRUNK)), [202], "{o:?}");
    let invites = invites_to(&o, GLOBEX_PBX);
    assert_eq!(invites.len(), 1, "{o:?}");
    assert_eq!(user_of(invites[0].request_uri().unwrap()), "6468097072");
    // The plugins see the new leg's INVITE as globex's; the call is globex's once it answers.
    let (_, messages) = split(seen.take());
    assert!(
        messages.contains(&"INVITE globex".to_string()),
        "{messages:?}"
    );
    assert_eq!(
        tenant_now(&lab).as_deref(),
        Some("acme"),
        "not answered yet"
    );
    let mut ok = sluice_transaction::response_to(invites[0], 200, "OK", Some("globex2"));
    ok.headers
        .push(HeaderName::Contact, "<sip:2002@127.0.0.11:5060>");
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = bytes::Bytes::from(SDP);
    let globex = Flow {
        transport: Transport::Udp,
        local: addr(INTERNAL),
        remote: addr(GLOBEX_PBX),
        conn: None,
    };
    let o = lab.feed(globex, &String::from_utf8_lossy(&ok.to_bytes()));
    assert!(
        only(&o, GLOBEX_PBX)
            .iter()
            .any(|m| m.method().is_some_and(|m| m.as_str() == "ACK")),
        "{o:?}"
    );
    assert_eq!(tenant_now(&lab).as_deref(), Some("globex"));
}

#[test]
fn a_call_moving_to_a_trunk_with_other_srtp_gets_an_offer_made_for_that_trunk() {
    let body = |m: &Message| String::from_utf8_lossy(&m.body).into_owned();
    let backup = Flow {
        transport: Transport::Udp,
        local: addr(EXTERNAL),
        remote: addr(BACKUP),
        conn: None,
    };
    let srtp = sluice_b2bua::config::TrunkSrtp {
        mode: sluice_media::SrtpMode::Required,
        suites: Arc::from(vec![sluice_media::Suite::AesCm128HmacSha1_80]),
    };
    let key_of = |b: &str| {
        b.lines()
            .find_map(|l| l.strip_prefix("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
            .map(str::to_string)
    };
    // Both trunks speak SRTP: the next one gets keys of its own, never the first one's.
    {
        let media = lab_config_with_media(Transport::Udp).media;
        let cfg = config(|cfg| {
            cfg.media = media;
            cfg.trunks[0].srtp = Some(srtp.clone());
            cfg.trunks[1].srtp = Some(srtp.clone());
        });
        let mut lab = Lab::with_hooks(cfg, NoHooks);
        lab.engine.handle_timeout(lab.now);
        let sent = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-keys"));
        let first = invites_to(&sent, TRUNK)[0].clone();
        let sent = lab.from_trunk_text(&trunk_response(&first, 503, "Service Unavailable", ""));
        let second = invites_to(&sent, BACKUP)[0].clone();
        let (k1, k2) = (key_of(&body(&first)), key_of(&body(&second)));
        assert!(k1.is_some() && k2.is_some(), "{k1:?} {k2:?}");
        assert_ne!(
            k1, k2,
            "a key offered to one carrier is not offered to the next"
        );
    }
    for srtp_on_backup in [true, false] {
        let media = lab_config_with_media(Transport::Udp).media;
        let cfg = config(|cfg| {
            cfg.media = media;
            let i = usize::from(srtp_on_backup);
            cfg.trunks[i].srtp = Some(srtp.clone());
        });
        let mut lab = Lab::with_hooks(cfg, NoHooks);
        lab.engine.handle_timeout(lab.now);
        let sent = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-srtp"));
        let first = invites_to(&sent, TRUNK)[0].clone();
        let sent = lab.from_trunk_text(&trunk_response(&first, 503, "Service Unavailable", ""));
        let second = invites_to(&sent, BACKUP)[0].clone();
        let (plain, secure) = if srtp_on_backup {
            (body(&first), body(&second))
        } else {
            (body(&second), body(&first))
        };
        assert!(
            plain.contains(" RTP/AVP ") && !plain.contains("a=crypto"),
            "{plain}"
        );
        assert!(
            secure.contains(" RTP/SAVP ")
                && secure.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{secure}"
        );
        let m_port = |b: &str| b.lines().find(|l| l.starts_with("m=")).map(str::to_string);
        let port = |b: &str| m_port(b).and_then(|m| m.split(' ').nth(1).map(str::to_string));
        assert_eq!(port(&plain), port(&secure), "the stream keeps its port");
        // The second trunk's answer completes the call.
        let answer = if srtp_on_backup {
            SDP.replace("RTP/AVP", "RTP/SAVP")
                + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\r\n"
        } else {
            SDP.to_string()
        };
        let sent = lab.feed(backup, &trunk_response(&second, 200, "OK", &answer));
        let ok = only(&sent, PBX);
        assert_eq!(statuses(&ok), vec![200], "{sent:?}");
        assert!(!body(ok[0]).contains("a=crypto"), "no key toward the PBX");
        assert!(body(ok[0]).contains(" RTP/AVP "), "{}", body(ok[0]));
    }
}

/// Every hook call, as `number <tenant>` or `<method or status> <tenant>` (`-`: none).
#[derive(Clone, Default)]
struct SeesTenant(Arc<std::sync::Mutex<Vec<String>>>);

impl SeesTenant {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn note(&self, what: &str, ctx: &sluice_b2bua::HookContext<'_>) {
        let tenant = ctx.tenant.unwrap_or("-");
        self.0.lock().unwrap().push(format!("{what} {tenant}"));
    }
    /// Plugins that only note what they are told.
    fn hooks(&self) -> impl sluice_b2bua::Hooks {
        let (numbers, messages) = (self.clone(), self.clone());
        FnHooks {
            number: move |ctx: &sluice_b2bua::HookContext<'_>, _, _: &str| {
                numbers.note("number", ctx);
                sluice_b2bua::hooks::NumberVerdict::Keep
            },
            message: move |ctx: &sluice_b2bua::HookContext<'_>, msg: &mut Message| {
                let what = match (msg.method(), msg.status()) {
                    (Some(m), _) => m.as_str().to_string(),
                    (None, s) => s.unwrap_or(0).to_string(),
                };
                messages.note(&what, ctx);
                sluice_b2bua::HookVerdict::Continue
            },
        }
    }
}

/// What the number hooks and the message hooks were told, apart.
fn split(seen: Vec<String>) -> (Vec<String>, Vec<String>) {
    seen.into_iter().partition(|s| s.starts_with("number "))
}

/// Plugins are told the tenant routing attributed a call to, on every message of the call, on
/// the route's next trunk, and in the number hooks once it is known: a trunk's call is
/// attributed by the number those hooks write, so they run without one.
#[test]
fn every_hook_is_told_the_calls_tenant() {
    let seen = SeesTenant::default();
    let mut lab = Lab::with_hooks(config(|_| {}), seen.hooks());
    lab.engine.handle_timeout(lab.now);
    // A trunk's call to globex's DID.
    let sent = lab.from_trunk_text(&inbound("+16468097070", "in-t"));
    let invite = invites_to(&sent, GLOBEX_PBX)[0].clone();
    let (numbers, messages) = split(seen.take());
    assert!(
        !numbers.is_empty() && numbers.iter().all(|n| n == "number -"),
        "{numbers:?}"
    );
    assert_eq!(messages, ["INVITE globex"]);
    let globex = Flow {
        transport: Transport::Udp,
        local: addr(INTERNAL),
        remote: addr(GLOBEX_PBX),
        conn: None,
    };
    let sent = lab.feed(globex, &pbx_response(&invite, 200, SDP));
    assert_eq!(statuses(&only(&sent, TRUNK)), vec![200], "{sent:?}");
    assert_eq!(seen.take(), ["200 globex"]);
    // The admin API's view of the call names its tenant too.
    let calls = lab.engine.calls_snapshot(lab.now);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].tenant.as_deref(), Some("globex"));
    // acme's call, refused by its route's first trunk and sent to the next.
    let sent = lab.from_pbx_text(&outbound("2125550100", "3322496214", "out-t"));
    let first = invites_to(&sent, TRUNK)[0].clone();
    let (numbers, messages) = split(seen.take());
    assert!(
        !numbers.is_empty() && numbers.iter().all(|n| n == "number acme"),
        "{numbers:?}"
    );
    assert_eq!(messages, ["INVITE acme"]);
    let sent = lab.from_trunk_text(&trunk_response(&first, 503, "Service Unavailable", ""));
    assert_eq!(invites_to(&sent, BACKUP).len(), 1, "{sent:?}");
    let seen_now = seen.take();
    assert!(
        seen_now.iter().any(|s| s == "INVITE acme")
            && seen_now.iter().all(|s| s.ends_with(" acme")),
        "{seen_now:?}"
    );
}
